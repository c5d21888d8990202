"""The contract every component module fulfils, and the small helpers they share.

A component module (light, switch, valve, ...) owns everything about one Home
Assistant MQTT component: its spec dataclass and the parser that reads a discovery
config into it, the actions (with arguments and ranges) the model sees, the
decoding of its state messages, and the building of each command with the state
report that would confirm it. It says so by exposing `COMPONENT`, a `Component`;
the package's registry finds it there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.home.actions import ActionSpec, ArgValue, Built, Refused, StateValue
from daemon.home.reader import ConfigReader
from daemon.home.templates import CommandTemplate


class ComponentSpec(Protocol):
    """A parsed config that knows what its device can do and how it talks."""

    def actions(self) -> tuple[ActionSpec, ...]:
        """What the device can be told to do, with ranges from its own config."""
        ...

    def command_topics(self) -> frozenset[str]:
        """Every topic an action of this device may publish to."""
        ...

    def state_topics(self) -> frozenset[str]:
        """Every topic on which this device reports state."""
        ...

    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        """What a message on one of the state topics says, in model units (may be empty)."""
        ...

    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        """The one publish for a validated action (`Refused` if it cannot be built)."""
        ...


@dataclass(frozen=True)
class Component:
    """One component as the registry knows it.

    `order` places it in the lists people and the model read (error messages, the
    `kind` choices of list_devices); `synonyms` are the words a person uses for one
    ("lamp", "plug"), for the device search.
    """

    name: str
    order: int
    parse: Callable[[ConfigReader], ComponentSpec]
    synonyms: tuple[str, ...] = ()


def topics(*values: str | None) -> frozenset[str]:
    """The topics among `values` that are set."""
    return frozenset(v for v in values if v is not None)


# ------------------------------------------------------------------- decoding


def number(value: Any) -> float | int | None:
    """A finite number from a reported value (an int when it is whole), or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        num = float(value)
    except (TypeError, ValueError, OverflowError):  # an int past a float's range too
        return None
    if not math.isfinite(num):
        return None
    return int(num) if num.is_integer() else num


def on_off(value: str | None, on: str, off: str) -> dict[str, StateValue]:
    """`state` on or off when the value is one of the two payloads; else nothing."""
    if value == on:
        return {"state": "on"}
    if value == off:
        return {"state": "off"}
    return {}


def named_state(value: str | None, names: Mapping[str, str]) -> dict[str, StateValue]:
    """`state` as our word for the device's own (`names`: its word -> ours); else nothing."""
    if value is not None and value in names:
        return {"state": names[value]}
    return {}


def percent_of(value: float, closed: int, opened: int) -> int:
    """A device position (`closed`..`opened`, either way round) in percent open; a
    report too far out to compute is all the way open or closed."""
    pct = (value - closed) * 100 / (opened - closed)
    if not math.isfinite(pct):
        return 100 if pct > 0 else 0
    return round(pct)


# ------------------------------------------------------------------- building


def position_of(pct: int, closed: int, opened: int) -> int:
    """Percent open as the device's own position value (`percent_of` reversed)."""
    return round(closed + pct * (opened - closed) / 100)


def position_tolerance(closed: int, opened: int) -> float:
    """How far a reported percentage may be off (one device step, at least 1 %)."""
    return max(1.0, math.ceil(100 / abs(opened - closed)))



def templated(template: CommandTemplate | None, value: str) -> str:
    """The value through the config's command template, if it has one."""
    return value if template is None else template.render(value)


def num_arg(args: Mapping[str, ArgValue], name: str) -> float:
    """A numeric argument (validated already; anything else is refused)."""
    value = args[name]
    if isinstance(value, str | tuple):
        raise Refused(f"{name} must be a number")
    return float(value)


def json_payload(obj: Mapping[str, Any]) -> str:
    """A compact JSON payload, as JSON-schema devices expect."""
    return json.dumps(obj, separators=(",", ":"))

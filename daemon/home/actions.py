"""What a device can be told to do, what it reports, and what confirms a command.

The vocabulary between a component module and the rest of the home: a component
offers `ActionSpec`s (with the ranges of its own config, as the model sees them),
reports state as `StateValue`s in model units, and builds each command as one
publish plus the `ExpectedState` that would show the device obeyed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.errors import EdgeAgentError

StateValue = str | int | float | bool | tuple[int, ...] | None
ArgValue = int | float | str | tuple[int, int, int]


def plain_state(state: Mapping[str, StateValue]) -> dict[str, Any]:
    """A state as JSON values (an rgb tuple becomes a list), for the model or a log."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in state.items()}


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class ArgSpec:
    """One argument of an action: its kind and the range or choices the device allows."""

    name: str
    kind: Literal["int", "number", "choice", "rgb"]
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    description: str = ""

    def describe(self) -> str:
        """The argument with its range or choices, for a message to the model."""
        if self.kind == "choice":
            return f"{self.name}: one of {', '.join(self.choices)}"
        if self.kind == "rgb":
            return f"{self.name}: [red, green, blue], each 0..255"
        rng = f"{_num(self.minimum)}..{_num(self.maximum)}"
        step = f" in steps of {_num(self.step)}" if self.step else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name}: {rng}{unit}{step}"


@dataclass(frozen=True)
class ActionSpec:
    """An action the device supports; every argument listed is required."""

    name: str
    args: tuple[ArgSpec, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Expect:
    """One reported field that confirms a command: one of `values`, or `number` ± tolerance."""

    field: str
    values: tuple[StateValue, ...] = ()
    number: float | None = None
    tolerance: float = 0.0

    def matches(self, state: Mapping[str, StateValue]) -> bool:
        """Whether the reported state has the field as expected."""
        got = state.get(self.field)
        if self.number is not None:
            if isinstance(got, bool) or not isinstance(got, int | float):
                return False
            return abs(got - self.number) <= self.tolerance + 1e-9
        return got in self.values


@dataclass(frozen=True)
class ExpectedState:
    """All of `expects` must hold in a state report received after publishing."""

    expects: tuple[Expect, ...]

    def matches(self, state: Mapping[str, StateValue]) -> bool:
        """Whether the reported state confirms the command."""
        return all(e.matches(state) for e in self.expects)

    def describe(self) -> str:
        """What would confirm it, for the answer to the model (`state in on`)."""
        parts = []
        for e in self.expects:
            if e.number is not None:
                parts.append(f"{e.field} ≈ {e.number:g}")
            else:
                parts.append(f"{e.field} in {'/'.join(str(v) for v in e.values)}")
        return ", ".join(parts)


def expect(*expects: Expect | None) -> ExpectedState | None:
    """The expectation of the given fields; None when nothing can confirm the command."""
    real = tuple(e for e in expects if e is not None)
    return ExpectedState(real) if real else None


# A built command: the topic from the device's config, the payload, what confirms it.
Built = tuple[str, str, ExpectedState | None]


class Refused(EdgeAgentError, ValueError):
    """A component cannot build this command (told to the model; nothing is sent)."""

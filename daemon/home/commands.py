"""Turn a requested action into exactly one MQTT publish, or a clear error (no I/O).

The model names a device, an action and arguments. `plan_command` checks them
against the device's own capabilities, and the device's component
(daemon.home.components) builds the one message to publish: the topic always comes
from the device's config (never from the request), the payload follows the device's
conventions (default or JSON schema light, custom payloads, substitution-only
templates), at the QoS its config asks for (QoS 1 when it says
nothing: Home Assistant would use 0, but only an acknowledged publish tells "sent"
from "maybe sent") and not retained. Out-of-range values are an
error naming the allowed range, never silently clamped; unknown actions or modes
are an error listing the allowed ones. The plan also says which reported state
would confirm that the device obeyed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.home.actions import ActionSpec, ArgSpec, ArgValue, ExpectedState, Refused
from daemon.home.device import Device

DEFAULT_QOS = 1  # a device config without `qos`
ErrorCode = Literal[
    "unknown_action",
    "missing_argument",
    "unexpected_argument",
    "bad_argument",
    "out_of_range",
]


@dataclass(frozen=True)
class CommandError:
    """Why a request was refused; nothing is published for it."""

    code: ErrorCode
    message: str
    allowed: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Command:
    """One validated publish for one device action."""

    device_id: str
    action: str
    args: Mapping[str, ArgValue]
    topic: str
    payload: str
    qos: int = 1
    retain: bool = False
    expected: ExpectedState | None = field(default=None, compare=False)


def plan_command(
    device: Device, action: str, args: Mapping[str, Any] | None = None
) -> Command | CommandError:
    """Validate `action(args)` against the device and build its single publish."""
    actions = {a.name: a for a in device.capabilities}
    if not actions:
        return CommandError(
            "unknown_action",
            f"{device.name} ({device.id}) only reports its state; it has no actions",
        )
    spec_action = actions.get(action) if isinstance(action, str) else None
    if spec_action is None and isinstance(action, str):
        folded = [a for a in actions if a.casefold() == action.strip().casefold()]
        spec_action = actions[folded[0]] if len(folded) == 1 else None
    if spec_action is None:
        allowed = tuple(actions)
        return CommandError(
            "unknown_action",
            f"{device.name} has no action {action!r}; allowed: {', '.join(allowed)}",
            allowed,
        )
    checked = _check_args(spec_action, args)
    if isinstance(checked, CommandError):
        return checked
    try:
        topic, payload, expected = device.config.spec.build(spec_action.name, checked)
    except Refused as exc:
        return CommandError("bad_argument", str(exc))
    qos = device.config.qos if device.config.qos is not None else DEFAULT_QOS
    return Command(device.id, spec_action.name, checked, topic, payload, qos, False, expected)


def expected_state(
    device: Device, action: str, args: Mapping[str, Any] | None = None
) -> ExpectedState | None:
    """The state report that would confirm `action(args)`; None if nothing can confirm it."""
    plan = plan_command(device, action, args)
    return None if isinstance(plan, CommandError) else plan.expected


# ---------------------------------------------------------------- validation


def _check_args(spec: ActionSpec, args: Any) -> dict[str, ArgValue] | CommandError:
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        return CommandError("bad_argument", f"arguments of {spec.name} must be an object")
    allowed = {a.name: a for a in spec.args}
    extra = [k for k in args if k not in allowed]
    if extra:
        names = ", ".join(allowed) or "none"
        return CommandError(
            "unexpected_argument",
            f"{spec.name} does not take {', '.join(repr(str(k)) for k in extra)}; "
            f"allowed arguments: {names}",
            tuple(allowed),
        )
    out: dict[str, ArgValue] = {}
    for arg in spec.args:
        if arg.name not in args:
            return CommandError(
                "missing_argument", f"{spec.name} needs {arg.describe()}", (arg.name,)
            )
        value = _check_value(arg, args[arg.name])
        if isinstance(value, CommandError):
            return value
        out[arg.name] = value
    return out


def _check_value(arg: ArgSpec, value: Any) -> ArgValue | CommandError:
    """One argument checked against its spec: the value to send, or why not."""
    if arg.kind == "choice":
        return _check_choice(arg, value)
    if arg.kind == "rgb":
        rgb = _as_rgb(value)
        if rgb is None:
            return CommandError("bad_argument", f"{arg.describe()} (or '#rrggbb'); got {value!r}")
        return rgb
    return _check_number(arg, value)


def _check_choice(arg: ArgSpec, value: Any) -> str | CommandError:
    """One of the choices; a case-blind match counts when exactly one choice fits."""
    if not isinstance(value, str):
        return CommandError("bad_argument", f"{arg.describe()}; got {value!r}", arg.choices)
    if value in arg.choices:
        return value
    folded = [c for c in arg.choices if c.casefold() == value.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    return CommandError(
        "bad_argument",
        f"{arg.name} {value!r} is not supported; allowed: {', '.join(arg.choices)}",
        arg.choices,
    )


def _check_number(arg: ArgSpec, value: Any) -> int | float | CommandError:
    """A number of the argument's kind, inside its range, on its step."""
    number = _as_number(value)
    if number is None:
        return CommandError("bad_argument", f"{arg.describe()}; got {value!r}, not a number")
    if arg.kind == "int":
        if isinstance(number, float) and not number.is_integer():
            return CommandError("bad_argument", f"{arg.name} must be a whole number; got {value!r}")
        number = int(number)
    lo, hi = arg.minimum, arg.maximum
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        return CommandError(
            "out_of_range",
            f"{arg.name} {_fmt(number)} is out of range; allowed: {arg.describe()}",
        )
    if arg.kind == "number" and arg.step:
        steps = number / arg.step
        if abs(steps - round(steps)) > 1e-6:
            return CommandError(
                "bad_argument",
                f"{arg.name} {_fmt(number)} is not a multiple of {arg.step:g}; "
                f"allowed: {arg.describe()}",
            )
        number = round(round(steps) * arg.step, 6)
    return number


def _fmt(number: float) -> str:
    """A number for a message; ints print exactly, even beyond float range."""
    return str(number) if isinstance(number, int) else f"{number:g}"


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _as_rgb(value: Any) -> tuple[int, int, int] | None:
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
            return None
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    out = []
    for c in value:
        n = _as_number(c)
        if n is None or (isinstance(n, float) and not n.is_integer()) or not 0 <= n <= 255:
            return None
        out.append(int(n))
    return (out[0], out[1], out[2])

"""Turn a requested action into exactly one MQTT publish, or a clear error (no I/O).

The model names a device, an action and arguments. `plan_command` checks them
against the device's own capabilities and builds the one message to publish: the
topic always comes from the device's config (never from the request), the payload
follows the device's conventions (default or JSON schema light, custom payloads,
substitution-only templates), at the QoS its config asks for (QoS 1 when it says
nothing: Home Assistant would use 0, but only an acknowledged publish tells "sent"
from "maybe sent") and not retained. Out-of-range values are an
error naming the allowed range, never silently clamped; unknown actions or modes
are an error listing the allowed ones. The plan also says which reported state
would confirm that the device obeyed.
"""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.home.discovery import (
    ActionSpec,
    AlarmPanelSpec,
    ArgSpec,
    ButtonSpec,
    ClimateSpec,
    CommandTemplate,
    CoverSpec,
    FanSpec,
    LightSpec,
    LockSpec,
    SceneSpec,
    SwitchSpec,
)
from daemon.home.inventory import Device, StateValue

ArgValue = int | float | str | tuple[int, int, int]
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
class Expect:
    """One reported field that confirms a command: one of `values`, or `number` ± tolerance."""

    field: str
    values: tuple[StateValue, ...] = ()
    number: float | None = None
    tolerance: float = 0.0

    def matches(self, state: Mapping[str, StateValue]) -> bool:
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
        return all(e.matches(state) for e in self.expects)

    def describe(self) -> str:
        parts = []
        for e in self.expects:
            if e.number is not None:
                parts.append(f"{e.field} ≈ {e.number:g}")
            else:
                parts.append(f"{e.field} in {'/'.join(str(v) for v in e.values)}")
        return ", ".join(parts)


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
        topic, payload, expected = _build(device, spec_action.name, checked)
    except _Refused as exc:
        return CommandError("bad_argument", str(exc))
    qos = device.config.qos if device.config.qos is not None else DEFAULT_QOS
    return Command(device.id, spec_action.name, checked, topic, payload, qos, False, expected)


def expected_state(
    device: Device, action: str, args: Mapping[str, Any] | None = None
) -> ExpectedState | None:
    """The state report that would confirm `action(args)`; None if nothing can confirm it."""
    plan = plan_command(device, action, args)
    return None if isinstance(plan, CommandError) else plan.expected


class _Refused(Exception):
    pass


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
    if arg.kind == "choice":
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
    if arg.kind == "rgb":
        rgb = _as_rgb(value)
        if rgb is None:
            return CommandError("bad_argument", f"{arg.describe()} (or '#rrggbb'); got {value!r}")
        return rgb
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


# ------------------------------------------------------------------- building

Built = tuple[str, str, ExpectedState | None]


def _expect(*expects: Expect | None) -> ExpectedState | None:
    real = tuple(e for e in expects if e is not None)
    return ExpectedState(real) if real else None


def _templated(template: CommandTemplate | None, value: str) -> str:
    return value if template is None else template.render(value)


def _build(device: Device, action: str, args: Mapping[str, ArgValue]) -> Built:
    spec = device.config.spec
    if isinstance(spec, LightSpec):
        return _build_light(spec, action, args)
    if isinstance(spec, SwitchSpec):
        on = action == "turn_on"
        exp = Expect("state", ("on" if on else "off",)) if spec.state_topic else None
        return spec.command_topic, spec.payload_on if on else spec.payload_off, _expect(exp)
    if isinstance(spec, FanSpec):
        return _build_fan(spec, action, args)
    if isinstance(spec, CoverSpec):
        return _build_cover(spec, action, args)
    if isinstance(spec, LockSpec):
        payload, states = {
            "lock": (spec.payload_lock, ("locked", "locking")),
            "unlock": (spec.payload_unlock, ("unlocked", "unlocking")),
            "open": (spec.payload_open or "", ("open", "opening", "unlocked")),
        }[action]
        exp = Expect("state", states) if spec.state_topic else None
        return spec.command_topic, _templated(spec.command_template, payload), _expect(exp)
    if isinstance(spec, ClimateSpec):
        return _build_climate(spec, action, args)
    if isinstance(spec, SceneSpec):
        return spec.command_topic, spec.payload_on, None
    if isinstance(spec, ButtonSpec):
        return spec.command_topic, spec.payload_press, None
    if isinstance(spec, AlarmPanelSpec):
        return _build_alarm(spec, action)
    raise _Refused(f"{device.name} has no actions")


_ALARM_EXPECT: Mapping[str, tuple[StateValue, ...]] = {
    "arm_home": ("armed_home", "arming", "pending"),
    "arm_away": ("armed_away", "arming", "pending"),
    "arm_night": ("armed_night", "arming", "pending"),
    "arm_vacation": ("armed_vacation", "arming", "pending"),
    "disarm": ("disarmed", "disarming"),
}


def _build_alarm(spec: AlarmPanelSpec, action: str) -> Built:
    """The action's payload through the config's template; never a code (none is offered)."""
    if action not in spec.actions:
        raise _Refused(f"unknown alarm panel action {action!r}")
    payload = _templated(spec.command_template, spec.payload(action))
    return spec.command_topic, payload, _expect(Expect("state", _ALARM_EXPECT[action]))


def _build_light(spec: LightSpec, action: str, args: Mapping[str, ArgValue]) -> Built:
    on = Expect("state", ("on",)) if spec.state_topic else None
    if action in ("turn_on", "turn_off"):
        word = "on" if action == "turn_on" else "off"
        exp = Expect("state", (word,)) if spec.state_topic else None
        if spec.schema == "json":
            return spec.command_topic, _json({"state": word.upper()}), _expect(exp)
        if action == "turn_on" and spec.on_command_type == "brightness":
            assert spec.brightness_command_topic is not None  # checked when parsed
            if exp is None and spec.brightness_state_topic:
                exp = Expect("brightness", number=100, tolerance=1.0)
            payload = _templated(spec.brightness_command_template, str(spec.brightness_scale))
            return spec.brightness_command_topic, payload, _expect(exp)
        payload = spec.payload_on if action == "turn_on" else spec.payload_off
        return spec.command_topic, payload, _expect(exp)
    if action == "set_brightness":
        pct = int(_num_arg(args, "brightness"))
        value = max(1, round(pct * spec.brightness_scale / 100))
        tol = max(1.0, math.ceil(100 / spec.brightness_scale))
        if spec.schema == "json":
            exp = Expect("brightness", number=pct, tolerance=tol) if spec.state_topic else None
            return spec.command_topic, _json({"state": "ON", "brightness": value}), _expect(exp)
        assert spec.brightness_command_topic is not None
        exp = Expect("brightness", number=pct, tolerance=tol) if spec.brightness_state_topic else on
        payload = _templated(spec.brightness_command_template, str(value))
        return spec.brightness_command_topic, payload, _expect(exp)
    if action == "set_color_temp":
        kelvin = int(_num_arg(args, "kelvin"))
        value = kelvin if spec.color_temp_kelvin else round(1e6 / kelvin)
        tol = 1.0 if spec.color_temp_kelvin else math.ceil(kelvin * kelvin / 1e6) + 1.0
        if spec.schema == "json":
            exp = Expect("color_temp", number=kelvin, tolerance=tol) if spec.state_topic else None
            return spec.command_topic, _json({"state": "ON", "color_temp": value}), _expect(exp)
        assert spec.color_temp_command_topic is not None
        exp = (
            Expect("color_temp", number=kelvin, tolerance=tol)
            if spec.color_temp_state_topic
            else on
        )
        payload = _templated(spec.color_temp_command_template, str(value))
        return spec.color_temp_command_topic, payload, _expect(exp)
    if action == "set_color":
        rgb = args["rgb"]
        assert isinstance(rgb, tuple)
        r, g, b = rgb
        if spec.schema == "json":
            color: dict[str, float | int]
            if spec.color == "hs":
                h, s = _rgb_to_hs(r, g, b)
                color = {"h": h, "s": s}
            elif spec.color == "xy":
                x, y = _rgb_to_xy(r, g, b)
                color = {"x": x, "y": y}
            else:
                color = {"r": r, "g": g, "b": b}
            return spec.command_topic, _json({"state": "ON", "color": color}), _expect(on)
        if spec.color == "hs":  # Home Assistant's default schema: "hue,saturation"
            assert spec.hs_command_topic is not None
            h, s = _rgb_to_hs(r, g, b)
            return spec.hs_command_topic, f"{h:.1f},{s:.1f}", _expect(on)
        if spec.color == "xy":  # "x,y"
            assert spec.xy_command_topic is not None
            x, y = _rgb_to_xy(r, g, b)
            return spec.xy_command_topic, f"{x},{y}", _expect(on)
        assert spec.rgb_command_topic is not None
        exp = Expect("rgb", ((r, g, b),)) if spec.rgb_state_topic else on
        payload = _templated(spec.rgb_command_template, f"{r},{g},{b}")
        return spec.rgb_command_topic, payload, _expect(exp)
    raise _Refused(f"unknown light action {action!r}")


def _build_fan(spec: FanSpec, action: str, args: Mapping[str, ArgValue]) -> Built:
    if action in ("turn_on", "turn_off"):
        word = "on" if action == "turn_on" else "off"
        payload = spec.payload_on if word == "on" else spec.payload_off
        exp = Expect("state", (word,)) if spec.state_topic else None
        return spec.command_topic, _templated(spec.command_template, payload), _expect(exp)
    if action == "set_percentage":
        assert spec.percentage_command_topic is not None
        pct = int(_num_arg(args, "percentage"))
        count = spec.speed_range_max - spec.speed_range_min + 1
        value = math.ceil(pct * count / 100) + spec.speed_range_min - 1
        tol = max(1.0, math.ceil(100 / count))
        exp = (
            Expect("percentage", number=pct, tolerance=tol) if spec.percentage_state_topic else None
        )
        payload = _templated(spec.percentage_command_template, str(value))
        return spec.percentage_command_topic, payload, _expect(exp)
    if action == "set_preset_mode":
        assert spec.preset_mode_command_topic is not None
        mode = str(args["preset_mode"])
        exp = Expect("preset_mode", (mode,)) if spec.preset_mode_state_topic else None
        payload = _templated(spec.preset_mode_command_template, mode)
        return spec.preset_mode_command_topic, payload, _expect(exp)
    if action == "set_oscillation":
        assert spec.oscillation_command_topic is not None
        osc = args["oscillating"] == "on"
        raw = spec.payload_oscillation_on if osc else spec.payload_oscillation_off
        exp = Expect("oscillating", (osc,)) if spec.oscillation_state_topic else None
        payload = _templated(spec.oscillation_command_template, raw)
        return spec.oscillation_command_topic, payload, _expect(exp)
    raise _Refused(f"unknown fan action {action!r}")


def _build_cover(spec: CoverSpec, action: str, args: Mapping[str, ArgValue]) -> Built:
    reports = spec.state_topic is not None or spec.position_topic is not None
    if action in ("open", "close", "stop"):
        assert spec.command_topic is not None
        payload = {"open": spec.payload_open, "close": spec.payload_close}.get(
            action, spec.payload_stop
        )
        assert payload is not None
        states: tuple[StateValue, ...] = {
            "open": ("open", "opening"),
            "close": ("closed", "closing"),
            "stop": ("stopped", "open", "closed"),
        }[action]
        exp = Expect("state", states) if reports else None
        return spec.command_topic, payload, _expect(exp)
    if action == "set_position":
        assert spec.set_position_topic is not None
        pct = int(_num_arg(args, "position"))
        span = spec.position_open - spec.position_closed
        value = round(spec.position_closed + pct * span / 100)
        payload = _templated(spec.set_position_template, str(value))
        pos_exp: Expect | None = None
        if spec.position_topic is not None:
            tol = max(1.0, math.ceil(100 / abs(span)))
            pos_exp = Expect("position", number=pct, tolerance=tol)
        elif spec.state_topic is not None:
            moving: tuple[StateValue, ...] = ("open", "opening", "closing", "stopped")
            if pct == 0:
                moving = ("closed", "closing")
            elif pct == 100:
                moving = ("open", "opening")
            pos_exp = Expect("state", moving)
        return spec.set_position_topic, payload, _expect(pos_exp)
    raise _Refused(f"unknown cover action {action!r}")


def _build_climate(spec: ClimateSpec, action: str, args: Mapping[str, ArgValue]) -> Built:
    if action == "set_mode":
        assert spec.mode_command_topic is not None
        mode = str(args["mode"])
        exp = Expect("mode", (mode,)) if spec.mode_state_topic else None
        payload = _templated(spec.mode_command_template, mode)
        return spec.mode_command_topic, payload, _expect(exp)
    if action == "set_temperature":
        assert spec.temperature_command_topic is not None
        temp = float(_num_arg(args, "temperature"))
        text = _format_step(temp, spec.temp_step)
        exp = (
            Expect("temperature", number=temp, tolerance=spec.temp_step / 2)
            if spec.temperature_state_topic
            else None
        )
        payload = _templated(spec.temperature_command_template, text)
        return spec.temperature_command_topic, payload, _expect(exp)
    if action in ("turn_on", "turn_off"):
        assert spec.power_command_topic is not None
        payload = spec.payload_on if action == "turn_on" else spec.payload_off
        return spec.power_command_topic, payload, None
    raise _Refused(f"unknown climate action {action!r}")


def _num_arg(args: Mapping[str, ArgValue], name: str) -> float:
    value = args[name]
    if isinstance(value, str | tuple):
        raise _Refused(f"{name} must be a number")
    return float(value)


def _format_step(value: float, step: float) -> str:
    """The value with as many decimals as the step has (21 for 1, 21.5 for 0.5)."""
    text = f"{step:.6f}".rstrip("0").rstrip(".")
    decimals = len(text.partition(".")[2])
    return f"{value:.{decimals}f}"


def _json(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _rgb_to_hs(r: int, g: int, b: int) -> tuple[float, float]:
    """Hue in degrees 0..360 and saturation in percent, one decimal each."""
    h, s, _v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    return (round(h * 360, 1), round(s * 100, 1))


def _rgb_to_xy(r: int, g: int, b: int) -> tuple[float, float]:
    """sRGB to CIE 1931 xy, as Hue-style lights expect."""

    def lin(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    rl, gl, bl = lin(r), lin(g), lin(b)
    x = rl * 0.4124 + gl * 0.3576 + bl * 0.1805
    y = rl * 0.2126 + gl * 0.7152 + bl * 0.0722
    z = rl * 0.0193 + gl * 0.1192 + bl * 0.9505
    total = x + y + z
    if total == 0:
        return (0.3127, 0.329)  # white point for black
    return (round(x / total, 4), round(y / total, 4))

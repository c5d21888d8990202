"""Light: on/off, brightness, white colour temperature and colour.

Both of Home Assistant's MQTT light schemas: `default` (a topic per attribute,
optional substitution-only templates, hue/saturation or x/y colour as text) and
`json` (one topic, JSON payloads). Colour temperature is kept in kelvin whatever
the device speaks (mireds unless `color_temp_kelvin`).
"""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from typing_extensions import override

from daemon.home.actions import (
    ActionSpec,
    ArgSpec,
    ArgValue,
    Built,
    Expect,
    Refused,
    StateValue,
    expect,
)
from daemon.home.components.base import (
    Component,
    ComponentSpec,
    json_payload,
    num_arg,
    number,
    on_off,
    templated,
    topics,
)
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import CommandTemplate, ValueTemplate, render
from daemon.home.text import clean_text, shown

Color = Literal["rgb", "hs", "xy", ""]
_ON_COMMAND_TYPES: dict[str, Literal["last", "first", "brightness"]] = {
    "last": "last",
    "first": "first",
    "brightness": "brightness",
}
_COLOR_MODES = ("onoff", "brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww", "white")


@dataclass(frozen=True)
class LightSpec(ComponentSpec):
    """A light in the default or JSON schema; colour temperature is kept in kelvin."""

    schema: Literal["default", "json"]
    command_topic: str
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    brightness: bool = False
    brightness_scale: int = 255
    brightness_command_topic: str | None = None
    brightness_command_template: CommandTemplate | None = None
    brightness_state_topic: str | None = None
    brightness_template: ValueTemplate | None = None
    color_temp: bool = False
    color_temp_kelvin: bool = False  # payloads carry kelvin instead of mireds
    min_kelvin: int = 2000
    max_kelvin: int = 6535
    color_temp_command_topic: str | None = None
    color_temp_command_template: CommandTemplate | None = None
    color_temp_state_topic: str | None = None
    color_temp_template: ValueTemplate | None = None
    color: Color = ""
    rgb_command_topic: str | None = None
    rgb_command_template: CommandTemplate | None = None
    rgb_state_topic: str | None = None
    rgb_template: ValueTemplate | None = None
    # Default schema without an RGB topic: colour as "hue,saturation" or "x,y" text.
    hs_command_topic: str | None = None
    xy_command_topic: str | None = None
    # Default schema: "brightness" lights are turned on by a brightness command, not ON.
    # ("first"/"last" order ON against attribute commands; one action is one publish.)
    on_command_type: Literal["last", "first", "brightness"] = "last"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        acts = [ActionSpec("turn_on"), ActionSpec("turn_off")]
        if self.brightness:
            acts.append(
                ActionSpec(
                    "set_brightness",
                    (ArgSpec("brightness", "int", 1, 100, 1, unit="%"),),
                    "brightness in percent; turns the light on",
                )
            )
        if self.color_temp:
            acts.append(
                ActionSpec(
                    "set_color_temp",
                    (ArgSpec("kelvin", "int", self.min_kelvin, self.max_kelvin, 1, unit="K"),),
                    "white colour temperature in kelvin (low is warm); turns the light on",
                )
            )
        if self.color:
            acts.append(
                ActionSpec("set_color", (ArgSpec("rgb", "rgb"),), "colour; turns the light on")
            )
        return tuple(acts)

    @override
    def command_topics(self) -> frozenset[str]:
        return topics(
            self.command_topic,
            self.brightness_command_topic,
            self.color_temp_command_topic,
            self.rgb_command_topic,
            self.hs_command_topic,
            self.xy_command_topic,
        )

    @override
    def state_topics(self) -> frozenset[str]:
        return topics(
            self.state_topic,
            self.brightness_state_topic,
            self.color_temp_state_topic,
            self.rgb_state_topic,
        )

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        if self.schema == "json":
            return _decode_json(self, payload) if topic == self.state_topic else {}
        out: dict[str, StateValue] = {}
        if topic == self.state_topic:
            value = render(self.state_template, payload)
            out.update(on_off(value, self.payload_on, self.payload_off))
        if topic == self.brightness_state_topic:
            num = number(render(self.brightness_template, payload))
            if num is not None:
                out["brightness"] = round(num * 100 / self.brightness_scale)
        if topic == self.color_temp_state_topic:
            num = number(render(self.color_temp_template, payload))
            kelvin = _to_kelvin(num, self.color_temp_kelvin)
            if kelvin is not None:
                out["color_temp"] = kelvin
        if topic == self.rgb_state_topic:
            rgb = _rgb(render(self.rgb_template, payload))
            if rgb is not None:
                out["rgb"] = rgb
        return out

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        if action in ("turn_on", "turn_off"):
            return _build_power(self, action == "turn_on")
        if action == "set_brightness":
            return _build_brightness(self, int(num_arg(args, "brightness")))
        if action == "set_color_temp":
            return _build_color_temp(self, int(num_arg(args, "kelvin")))
        if action == "set_color":
            rgb = args["rgb"]
            assert isinstance(rgb, tuple)
            return _build_color(self, rgb)
        raise Refused(f"unknown light action {action!r}")


# ------------------------------------------------------------------- parsing


def parse(rd: ConfigReader) -> LightSpec:
    """A light config in either schema (`basic` is the old name of `default`)."""
    schema = rd.data.get("schema", "default")
    if schema == "basic":
        schema = "default"
    if schema not in ("default", "json"):
        raise Invalid(f"light schema {shown(schema)} is not supported (default or json)")
    command_topic = rd.required_topic("command_topic")
    scale = rd.integer("brightness_scale", 255, 1, 1_000_000)
    kelvin = rd.flag("color_temp_kelvin")
    lo_k, hi_k = _kelvin_range(rd, kelvin)
    if schema == "json":
        return _parse_json(rd, command_topic, scale, kelvin, lo_k, hi_k)
    return _parse_default(rd, command_topic, scale, kelvin, lo_k, hi_k)


def _kelvin_range(rd: ConfigReader, kelvin: bool) -> tuple[int, int]:
    if kelvin:
        lo_k = rd.integer("min_kelvin", 2000, 500, 100_000)
        hi_k = rd.integer("max_kelvin", 6535, 500, 100_000)
    else:
        lo_m = rd.integer("min_mireds", 153, 1, 100_000)
        hi_m = rd.integer("max_mireds", 500, 1, 100_000)
        if lo_m > hi_m:
            raise Invalid("min_mireds must not exceed max_mireds")
        lo_k, hi_k = math.ceil(1e6 / hi_m), math.floor(1e6 / lo_m)
    if lo_k > hi_k:
        raise Invalid("the colour temperature range is empty")
    return lo_k, hi_k


def _parse_default(
    rd: ConfigReader, command_topic: str, scale: int, kelvin: bool, lo_k: int, hi_k: int
) -> LightSpec:
    ok_bri, bri_tpl = rd.command_template("brightness_command_template")
    ok_ct, ct_tpl = rd.command_template("color_temp_command_template")
    ok_rgb, rgb_tpl = rd.command_template("rgb_command_template", ("value", "red", "rgb"))
    if rgb_tpl is not None and rgb_tpl.variable != "value":
        rd.notes.append("rgb_command_template uses per-channel variables; colour is not offered")
        ok_rgb, rgb_tpl = False, None
    if rd.has("command_template"):
        rd.notes.append("command_template is ignored by the default light schema")
    bri_topic = rd.topic("brightness_command_topic")
    ct_topic = rd.topic("color_temp_command_topic")
    rgb_topic = rd.topic("rgb_command_topic")
    color: Color = "rgb" if rgb_topic is not None and ok_rgb else ""
    hs_topic = xy_topic = None
    if not color:
        color, hs_topic, xy_topic = _text_color(rd)
    on_type = _ON_COMMAND_TYPES.get(str(rd.text("on_command_type", "last")))
    if on_type is None:
        raise Invalid("on_command_type must be one of last, first, brightness")
    if on_type == "brightness" and not (bri_topic is not None and ok_bri):
        rd.notes.append("on_command_type brightness without a brightness command: ON is sent")
        on_type = "last"
    return LightSpec(
        schema="default",
        command_topic=command_topic,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("state_value_template"),
        payload_on=rd.payload("payload_on", "ON"),
        payload_off=rd.payload("payload_off", "OFF"),
        brightness=bri_topic is not None and ok_bri,
        brightness_scale=scale,
        brightness_command_topic=bri_topic if ok_bri else None,
        brightness_command_template=bri_tpl,
        brightness_state_topic=rd.topic("brightness_state_topic"),
        brightness_template=rd.value_template("brightness_value_template"),
        color_temp=ct_topic is not None and ok_ct,
        color_temp_kelvin=kelvin,
        min_kelvin=lo_k,
        max_kelvin=hi_k,
        color_temp_command_topic=ct_topic if ok_ct else None,
        color_temp_command_template=ct_tpl,
        color_temp_state_topic=rd.topic("color_temp_state_topic"),
        color_temp_template=rd.value_template("color_temp_value_template"),
        color=color,
        rgb_command_topic=rgb_topic if ok_rgb else None,
        rgb_command_template=rgb_tpl,
        rgb_state_topic=rd.topic("rgb_state_topic"),
        rgb_template=rd.value_template("rgb_value_template"),
        hs_command_topic=hs_topic,
        xy_command_topic=xy_topic,
        on_command_type=on_type,
    )


def _text_color(rd: ConfigReader) -> tuple[Color, str | None, str | None]:
    """Colour as "hue,saturation" or "x,y" text when there is no RGB topic.

    Home Assistant's hue/sat and x/y templates take two variables: not offered."""
    for mode in ("hs", "xy"):
        topic = rd.topic(f"{mode}_command_topic")
        if topic is None:
            continue
        if rd.has(f"{mode}_command_template"):
            rd.notes.append(f"{mode}_command_template is not supported; {mode} not offered")
            continue
        if mode == "hs":
            return "hs", topic, None
        return "xy", None, topic
    return "", None, None


def _parse_json(
    rd: ConfigReader, command_topic: str, scale: int, kelvin: bool, lo_k: int, hi_k: int
) -> LightSpec:
    modes = rd.strings("supported_color_modes")
    unknown = [m for m in modes if m not in _COLOR_MODES]
    if unknown:
        raise Invalid(f"supported_color_modes has unknown mode(s) {', '.join(unknown)}")
    brightness = rd.flag("brightness") or any(m not in ("onoff",) for m in modes)
    color_temp = "color_temp" in modes or (not modes and rd.flag("color_temp"))
    color: Color = ""
    candidates: tuple[Literal["rgb", "hs", "xy"], ...] = ("rgb", "hs", "xy")
    for mode in candidates:
        if mode in modes or (not modes and rd.data.get(mode) is True):
            color = mode
            break
    if not color and any(m in modes for m in ("rgbw", "rgbww")):
        rd.notes.append("rgbw/rgbww colour modes are not offered")
    return LightSpec(
        schema="json",
        command_topic=command_topic,
        state_topic=rd.topic("state_topic"),
        brightness=brightness,
        brightness_scale=scale,
        color_temp=color_temp,
        color_temp_kelvin=kelvin,
        min_kelvin=lo_k,
        max_kelvin=hi_k,
        color=color,
    )


# ------------------------------------------------------------------- state


def _to_kelvin(num: float | None, is_kelvin: bool) -> int | None:
    if num is None or num <= 0:
        return None
    return round(num) if is_kelvin else round(1e6 / num)


def _rgb(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 3:
        return None
    try:
        rgb = tuple(int(float(p)) for p in parts)
    except (ValueError, OverflowError):  # "1e400" is an infinite float
        return None
    return rgb if all(0 <= c <= 255 for c in rgb) else None


def _decode_json(spec: LightSpec, payload: str) -> dict[str, StateValue]:
    out: dict[str, StateValue] = {}
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return out
    if not isinstance(data, dict):
        return out
    state = data.get("state")
    if state == "ON":
        out["state"] = "on"
    elif state == "OFF":
        out["state"] = "off"
    bri = number(data.get("brightness"))
    if bri is not None:
        out["brightness"] = round(bri * 100 / spec.brightness_scale)
    kelvin = _to_kelvin(number(data.get("color_temp")), spec.color_temp_kelvin)
    if kelvin is not None:
        out["color_temp"] = kelvin
    color = data.get("color")
    if isinstance(color, dict) and all(k in color for k in ("r", "g", "b")):
        rgb = _rgb(",".join(str(color[k]) for k in ("r", "g", "b")))
        if rgb is not None:
            out["rgb"] = rgb
    if isinstance(data.get("color_mode"), str):
        out["color_mode"] = clean_text(data["color_mode"])
    return out


# ------------------------------------------------------------------- commands


def _is_on(spec: LightSpec) -> Expect | None:
    return Expect("state", ("on",)) if spec.state_topic else None


def _build_power(spec: LightSpec, on: bool) -> Built:
    word = "on" if on else "off"
    exp = Expect("state", (word,)) if spec.state_topic else None
    if spec.schema == "json":
        return spec.command_topic, json_payload({"state": word.upper()}), expect(exp)
    if on and spec.on_command_type == "brightness":
        assert spec.brightness_command_topic is not None  # checked when parsed
        if exp is None and spec.brightness_state_topic:
            exp = Expect("brightness", number=100, tolerance=1.0)
        payload = templated(spec.brightness_command_template, str(spec.brightness_scale))
        return spec.brightness_command_topic, payload, expect(exp)
    payload = spec.payload_on if on else spec.payload_off
    return spec.command_topic, payload, expect(exp)


def _build_brightness(spec: LightSpec, pct: int) -> Built:
    value = max(1, round(pct * spec.brightness_scale / 100))
    tol = max(1.0, math.ceil(100 / spec.brightness_scale))
    if spec.schema == "json":
        exp = Expect("brightness", number=pct, tolerance=tol) if spec.state_topic else None
        return spec.command_topic, json_payload({"state": "ON", "brightness": value}), expect(exp)
    assert spec.brightness_command_topic is not None
    exp = (
        Expect("brightness", number=pct, tolerance=tol)
        if spec.brightness_state_topic
        else _is_on(spec)
    )
    payload = templated(spec.brightness_command_template, str(value))
    return spec.brightness_command_topic, payload, expect(exp)


def _build_color_temp(spec: LightSpec, kelvin: int) -> Built:
    value = kelvin if spec.color_temp_kelvin else round(1e6 / kelvin)
    tol = 1.0 if spec.color_temp_kelvin else math.ceil(kelvin * kelvin / 1e6) + 1.0
    if spec.schema == "json":
        exp = Expect("color_temp", number=kelvin, tolerance=tol) if spec.state_topic else None
        return spec.command_topic, json_payload({"state": "ON", "color_temp": value}), expect(exp)
    assert spec.color_temp_command_topic is not None
    exp = (
        Expect("color_temp", number=kelvin, tolerance=tol)
        if spec.color_temp_state_topic
        else _is_on(spec)
    )
    payload = templated(spec.color_temp_command_template, str(value))
    return spec.color_temp_command_topic, payload, expect(exp)


def _build_color(spec: LightSpec, rgb: tuple[int, ...]) -> Built:
    r, g, b = rgb
    on = _is_on(spec)
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
        return spec.command_topic, json_payload({"state": "ON", "color": color}), expect(on)
    if spec.color == "hs":  # Home Assistant's default schema: "hue,saturation"
        assert spec.hs_command_topic is not None
        h, s = _rgb_to_hs(r, g, b)
        return spec.hs_command_topic, f"{h:.1f},{s:.1f}", expect(on)
    if spec.color == "xy":  # "x,y"
        assert spec.xy_command_topic is not None
        x, y = _rgb_to_xy(r, g, b)
        return spec.xy_command_topic, f"{x},{y}", expect(on)
    assert spec.rgb_command_topic is not None
    exp = Expect("rgb", ((r, g, b),)) if spec.rgb_state_topic else on
    payload = templated(spec.rgb_command_template, f"{r},{g},{b}")
    return spec.rgb_command_topic, payload, expect(exp)


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


COMPONENT = Component("light", 10, parse, synonyms=("light", "lamp", "lights", "bulb"))

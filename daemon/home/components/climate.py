"""Climate: a thermostat's mode, target temperature and power."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
from daemon.home.components.base import Component, ComponentSpec, num_arg, number, templated, topics
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import CommandTemplate, ValueTemplate, render
from daemon.home.text import clean_text


@dataclass(frozen=True)
class ClimateSpec(ComponentSpec):
    """A thermostat's topics, modes and target range (in its own unit and step)."""

    mode_command_topic: str | None = None
    mode_command_template: CommandTemplate | None = None
    mode_state_topic: str | None = None
    mode_template: ValueTemplate | None = None
    modes: tuple[str, ...] = ("auto", "off", "cool", "heat", "dry", "fan_only")
    temperature_command_topic: str | None = None
    temperature_command_template: CommandTemplate | None = None
    temperature_state_topic: str | None = None
    temperature_template: ValueTemplate | None = None
    current_temperature_topic: str | None = None
    current_temperature_template: ValueTemplate | None = None
    min_temp: float = 7.0
    max_temp: float = 35.0
    temp_step: float = 1.0
    temperature_unit: str = "C"
    power_command_topic: str | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        acts = []
        if self.mode_command_topic:
            acts.append(ActionSpec("set_mode", (ArgSpec("mode", "choice", choices=self.modes),)))
        if self.temperature_command_topic:
            acts.append(
                ActionSpec(
                    "set_temperature",
                    (
                        ArgSpec(
                            "temperature",
                            "number",
                            self.min_temp,
                            self.max_temp,
                            self.temp_step,
                            unit=f"°{self.temperature_unit}",
                        ),
                    ),
                    "target temperature",
                )
            )
        if self.power_command_topic:
            acts += [ActionSpec("turn_on"), ActionSpec("turn_off")]
        return tuple(acts)

    @override
    def command_topics(self) -> frozenset[str]:
        return topics(
            self.mode_command_topic, self.temperature_command_topic, self.power_command_topic
        )

    @override
    def state_topics(self) -> frozenset[str]:
        return topics(
            self.mode_state_topic, self.temperature_state_topic, self.current_temperature_topic
        )

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        out: dict[str, StateValue] = {}
        if topic == self.mode_state_topic:
            mode = render(self.mode_template, payload)
            if mode is not None and mode.strip():
                out["mode"] = clean_text(mode)
        if topic == self.temperature_state_topic:
            num = number(render(self.temperature_template, payload))
            if num is not None:
                out["temperature"] = num
        if topic == self.current_temperature_topic:
            num = number(render(self.current_temperature_template, payload))
            if num is not None:
                out["current_temperature"] = num
        return out

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        if action == "set_mode":
            assert self.mode_command_topic is not None
            mode = str(args["mode"])
            exp = Expect("mode", (mode,)) if self.mode_state_topic else None
            payload = templated(self.mode_command_template, mode)
            return self.mode_command_topic, payload, expect(exp)
        if action == "set_temperature":
            assert self.temperature_command_topic is not None
            temp = float(num_arg(args, "temperature"))
            text = _format_step(temp, self.temp_step)
            exp = (
                Expect("temperature", number=temp, tolerance=self.temp_step / 2)
                if self.temperature_state_topic
                else None
            )
            payload = templated(self.temperature_command_template, text)
            return self.temperature_command_topic, payload, expect(exp)
        if action in ("turn_on", "turn_off"):
            assert self.power_command_topic is not None
            payload = self.payload_on if action == "turn_on" else self.payload_off
            return self.power_command_topic, payload, None
        raise Refused(f"unknown climate action {action!r}")


def _format_step(value: float, step: float) -> str:
    """The value with as many decimals as the step has (21 for 1, 21.5 for 0.5)."""
    text = f"{step:.6f}".rstrip("0").rstrip(".")
    decimals = len(text.partition(".")[2])
    return f"{value:.{decimals}f}"


def parse(rd: ConfigReader) -> ClimateSpec:
    """A climate config; the default range follows the unit (7..35 °C, 45..95 °F)."""
    unit = rd.text("temperature_unit") or "C"
    if unit not in ("C", "F"):
        raise Invalid("temperature_unit must be C or F")
    default_lo, default_hi = (7.0, 35.0) if unit == "C" else (45.0, 95.0)
    lo = rd.number("min_temp", default_lo)
    hi = rd.number("max_temp", default_hi)
    step = rd.number("temp_step", 1.0)
    if lo > hi:
        raise Invalid("min_temp must not exceed max_temp")
    if step <= 0:
        raise Invalid("temp_step must be positive")
    modes = rd.strings("modes", ("auto", "off", "cool", "heat", "dry", "fan_only"))
    ok_mode, mode_tpl = rd.command_template("mode_command_template")
    ok_temp, temp_tpl = rd.command_template("temperature_command_template")
    return ClimateSpec(
        mode_command_topic=rd.topic("mode_command_topic") if ok_mode and modes else None,
        mode_command_template=mode_tpl,
        mode_state_topic=rd.topic("mode_state_topic"),
        mode_template=rd.value_template("mode_state_template"),
        modes=modes,
        temperature_command_topic=rd.topic("temperature_command_topic") if ok_temp else None,
        temperature_command_template=temp_tpl,
        temperature_state_topic=rd.topic("temperature_state_topic"),
        temperature_template=rd.value_template("temperature_state_template"),
        current_temperature_topic=rd.topic("current_temperature_topic"),
        current_temperature_template=rd.value_template("current_temperature_template"),
        min_temp=lo,
        max_temp=hi,
        temp_step=step,
        temperature_unit=unit,
        power_command_topic=rd.topic("power_command_topic"),
        payload_on=rd.payload("payload_on", "ON"),
        payload_off=rd.payload("payload_off", "OFF"),
    )


COMPONENT = Component(
    "climate",
    60,
    parse,
    synonyms=("thermostat", "heating", "heater", "climate", "ac", "temperature"),
)

"""Fan: on/off, speed in percent over the device's own speed range, presets, oscillation."""

from __future__ import annotations

import math
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
from daemon.home.components.base import (
    Component,
    ComponentSpec,
    num_arg,
    number,
    on_off,
    templated,
    topics,
)
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import CommandTemplate, ValueTemplate, render
from daemon.home.text import clean_text


@dataclass(frozen=True)
class FanSpec(ComponentSpec):
    """A fan's topics, speed range, presets and oscillation payloads."""

    command_topic: str
    command_template: CommandTemplate | None = None
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    percentage_command_topic: str | None = None
    percentage_command_template: CommandTemplate | None = None
    percentage_state_topic: str | None = None
    percentage_template: ValueTemplate | None = None
    speed_range_min: int = 1
    speed_range_max: int = 100
    preset_mode_command_topic: str | None = None
    preset_mode_command_template: CommandTemplate | None = None
    preset_mode_state_topic: str | None = None
    preset_mode_template: ValueTemplate | None = None
    preset_modes: tuple[str, ...] = ()
    oscillation_command_topic: str | None = None
    oscillation_command_template: CommandTemplate | None = None
    oscillation_state_topic: str | None = None
    oscillation_template: ValueTemplate | None = None
    payload_oscillation_on: str = "oscillate_on"
    payload_oscillation_off: str = "oscillate_off"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        acts = [ActionSpec("turn_on"), ActionSpec("turn_off")]
        if self.percentage_command_topic:
            acts.append(
                ActionSpec(
                    "set_percentage",
                    (ArgSpec("percentage", "int", 1, 100, 1, unit="%"),),
                    "fan speed in percent",
                )
            )
        if self.preset_mode_command_topic:
            acts.append(
                ActionSpec(
                    "set_preset_mode",
                    (ArgSpec("preset_mode", "choice", choices=self.preset_modes),),
                )
            )
        if self.oscillation_command_topic:
            acts.append(
                ActionSpec(
                    "set_oscillation", (ArgSpec("oscillating", "choice", choices=("on", "off")),)
                )
            )
        return tuple(acts)

    @override
    def command_topics(self) -> frozenset[str]:
        return topics(
            self.command_topic,
            self.percentage_command_topic,
            self.preset_mode_command_topic,
            self.oscillation_command_topic,
        )

    @override
    def state_topics(self) -> frozenset[str]:
        return topics(
            self.state_topic,
            self.percentage_state_topic,
            self.preset_mode_state_topic,
            self.oscillation_state_topic,
        )

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        out: dict[str, StateValue] = {}
        if topic == self.state_topic:
            value = render(self.state_template, payload)
            out.update(on_off(value, self.payload_on, self.payload_off))
        if topic == self.percentage_state_topic:
            num = number(render(self.percentage_template, payload))
            if num is not None:
                count = self.speed_range_max - self.speed_range_min + 1
                steps = num - self.speed_range_min + 1
                pct = 0 if num < self.speed_range_min else steps * 100 / count
                out["percentage"] = round(pct)
        if topic == self.preset_mode_state_topic:
            mode = render(self.preset_mode_template, payload)
            if mode is not None and mode.strip() and mode != "None":
                out["preset_mode"] = clean_text(mode)
        if topic == self.oscillation_state_topic:
            value = render(self.oscillation_template, payload)
            if value == self.payload_oscillation_on:
                out["oscillating"] = True
            elif value == self.payload_oscillation_off:
                out["oscillating"] = False
        return out

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        if action in ("turn_on", "turn_off"):
            word = "on" if action == "turn_on" else "off"
            payload = self.payload_on if word == "on" else self.payload_off
            exp = Expect("state", (word,)) if self.state_topic else None
            return self.command_topic, templated(self.command_template, payload), expect(exp)
        if action == "set_percentage":
            return self._percentage(int(num_arg(args, "percentage")))
        if action == "set_preset_mode":
            assert self.preset_mode_command_topic is not None
            mode = str(args["preset_mode"])
            exp = Expect("preset_mode", (mode,)) if self.preset_mode_state_topic else None
            payload = templated(self.preset_mode_command_template, mode)
            return self.preset_mode_command_topic, payload, expect(exp)
        if action == "set_oscillation":
            assert self.oscillation_command_topic is not None
            osc = args["oscillating"] == "on"
            raw = self.payload_oscillation_on if osc else self.payload_oscillation_off
            exp = Expect("oscillating", (osc,)) if self.oscillation_state_topic else None
            payload = templated(self.oscillation_command_template, raw)
            return self.oscillation_command_topic, payload, expect(exp)
        raise Refused(f"unknown fan action {action!r}")

    def _percentage(self, pct: int) -> Built:
        """Percent to the device's speed step (1..100 % over speed_range_min..max)."""
        assert self.percentage_command_topic is not None
        count = self.speed_range_max - self.speed_range_min + 1
        value = math.ceil(pct * count / 100) + self.speed_range_min - 1
        tol = max(1.0, math.ceil(100 / count))
        exp = (
            Expect("percentage", number=pct, tolerance=tol) if self.percentage_state_topic else None
        )
        payload = templated(self.percentage_command_template, str(value))
        return self.percentage_command_topic, payload, expect(exp)


def parse(rd: ConfigReader) -> FanSpec:
    """A fan config; a feature whose template we cannot render is not offered."""
    command_topic = rd.required_topic("command_topic")
    ok_cmd, cmd_tpl = rd.command_template("command_template")
    if not ok_cmd:
        raise Invalid("command_template is not supported")
    lo = rd.integer("speed_range_min", 1, 1, 1_000_000)
    hi = rd.integer("speed_range_max", 100, 1, 1_000_000)
    if lo > hi:
        raise Invalid("speed_range_min must not exceed speed_range_max")
    ok_pct, pct_tpl = rd.command_template("percentage_command_template")
    ok_pr, pr_tpl = rd.command_template("preset_mode_command_template")
    ok_osc, osc_tpl = rd.command_template("oscillation_command_template")
    presets = rd.strings("preset_modes")
    pr_topic = rd.topic("preset_mode_command_topic")
    return FanSpec(
        command_topic=command_topic,
        command_template=cmd_tpl,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("state_value_template"),
        payload_on=rd.payload("payload_on", "ON"),
        payload_off=rd.payload("payload_off", "OFF"),
        percentage_command_topic=rd.topic("percentage_command_topic") if ok_pct else None,
        percentage_command_template=pct_tpl,
        percentage_state_topic=rd.topic("percentage_state_topic"),
        percentage_template=rd.value_template("percentage_value_template"),
        speed_range_min=lo,
        speed_range_max=hi,
        preset_mode_command_topic=pr_topic if ok_pr and presets else None,
        preset_mode_command_template=pr_tpl,
        preset_mode_state_topic=rd.topic("preset_mode_state_topic"),
        preset_mode_template=rd.value_template("preset_mode_value_template"),
        preset_modes=presets,
        oscillation_command_topic=rd.topic("oscillation_command_topic") if ok_osc else None,
        oscillation_command_template=osc_tpl,
        oscillation_state_topic=rd.topic("oscillation_state_topic"),
        oscillation_template=rd.value_template("oscillation_value_template"),
        payload_oscillation_on=rd.payload("payload_oscillation_on", "oscillate_on"),
        payload_oscillation_off=rd.payload("payload_oscillation_off", "oscillate_off"),
    )


COMPONENT = Component("fan", 30, parse, synonyms=("fan",))

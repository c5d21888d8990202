"""Switch: a relay or plug, on and off."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, Expect, StateValue, expect
from daemon.home.components.base import Component, ComponentSpec, on_off, topics
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import ValueTemplate, render


@dataclass(frozen=True)
class SwitchSpec(ComponentSpec):
    """A switch's command payloads and the state words it reports."""

    command_topic: str
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    state_on: str = "ON"
    state_off: str = "OFF"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        return (ActionSpec("turn_on"), ActionSpec("turn_off"))

    @override
    def command_topics(self) -> frozenset[str]:
        return topics(self.command_topic)

    @override
    def state_topics(self) -> frozenset[str]:
        return topics(self.state_topic)

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        if topic != self.state_topic:
            return {}
        return on_off(render(self.state_template, payload), self.state_on, self.state_off)

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        on = action == "turn_on"
        exp = Expect("state", ("on" if on else "off",)) if self.state_topic else None
        return self.command_topic, self.payload_on if on else self.payload_off, expect(exp)


def parse(rd: ConfigReader) -> SwitchSpec:
    """A switch config; state words default to the command payloads."""
    command_topic = rd.required_topic("command_topic")
    pl_on = rd.payload("payload_on", "ON")
    pl_off = rd.payload("payload_off", "OFF")
    if rd.has("command_template"):
        raise Invalid("command_template is not supported for switches")
    return SwitchSpec(
        command_topic=command_topic,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        payload_on=pl_on,
        payload_off=pl_off,
        state_on=rd.payload("state_on", pl_on),
        state_off=rd.payload("state_off", pl_off),
    )


COMPONENT = Component("switch", 20, parse, synonyms=("switch", "plug", "socket", "outlet"))

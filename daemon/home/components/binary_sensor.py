"""Binary sensor: a contact, motion or presence that is on or off; no actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, Refused, StateValue
from daemon.home.components.base import Component, ComponentSpec, on_off, topics
from daemon.home.reader import ConfigReader
from daemon.home.templates import ValueTemplate, render


@dataclass(frozen=True)
class BinarySensorSpec(ComponentSpec):
    """A binary sensor's state topic and the two payloads it reports."""

    state_topic: str
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        return ()

    @override
    def command_topics(self) -> frozenset[str]:
        return frozenset()

    @override
    def state_topics(self) -> frozenset[str]:
        return topics(self.state_topic)

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        if topic != self.state_topic:
            return {}
        return on_off(render(self.state_template, payload), self.payload_on, self.payload_off)

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        raise Refused("a binary sensor has no actions")


def parse(rd: ConfigReader) -> BinarySensorSpec:
    """A binary sensor config; a state topic is required."""
    return BinarySensorSpec(
        rd.required_topic("state_topic"),
        rd.value_template("value_template"),
        rd.payload("payload_on", "ON"),
        rd.payload("payload_off", "OFF"),
    )


COMPONENT = Component(
    "binary_sensor",
    100,
    parse,
    synonyms=("sensor", "contact", "door", "window", "motion"),
)

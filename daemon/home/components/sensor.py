"""Sensor: a reported value (a number where it is one), with its unit; no actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, Refused, StateValue
from daemon.home.components.base import Component, ComponentSpec, number, topics
from daemon.home.reader import ConfigReader
from daemon.home.templates import ValueTemplate, render
from daemon.home.text import MAX_STATE_CHARS, clean_text


@dataclass(frozen=True)
class SensorSpec(ComponentSpec):
    """A sensor's state topic and the unit the model hears its value in."""

    state_topic: str
    state_template: ValueTemplate | None = None
    unit_of_measurement: str | None = None
    state_class: str | None = None

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
        out: dict[str, StateValue] = {}
        if topic == self.state_topic:
            value = render(self.state_template, payload)
            if value is not None and value not in ("None", "unknown", "unavailable"):
                num = number(value)
                out["value"] = num if num is not None else clean_text(value, MAX_STATE_CHARS)
                if self.unit_of_measurement:
                    out["unit"] = self.unit_of_measurement
        return out

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        raise Refused("a sensor has no actions")


def parse(rd: ConfigReader) -> SensorSpec:
    """A sensor config; a state topic is required."""
    return SensorSpec(
        rd.required_topic("state_topic"),
        rd.value_template("value_template"),
        rd.label("unit_of_measurement"),
        rd.label("state_class"),
    )


COMPONENT = Component(
    "sensor", 90, parse, synonyms=("sensor", "temperature", "humidity")
)

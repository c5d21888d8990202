"""Button: pressed, never reported (nothing can confirm it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, StateValue
from daemon.home.components.base import Component, ComponentSpec, topics
from daemon.home.reader import ConfigReader, Invalid


@dataclass(frozen=True)
class ButtonSpec(ComponentSpec):
    """A button's command topic and press payload."""

    command_topic: str
    payload_press: str = "PRESS"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        return (ActionSpec("press"),)

    @override
    def command_topics(self) -> frozenset[str]:
        return topics(self.command_topic)

    @override
    def state_topics(self) -> frozenset[str]:
        return frozenset()

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        return {}

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        return self.command_topic, self.payload_press, None


def parse(rd: ConfigReader) -> ButtonSpec:
    """A button config: a fixed payload (a template would make it unpredictable)."""
    command_topic = rd.required_topic("command_topic")
    if rd.has("command_template"):
        raise Invalid("command_template is not supported for buttons")
    return ButtonSpec(command_topic, rd.payload("payload_press", "PRESS"))


COMPONENT = Component("button", 80, parse, synonyms=("button",))

"""Scene: activated, never reported (nothing can confirm it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, StateValue
from daemon.home.components.base import Component, ComponentSpec, topics
from daemon.home.reader import ConfigReader


@dataclass(frozen=True)
class SceneSpec(ComponentSpec):
    """A scene's command topic and activation payload."""

    command_topic: str
    payload_on: str = "ON"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        return (ActionSpec("activate"),)

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
        return self.command_topic, self.payload_on, None


def parse(rd: ConfigReader) -> SceneSpec:
    """A scene config; a command topic is required."""
    return SceneSpec(rd.required_topic("command_topic"), rd.payload("payload_on", "ON"))


COMPONENT = Component("scene", 70, parse, synonyms=("scene", "mood"))

"""Lock: lock, unlock and, where the config offers it, unlatch (open) the door."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, Expect, StateValue, expect
from daemon.home.components.base import Component, ComponentSpec, named_state, templated, topics
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import CommandTemplate, ValueTemplate, render


@dataclass(frozen=True)
class LockSpec(ComponentSpec):
    """A lock's command payloads and the words it reports its state in."""

    command_topic: str
    command_template: CommandTemplate | None = None
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_lock: str = "LOCK"
    payload_unlock: str = "UNLOCK"
    payload_open: str | None = None
    state_locked: str = "LOCKED"
    state_unlocked: str = "UNLOCKED"
    state_locking: str = "LOCKING"
    state_unlocking: str = "UNLOCKING"
    state_jammed: str = "JAMMED"
    state_open: str = "OPEN"
    state_opening: str = "OPENING"

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        acts = [ActionSpec("lock"), ActionSpec("unlock")]
        if self.payload_open is not None:
            acts.append(ActionSpec("open", description="unlatch and open the door"))
        return tuple(acts)

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
        names = {
            self.state_locked: "locked",
            self.state_unlocked: "unlocked",
            self.state_locking: "locking",
            self.state_unlocking: "unlocking",
            self.state_jammed: "jammed",
            self.state_open: "open",
            self.state_opening: "opening",
        }
        return named_state(render(self.state_template, payload), names)

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        payload, states = {
            "lock": (self.payload_lock, ("locked", "locking")),
            "unlock": (self.payload_unlock, ("unlocked", "unlocking")),
            "open": (self.payload_open or "", ("open", "opening", "unlocked")),
        }[action]
        exp = Expect("state", states) if self.state_topic else None
        return self.command_topic, templated(self.command_template, payload), expect(exp)


def parse(rd: ConfigReader) -> LockSpec:
    """A lock config; one that needs a code is refused (we never have one)."""
    command_topic = rd.required_topic("command_topic")
    if rd.has("code_format"):
        raise Invalid("locks that need a code (code_format) are not supported")
    ok_cmd, cmd_tpl = rd.command_template("command_template")
    if not ok_cmd:
        raise Invalid("command_template is not supported")
    return LockSpec(
        command_topic=command_topic,
        command_template=cmd_tpl,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        payload_lock=rd.payload("payload_lock", "LOCK"),
        payload_unlock=rd.payload("payload_unlock", "UNLOCK"),
        payload_open=rd.optional_payload("payload_open", None),
        state_locked=rd.payload("state_locked", "LOCKED"),
        state_unlocked=rd.payload("state_unlocked", "UNLOCKED"),
        state_locking=rd.payload("state_locking", "LOCKING"),
        state_unlocking=rd.payload("state_unlocking", "UNLOCKING"),
        state_jammed=rd.payload("state_jammed", "JAMMED"),
        state_open=rd.payload("state_open", "OPEN"),
        state_opening=rd.payload("state_opening", "OPENING"),
    )


COMPONENT = Component("lock", 50, parse, synonyms=("lock", "door"))

"""Valve: a water or gas valve: open, close, stop and, if it reports one, a position.

Home Assistant's MQTT valve: one `command_topic` for everything. A valve without
`reports_position` is told `payload_open`/`payload_close` (`payload_stop` only if the
config has one) and reports words (`state_open`, `state_opening`, `state_closed`,
`state_closing`; `stopped` too). A valve with `reports_position` is told a position
(`position_closed`..`position_open`; opening is the open position, closing the
closed one) and reports a number, the words `state_opening`/`state_closing`, or
JSON `{"state": ..., "position": ...}`; the payload and state words of the first
kind are then refused, as Home Assistant refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    named_state,
    num_arg,
    number,
    percent_of,
    position_of,
    position_tolerance,
    templated,
    topics,
)
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import CommandTemplate, ValueTemplate, render

_WORD_KEYS = ("payload_open", "payload_close", "state_open", "state_closed")
_EXPECT_WORDS: Mapping[str, tuple[StateValue, ...]] = {
    "open": ("open", "opening"),
    "close": ("closed", "closing"),
    "stop": ("stopped", "open", "closed"),
}


@dataclass(frozen=True)
class ValveSpec(ComponentSpec):
    """A valve's command topic, payloads or position range, and its state words."""

    command_topic: str | None = None
    command_template: CommandTemplate | None = None
    payload_open: str | None = "OPEN"
    payload_close: str | None = "CLOSE"
    payload_stop: str | None = None
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    state_open: str = "open"
    state_opening: str = "opening"
    state_closed: str = "closed"
    state_closing: str = "closing"
    state_stopped: str = "stopped"
    reports_position: bool = False
    position_open: int = 100
    position_closed: int = 0

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        if self.command_topic is None:
            return ()
        acts = []
        if self.reports_position or self.payload_open is not None:
            acts.append(ActionSpec("open"))
        if self.reports_position or self.payload_close is not None:
            acts.append(ActionSpec("close"))
        if self.payload_stop is not None:
            acts.append(ActionSpec("stop"))
        if self.reports_position:
            acts.append(
                ActionSpec(
                    "set_position",
                    (ArgSpec("position", "int", 0, 100, 1, unit="%"),),
                    "0 is closed, 100 is fully open",
                )
            )
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
        value = render(self.state_template, payload)
        if not value:
            return {}
        state, position = _split_json(value, self.reports_position)
        if self.reports_position:
            return self._decode_position(state, position)
        names = {
            self.state_open: "open",
            self.state_opening: "opening",
            self.state_closed: "closed",
            self.state_closing: "closing",
            self.state_stopped: "stopped",
        }
        return named_state(state, names)

    def _decode_position(self, state: str | None, position: Any) -> dict[str, StateValue]:
        """A position (in percent, with open/closed from it) or a moving word."""
        moving = named_state(state, {self.state_opening: "opening", self.state_closing: "closing"})
        if moving and position == state:
            return moving  # a bare word: no position in it
        num = number(position)
        if num is None:
            return moving
        pct = min(100, max(0, percent_of(num, self.position_closed, self.position_open)))
        return {"state": "closed" if pct <= 0 else "open", **moving, "position": pct}

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        if self.command_topic is None:
            raise Refused("this valve has no command topic")
        if action == "set_position":
            return self._position(int(num_arg(args, "position")))
        if self.reports_position and action in ("open", "close"):
            return self._position(100 if action == "open" else 0)
        raw = {"open": self.payload_open, "close": self.payload_close, "stop": self.payload_stop}
        payload = raw.get(action)
        if payload is None:
            raise Refused(f"unknown valve action {action!r}")
        exp = Expect("state", _EXPECT_WORDS[action]) if self.state_topic else None
        return self.command_topic, templated(self.command_template, payload), expect(exp)

    def _position(self, pct: int) -> Built:
        assert self.command_topic is not None
        value = position_of(pct, self.position_closed, self.position_open)
        exp = None
        if self.state_topic is not None:
            tol = position_tolerance(self.position_closed, self.position_open)
            exp = Expect("position", number=pct, tolerance=tol)
        payload = templated(self.command_template, str(value))
        return self.command_topic, payload, expect(exp)


def _split_json(value: str, reports_position: bool) -> tuple[str | None, Any]:
    """(state word, position) from a state payload: JSON with `state`/`position`, or
    the payload itself as both (a JSON object without the key that matters: nothing)."""
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return value, value
    if not isinstance(data, dict):
        return value, value
    if ("position" if reports_position else "state") not in data:
        return None, None
    state = data.get("state")
    return (state if isinstance(state, str) else None), data.get("position")


def parse(rd: ConfigReader) -> ValveSpec:
    """A valve config, refused as Home Assistant refuses it (see the module)."""
    reports_position = rd.flag("reports_position")
    if reports_position and any(key in rd.data for key in _WORD_KEYS):
        raise Invalid(
            "payload_open, payload_close, state_open and state_closed are not allowed "
            "if the valve reports a position"
        )
    ok_cmd, cmd_tpl = rd.command_template("command_template")
    if not ok_cmd:
        raise Invalid("command_template is not supported")
    pos_open = rd.integer("position_open", 100, -1_000_000, 1_000_000)
    pos_closed = rd.integer("position_closed", 0, -1_000_000, 1_000_000)
    if pos_open == pos_closed:
        raise Invalid("position_open and position_closed must differ")
    return ValveSpec(
        command_topic=rd.topic("command_topic"),
        command_template=cmd_tpl,
        payload_open=rd.optional_payload("payload_open", "OPEN"),
        payload_close=rd.optional_payload("payload_close", "CLOSE"),
        payload_stop=rd.optional_payload("payload_stop", None),
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        state_open=rd.payload("state_open", "open"),
        state_opening=rd.payload("state_opening", "opening"),
        state_closed=rd.payload("state_closed", "closed"),
        state_closing=rd.payload("state_closing", "closing"),
        state_stopped=rd.payload("state_stopped", "stopped"),
        reports_position=reports_position,
        position_open=pos_open,
        position_closed=pos_closed,
    )


COMPONENT = Component(
    "valve", 120, parse, synonyms=("valve", "tap", "water", "sprinkler", "irrigation")
)

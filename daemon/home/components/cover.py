"""Cover: blinds, shutters, garage doors and gates: open, close, stop, position."""

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


@dataclass(frozen=True)
class CoverSpec(ComponentSpec):
    """A cover's commands, state words and position range (either way round)."""

    command_topic: str | None = None
    payload_open: str | None = "OPEN"
    payload_close: str | None = "CLOSE"
    payload_stop: str | None = "STOP"
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    state_open: str = "open"
    state_opening: str = "opening"
    state_closed: str = "closed"
    state_closing: str = "closing"
    state_stopped: str = "stopped"
    set_position_topic: str | None = None
    set_position_template: CommandTemplate | None = None
    position_topic: str | None = None
    position_template: ValueTemplate | None = None
    position_open: int = 100
    position_closed: int = 0

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        acts = []
        if self.command_topic:
            if self.payload_open is not None:
                acts.append(ActionSpec("open"))
            if self.payload_close is not None:
                acts.append(ActionSpec("close"))
            if self.payload_stop is not None:
                acts.append(ActionSpec("stop"))
        if self.set_position_topic:
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
        return topics(self.command_topic, self.set_position_topic)

    @override
    def state_topics(self) -> frozenset[str]:
        return topics(self.state_topic, self.position_topic)

    @override
    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        out: dict[str, StateValue] = {}
        if topic == self.state_topic:
            names = {
                self.state_open: "open",
                self.state_opening: "opening",
                self.state_closed: "closed",
                self.state_closing: "closing",
                self.state_stopped: "stopped",
            }
            out.update(named_state(render(self.state_template, payload), names))
        if topic == self.position_topic:
            num = number(render(self.position_template, payload))
            if num is not None:
                pct = percent_of(num, self.position_closed, self.position_open)
                out["position"] = pct
                if self.state_topic is None:
                    out["state"] = "closed" if pct <= 0 else "open"
        return out

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        reports = self.state_topic is not None or self.position_topic is not None
        if action in ("open", "close", "stop"):
            assert self.command_topic is not None
            payload = {"open": self.payload_open, "close": self.payload_close}.get(
                action, self.payload_stop
            )
            assert payload is not None
            states: tuple[StateValue, ...] = {
                "open": ("open", "opening"),
                "close": ("closed", "closing"),
                "stop": ("stopped", "open", "closed"),
            }[action]
            exp = Expect("state", states) if reports else None
            return self.command_topic, payload, expect(exp)
        if action == "set_position":
            return self._position(int(num_arg(args, "position")))
        raise Refused(f"unknown cover action {action!r}")

    def _position(self, pct: int) -> Built:
        assert self.set_position_topic is not None
        value = position_of(pct, self.position_closed, self.position_open)
        payload = templated(self.set_position_template, str(value))
        pos_exp: Expect | None = None
        if self.position_topic is not None:
            tol = position_tolerance(self.position_closed, self.position_open)
            pos_exp = Expect("position", number=pct, tolerance=tol)
        elif self.state_topic is not None:
            moving: tuple[StateValue, ...] = ("open", "opening", "closing", "stopped")
            if pct == 0:
                moving = ("closed", "closing")
            elif pct == 100:
                moving = ("open", "opening")
            pos_exp = Expect("state", moving)
        return self.set_position_topic, payload, expect(pos_exp)


def parse(rd: ConfigReader) -> CoverSpec:
    """A cover config; a payload set to null is an action the cover does not offer."""
    ok_pos, pos_tpl = rd.command_template("set_position_template", ("position", "value"))
    pos_open = rd.integer("position_open", 100, -1_000_000, 1_000_000)
    pos_closed = rd.integer("position_closed", 0, -1_000_000, 1_000_000)
    if pos_open == pos_closed:
        raise Invalid("position_open and position_closed must differ")
    return CoverSpec(
        command_topic=rd.topic("command_topic"),
        payload_open=rd.optional_payload("payload_open", "OPEN"),
        payload_close=rd.optional_payload("payload_close", "CLOSE"),
        payload_stop=rd.optional_payload("payload_stop", "STOP"),
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        state_open=rd.payload("state_open", "open"),
        state_opening=rd.payload("state_opening", "opening"),
        state_closed=rd.payload("state_closed", "closed"),
        state_closing=rd.payload("state_closing", "closing"),
        state_stopped=rd.payload("state_stopped", "stopped"),
        set_position_topic=rd.topic("set_position_topic") if ok_pos else None,
        set_position_template=pos_tpl,
        position_topic=rd.topic("position_topic"),
        position_template=rd.value_template("position_template"),
        position_open=pos_open,
        position_closed=pos_closed,
    )


COMPONENT = Component(
    "cover",
    40,
    parse,
    synonyms=("cover", "blind", "blinds", "shutter", "door", "garage", "gate", "curtain"),
)

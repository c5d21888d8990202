"""Alarm control panel: arm and disarm, minus whatever needs the user's code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import override

from daemon.home.actions import ActionSpec, ArgValue, Built, Expect, Refused, StateValue, expect
from daemon.home.components.base import Component, ComponentSpec, templated, topics
from daemon.home.reader import ConfigReader, Invalid
from daemon.home.templates import CommandTemplate, ValueTemplate, render

ARM_ACTIONS: tuple[str, ...] = ("arm_home", "arm_away", "arm_night", "arm_vacation")
STATES: tuple[str, ...] = (
    "disarmed",
    "armed_home",
    "armed_away",
    "armed_night",
    "armed_vacation",
    "armed_custom_bypass",
    "pending",
    "arming",
    "disarming",
    "triggered",
)
# Home Assistant's special `code` values: the user's code is checked by the panel.
REMOTE_CODES = frozenset({"REMOTE_CODE", "REMOTE_CODE_TEXT"})
_PAYLOADS: Mapping[str, str] = {
    "arm_home": "ARM_HOME",
    "arm_away": "ARM_AWAY",
    "arm_night": "ARM_NIGHT",
    "arm_vacation": "ARM_VACATION",
    "disarm": "DISARM",
}
_FEATURES = (*ARM_ACTIONS, "arm_custom_bypass", "trigger")
_EXPECT: Mapping[str, tuple[StateValue, ...]] = {
    "arm_home": ("armed_home", "arming", "pending"),
    "arm_away": ("armed_away", "arming", "pending"),
    "arm_night": ("armed_night", "arming", "pending"),
    "arm_vacation": ("armed_vacation", "arming", "pending"),
    "disarm": ("disarmed", "disarming"),
}


@dataclass(frozen=True)
class AlarmPanelSpec(ComponentSpec):
    """An alarm panel; `actions` are those offered (supported, and needing no user code).

    Payloads are those of Home Assistant (`payload_arm_home` ...), through a
    substitution-only `command_template` whose one variable is `action`.
    """

    command_topic: str
    state_topic: str
    state_template: ValueTemplate | None = None
    command_template: CommandTemplate | None = None
    payloads: tuple[tuple[str, str], ...] = ()  # (action, payload) for each offered action

    @property
    def offered(self) -> tuple[str, ...]:
        """The names of the offered actions."""
        return tuple(a for a, _p in self.payloads)

    def payload(self, action: str) -> str:
        """The payload Home Assistant's config gives an offered action (KeyError for any other)."""
        return dict(self.payloads)[action]

    @override
    def actions(self) -> tuple[ActionSpec, ...]:
        return tuple(ActionSpec(a) for a in self.offered)

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
        word = value.strip().casefold() if value is not None else ""
        return {"state": word} if word in STATES else {}

    @override
    def build(self, action: str, args: Mapping[str, ArgValue]) -> Built:
        """The action's payload through the config's template; never a code (none is
        offered)."""
        if action not in self.offered:
            raise Refused(f"unknown alarm panel action {action!r}")
        payload = templated(self.command_template, self.payload(action))
        return self.command_topic, payload, expect(Expect("state", _EXPECT[action]))


def parse(rd: ConfigReader) -> AlarmPanelSpec:
    """Arm and disarm as Home Assistant offers them, minus what needs the user's code.

    A `code` (a fixed one Home Assistant checks itself, or REMOTE_CODE/REMOTE_CODE_TEXT
    for one the panel checks) means a person must enter it. We never have it and never
    make one up, so the actions that require it (`code_arm_required`,
    `code_disarm_required`, both true by default) are not offered; the caveat says so.
    Custom bypass and trigger are never offered.
    """
    command_topic = rd.required_topic("command_topic")
    state_topic = rd.required_topic("state_topic")
    features = rd.strings("supported_features", _FEATURES)
    unknown = [f for f in features if f not in _FEATURES]
    if unknown:
        raise Invalid(f"supported_features has unknown feature(s) {', '.join(unknown)}")
    ok_tpl, cmd_tpl = rd.command_template("command_template", ("action",))
    if not ok_tpl:
        rd.caveat = "its command template is not supported here: it can only be read"
        return AlarmPanelSpec(command_topic, state_topic, rd.value_template("value_template"))
    code = rd.text("code")
    needs_code = code is not None and code != ""
    arm_blocked = needs_code and rd.flag("code_arm_required", True)
    disarm_blocked = needs_code and rd.flag("code_disarm_required", True)
    payloads: list[tuple[str, str]] = []
    for action in ARM_ACTIONS:
        if action in features and not arm_blocked:
            payloads.append((action, rd.payload(f"payload_{action}", _PAYLOADS[action])))
    if not disarm_blocked:
        payloads.append(("disarm", rd.payload("payload_disarm", "DISARM")))
    blocked = [w for w, b in (("arming", arm_blocked), ("disarming", disarm_blocked)) if b]
    if blocked:
        kind = "the panel checks" if code in REMOTE_CODES else "Home Assistant checks"
        what = " and ".join(blocked)
        need = "need" if len(blocked) > 1 else "needs"
        rd.caveat = (
            f"{what} {need} the user's code ({kind} it), which this assistant does not "
            "have: use the panel or Home Assistant for that"
        )
        rd.notes.append(f"{what} {need} a user code: not offered")
    return AlarmPanelSpec(
        command_topic=command_topic,
        state_topic=state_topic,
        state_template=rd.value_template("value_template"),
        command_template=cmd_tpl,
        payloads=tuple(payloads),
    )


COMPONENT = Component(
    "alarm_control_panel", 110, parse, synonyms=("alarm", "security", "panel", "siren")
)

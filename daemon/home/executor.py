"""Carry out a planned command and find out whether the device obeyed.

One publish (at the device's QoS, at most once), then wait for a fresh state report
that matches the plan's expectation, all within one deadline (default 3 s). Every
call ends in exactly one result:

* `done`: the device reported the expected state after we published (a live
  report: the broker's retained copy, re-sent on every resubscribe, does not count);
* `sent`: sent but not confirmed (no matching report in time, the device does not
  report state, or the broker did not acknowledge it);
* `failed`: nothing was published (device unknown or unavailable, or no broker
  connection within the deadline).

Cancelling `execute()` before the message was handed to the MQTT client publishes
nothing; after that point the message is out and is never repeated.

Commands are debounced per device: the same command (topic and payload) to the same
device within `debounce` seconds of the first, with nothing else sent to it in
between, is answered with the first one's result and not published again (a model
that repeats itself must not press a doorbell or toggle a relay twice).

`HomeControl` puts the pieces together for a tool: find the device, validate the
action, apply the two-call confirmation rule for sensitive devices, execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from daemon.home.actions import StateValue, plain_state
from daemon.home.admission import Admission
from daemon.home.commands import Command, CommandError, plan_command
from daemon.home.confirm import ConfirmationGate
from daemon.home.device import Device
from daemon.home.inventory import (
    AvailabilityChanged,
    DeviceRemoved,
    Inventory,
    InventoryEvent,
    StateReported,
)
from daemon.home.mqtt import NotPublished, PublishOutcome
from daemon.home.search import LookupFailure
from daemon.home.sensitivity import entity_of
from daemon.home.text import clean_text

log = logging.getLogger(__name__)

_ECHO_CHARS = 256  # of a published topic or payload repeated to the model


class Publisher(Protocol):
    """What the executor needs from an `MqttConnection`."""

    async def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> PublishOutcome:
        """Publish at most once: acked, unconfirmed, or `NotPublished` if nothing left in time."""


@dataclass(frozen=True)
class ExecResult:
    """The one answer for one command."""

    status: Literal["done", "sent", "failed"]
    detail: str
    published: bool = False
    state: Mapping[str, StateValue] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.status == "done":
            return f"done: {self.detail}"
        if self.status == "sent":
            return f"sent but not confirmed: {self.detail}"
        return f"failed: {self.detail}"


@dataclass
class ExecutorStats:
    """Counters until they move to daemon.ops.metrics."""

    done: int = 0
    sent_unconfirmed: int = 0
    failed_unavailable: int = 0
    failed_not_sent: int = 0
    failed_unknown_device: int = 0
    failed_bad_command: int = 0
    broker_unacked: int = 0
    debounced: int = 0  # the same command again within the window: not re-published


@dataclass
class _Recent:
    """The last command to one device and, once known, its result."""

    key: tuple[str, str]
    at: float
    result: asyncio.Future[ExecResult | None]


class CommandExecutor:
    """Publishes planned commands once and waits for the device to confirm them."""

    def __init__(
        self,
        publisher: Publisher,
        inventory: Inventory,
        *,
        deadline: float = 3.0,
        debounce: float = 1.0,
    ) -> None:
        if deadline <= 0 or debounce < 0:
            raise ValueError("deadline must be positive, debounce not negative")
        self.publisher = publisher
        self.inventory = inventory
        self.deadline = deadline
        self.debounce = debounce
        self.stats = ExecutorStats()
        self._recent: OrderedDict[str, _Recent] = OrderedDict()

    async def execute(self, command: Command, *, deadline: float | None = None) -> ExecResult:
        """Publish `command` at most once and wait up to `deadline` s for confirmation;
        the same command to the same device just before gets the first one's answer."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        key = (command.topic, command.payload)
        while self._recent and now - next(iter(self._recent.values())).at > self.debounce:
            self._recent.popitem(last=False)  # only the window is remembered
        recent = self._recent.get(command.device_id)
        if recent is not None and recent.key == key:
            first = await asyncio.shield(recent.result)
            if first is not None and first.published:
                self.stats.debounced += 1
                ago = loop.time() - recent.at
                return ExecResult(
                    first.status,
                    f"{first.detail} (the same command {ago:.1f} s ago; not sent again)",
                    False,
                    first.state,
                )
        mine = _Recent(key, loop.time(), loop.create_future())
        self._recent.pop(command.device_id, None)
        self._recent[command.device_id] = mine
        result: ExecResult | None = None
        try:
            result = await self._execute(command, deadline)
            return result
        finally:
            mine.result.set_result(result)  # None (cancelled): a repeat goes its own way

    def _target(self, command: Command) -> Device | ExecResult:
        """The device the command goes to, or the failure that stops it before any publish."""
        device = self.inventory.get(command.device_id)
        if device is None:
            self.stats.failed_unknown_device += 1
            return ExecResult("failed", f"unknown device {command.device_id!r}; nothing was sent")
        if command.topic not in device.command_topics or command.retain:
            self.stats.failed_bad_command += 1
            return ExecResult("failed", "command does not match the device's config; not sent")
        available = self.inventory.available(device.id)
        if available is not True:
            self.stats.failed_unavailable += 1
            why = "is offline" if available is False else "has not reported availability yet"
            return ExecResult("failed", f"{device.name} {why}; nothing was sent")
        return device

    async def _execute(self, command: Command, deadline: float | None) -> ExecResult:
        budget = self.deadline if deadline is None else deadline
        loop = asyncio.get_running_loop()
        end = loop.time() + budget
        device = self._target(command)
        if isinstance(device, ExecResult):
            return device

        expected = command.expected
        confirmed: asyncio.Future[Mapping[str, StateValue]] = loop.create_future()
        last: dict[str, Any] = {"state": dict(self.inventory.state(device.id)), "note": ""}

        def on_event(event: InventoryEvent) -> None:
            if event.device.id != device.id or confirmed.done():
                return
            if isinstance(event, StateReported):
                last["state"] = dict(event.state)
                # A retained copy (re-sent after a reconnect) is no sign the device obeyed.
                if not event.retained and expected is not None and expected.matches(event.state):
                    confirmed.set_result(event.state)
            elif isinstance(event, AvailabilityChanged) and event.available is False:
                last["note"] = f"; {device.name} went offline"
            elif isinstance(event, DeviceRemoved):
                last["note"] = f"; {device.name} was removed"

        remove = self.inventory.add_listener(on_event)
        try:
            try:
                outcome = await self.publisher.publish(
                    command.topic,
                    command.payload,
                    qos=command.qos,
                    retain=False,
                    timeout=max(0.0, end - loop.time()),
                )
            except NotPublished as exc:
                self.stats.failed_not_sent += 1
                return ExecResult("failed", str(exc))
            unacked = outcome is PublishOutcome.UNCONFIRMED
            if unacked:
                self.stats.broker_unacked += 1
            ack_note = "; the broker did not acknowledge it" if unacked else ""
            if expected is None:
                self.stats.sent_unconfirmed += 1
                return ExecResult(
                    "sent",
                    f"{device.name} does not report a state that confirms "
                    f"{command.action}{ack_note}",
                    True,
                    last["state"],
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(end):
                    state = await confirmed
                    self.stats.done += 1
                    return ExecResult(
                        "done", f"{device.name}: {expected.describe()}", True, dict(state)
                    )
            self.stats.sent_unconfirmed += 1
            return ExecResult(
                "sent",
                f"no report of {expected.describe()} from {device.name} within "
                f"{budget:g}s{ack_note}{last['note']}",
                True,
                last["state"],
            )
        finally:
            remove()


@dataclass(frozen=True)
class ActionOutcome:
    """A tool-ready answer: status plus a sentence for the model."""

    status: Literal["done", "sent", "failed", "needs_confirmation", "error"]
    message: str
    device_id: str | None = None
    confirmation_token: str | None = None
    state: Mapping[str, StateValue] = field(default_factory=dict)
    published: Mapping[str, str] | None = None  # what went to the broker, for the transcript

    def as_dict(self) -> dict[str, Any]:
        """The outcome as the JSON the model gets back (empty fields left out)."""
        out: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.device_id:
            out["device_id"] = self.device_id
        if self.confirmation_token:
            out["confirmation_token"] = self.confirmation_token
        if self.state:
            out["state"] = plain_state(self.state)
        if self.published:  # an echo for the transcript: one short line each
            out["mqtt"] = {k: clean_text(v, _ECHO_CHARS) for k, v in self.published.items()}
        return out


class HomeControl:
    """Find, validate, admit, confirm if sensitive, then execute: one call per tool call."""

    def __init__(
        self,
        inventory: Inventory,
        executor: CommandExecutor,
        gate: ConfirmationGate,
        admission: Admission | None = None,
    ) -> None:
        self.inventory = inventory
        self.executor = executor
        self.gate = gate
        self.admission = admission

    def _refusal(self, device: Device, topic: str) -> str | None:
        """Why this command may not be published at all, or None."""
        admission = self.admission
        if admission is None:
            return None
        if not admission.topic_allowed(topic):
            admission.refused_topics += 1
            why = admission.why_topic(topic)
            return f"{device.name} cannot be controlled: its command topic {why}"
        until = admission.held_until(device.id)
        if until is not None:
            admission.refused_held += 1
            wait = max(1, math.ceil(until - admission.now()))
            return (
                f"{device.name} was announced only recently and is sensitive: it can be "
                f"controlled in about {wait} s (held for the owner to notice it)"
            )
        return None

    async def act(
        self,
        device: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        area: str | None = None,
        confirmation: str | None = None,
    ) -> ActionOutcome:
        """One tool call's action on one device, with exactly one outcome (or a question)."""
        found = self.inventory.resolve(device, area)
        if isinstance(found, LookupFailure):
            return ActionOutcome("error", found.message)
        plan = plan_command(found, action, args)
        if isinstance(plan, CommandError):
            return ActionOutcome("error", plan.message, found.id)
        refusal = self._refusal(found, plan.topic)
        if refusal is not None:
            return ActionOutcome("error", refusal, found.id)
        await self.gate.await_answer(confirmation, found.id, plan.action, plan.args,
                                     (plan.topic, plan.payload))
        decision = self.gate.check(
            entity=entity_of(found),
            action=plan.action,
            args=plan.args,
            topic=plan.topic,
            payload=plan.payload,
            token=confirmation,
        )
        if decision.verdict == "confirm":
            return ActionOutcome("needs_confirmation", decision.message, found.id, decision.token)
        if decision.verdict in ("declined", "refused"):
            return ActionOutcome("failed", decision.message, found.id)
        result = await self.executor.execute(plan)
        published = None
        if result.published:
            published = {"topic": plan.topic, "payload": plan.payload}
        return ActionOutcome(
            result.status, str(result), found.id, state=result.state, published=published
        )

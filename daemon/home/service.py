"""HomeService: the daemon's home side, run next to the Agent in its TaskGroup.

It owns one MQTT connection and keeps three things current:

* the inventory: devices declared in `[[mqtt.devices]]` plus everything announced by
  Home Assistant discovery under `mqtt.discovery_prefix` (re-read when Home
  Assistant says `<prefix>/status` = online; discovered devices whose config did
  not come back in the re-read are forgotten);
* the model's device tools (daemon.home.model_tools), rebuilt after a quiet
  `mqtt.refresh_debounce` so a burst of announcements is one context update;
* the daemon itself as a Home Assistant device (daemon.home.own_device): glasses
  connected, battery, Live link state, last transcript, and the "mute microphone"
  and "camera" switches that really call the Agent. Its availability is the
  connection's last will.

`describe()` renders the inventory and the exact declarations the model sees, for
`edge-agent devices`; `snapshot()` fills the inventory first from the broker's
retained configs with a short-lived, clean-session connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from daemon.config import MqttSettings, Settings
from daemon.home.actions import plain_state
from daemon.home.admission import Admission, device_fingerprints
from daemon.home.confirm import ConfirmationBook, ConfirmationGate
from daemon.home.consent import ConsentTracker
from daemon.home.device import Device
from daemon.home.executor import CommandExecutor, HomeControl
from daemon.home.inventory import (
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    Inventory,
    InventoryEvent,
)
from daemon.home.model_tools import TOOL_NAMES, HomeTools, Registry, action_text
from daemon.home.mqtt import (
    MqttConnection,
    MqttMessage,
    NotPublished,
    PublishOutcome,
    Subscription,
)
from daemon.home.own_device import OwnDevice, StatusProvider, Switch
from daemon.home.sensitivity import CATEGORIES, SensitivityPolicy, entity_of
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore

log = logging.getLogger(__name__)

_SETTLE_SECONDS = 0.2  # retained messages have stopped arriving after this much quiet
_REREAD_INTERVAL = 30.0  # Home Assistant's "online" re-reads discovery at most this often


class AgentControls(Protocol):
    """What the service needs from the Agent (the Agent has exactly these)."""

    def status(self) -> dict[str, Any]:
        """What Home Assistant is shown of the agent (scalars only)."""

    def set_mic_muted(self, muted: bool) -> None:
        """The microphone switch in Home Assistant: muted, nothing heard leaves the device."""

    def set_camera_enabled(self, enabled: bool) -> None:
        """The camera switch in Home Assistant: off, no frame is captured or sent."""

    def add_observer(self, observer: ConsentTracker) -> None:
        """Follow the conversation's turns, to read the answer to a confirmation question."""

    def taps_possible(self) -> bool:
        """Whether the user can tap to confirm (the peripheral has a tap source)."""


def _push_to_talk_switch(settings: Settings, agent: object) -> Switch | None:
    """The kiosk's talk button for Home Assistant's "Push to talk" switch, when the user
    opted in (`peripheral.kiosk.listen = "push_to_talk"` and `push_to_talk_mqtt`).
    Whoever may publish on its command topic can open the microphone: give it an ACL."""
    kiosk = settings.peripheral.kiosk
    if (settings.peripheral.kind != "kiosk" or kiosk.listen != "push_to_talk"
            or not kiosk.push_to_talk_mqtt):
        return None
    press = getattr(getattr(agent, "peripheral", None), "push_to_talk", None)
    if not callable(press):
        return None
    return lambda on: press(on, "mqtt")


class _NoBroker:
    """The publisher when `mqtt.host` is empty: every command fails, nothing is sent."""

    async def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> PublishOutcome:
        raise NotPublished("no MQTT broker is configured (mqtt.host); nothing was sent")


class _Counted:
    """Moves a stats dataclass's counters into a labelled Prometheus counter by delta."""

    def __init__(self, counter: Any, stats: Any, prefix: str = "") -> None:
        self._counter = counter
        self._stats = stats
        self._prefix = prefix
        self._seen: dict[str, int] = {}

    def sync(self) -> None:
        for f in dataclasses.fields(self._stats):
            value = getattr(self._stats, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            delta = value - self._seen.get(f.name, 0)
            if delta > 0:
                self._counter.labels(self._prefix + f.name).inc(delta)
            self._seen[f.name] = value


class HomeService:
    """Inventory, device tools and the daemon's own HA device over one MQTT connection."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        metrics: Metrics,
        agent: AgentControls | None = None,
        *,
        on_mute: Switch | None = None,
        on_camera: Switch | None = None,
        status_provider: StatusProvider | None = None,
        consent: ConsentTracker | None = None,
        taps_possible: Callable[[], bool] | None = None,
        state: StateStore | None = None,
        connection: MqttConnection | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        mqtt = settings.mqtt
        # Only the user can confirm a sensitive action: the tracker follows the Agent's
        # conversation. No Agent (and no tracker given): nothing sensitive ever acts.
        if consent is None and agent is not None:
            pin = settings.tools.confirm_pin
            consent = ConsentTracker(pin=pin.get_secret_value().strip() if pin else None)
            agent.add_observer(consent)
        self.consent = consent
        self.conn: MqttConnection | None = connection
        if self.conn is None and mqtt.host:
            self.conn = MqttConnection(mqtt)
        base_topic = f"edge-agent/{mqtt.client_id}"
        self.own_device = OwnDevice(
            mqtt,
            metrics,
            availability_topic=(
                self.conn.availability_topic if self.conn else f"{base_topic}/availability"
            ),
            held=self._held_line,
            status_provider=status_provider or (agent.status if agent else None),
            on_mute=on_mute or (agent.set_mic_muted if agent else None),
            on_camera=on_camera or (agent.set_camera_enabled if agent else None),
            on_push_to_talk=_push_to_talk_switch(settings, agent),
            link_number=self._link_number,
        )
        self.inventory = Inventory(
            mqtt.discovery_prefix, ignore_nodes={self.own_device.node_id}
        )
        self.declared_errors = self.inventory.load_declared(mqtt.devices, key="mqtt.devices")
        self._build_control(state, taps_possible or (agent.taps_possible if agent else None))
        self.tools = HomeTools(
            self.inventory,
            self.control,
            registry,
            max_described=mqtt.max_described_devices,
            on_refresh=metrics.home_tool_refreshes.inc,
        )
        self._initial_done = False
        self._last_reread = -math.inf
        self.rereads = 0
        self.reread_coalesced = 0
        self.inventory.add_listener(self._on_inventory)
        self._ready = asyncio.Event()
        self._running = False
        self._reread = asyncio.Event()
        self._seen: set[str] | None = None  # discovery topics seen during a re-read
        self._disc_subs: list[Subscription] = []
        self._subs: list[Subscription] = []
        self._counted = self._counters()
        # At each scrape too, not only every second: a command must not show in
        # edge_tool_calls a second before it shows in edge_home_commands.
        metrics.before_render(self.sync_metrics)

    def _build_control(
        self, state: StateStore | None, taps_possible: Callable[[], bool] | None
    ) -> None:
        """The executor, the sensitivity policy, the confirmation gate and admission."""
        tools = self.settings.tools
        mqtt = self.settings.mqtt
        self.executor = CommandExecutor(
            self.conn if self.conn is not None else _NoBroker(),
            self.inventory,
            deadline=tools.confirm_deadline,
        )
        self.policy = SensitivityPolicy(
            tools.sensitive, lambda: [entity_of(d) for d in self.inventory.devices()]
        )
        self.gate = ConfirmationGate(
            ConfirmationBook(ttl=tools.confirm_ttl),
            self.policy,
            self.consent,
            confirm_with={
                cat: frozenset(getattr(tools.confirm_with, cat)) for cat in CATEGORIES
            },
            taps_possible=taps_possible or (lambda: False),
            answer_wait=tools.confirm_wait,
        )
        self.admission = Admission(
            discovery_prefix=mqtt.discovery_prefix,
            configured_prefixes=mqtt.command_prefixes,
            hold_seconds=tools.new_device_hold,
            state=state,
            clock=time.monotonic,
            topics=self._admission_topics,
        )
        self.control = HomeControl(self.inventory, self.executor, self.gate, self.admission)
        self._memory = state
        self._memory_saved_at = -MEMORY_SAVE_SECONDS
        record = self._recall(state)
        ids, topics = _memory_of(record)
        for dev_id in self.admission.accepted_ids():  # accepted before the memory was kept
            ids.setdefault(dev_id, "other")
        self.policy.remember(ids, topics)
        if state is not None:
            store = state
            self.metrics.add_status_source("state", lambda: {
                **store.status(),
                "admission_damaged": int(bool(self.admission.damaged)),
                "sensitivity_distrusted": int(bool(self.policy.distrusted)),
            })

    def _recall(self, state: StateStore | None) -> dict[str, Any] | None:
        """The memory of sensitive devices. A damaged one (kept aside by the store, never
        overwritten) makes every command ask while its copy is kept: what it held is
        unknown, and the next save must not turn that into "nothing was sensitive"."""
        if state is None:
            return None
        record, damaged = state.load_status(MEMORY)
        kept = state.kept_aside(MEMORY)
        if damaged is None and kept is None:
            return record
        why = damaged.describe() if damaged is not None else (
            f"state record {MEMORY} was found damaged earlier (kept as {kept})")
        self.policy.distrust(f"the memory of sensitive devices is damaged; {why}")
        log.error("%s: every device command asks for confirmation until that copy is "
                  "deleted (check your devices first)", why)
        return record

    def _keep_memory(self, *, now: bool = False) -> None:
        """Save the devices and topics found sensitive once something new was learned: at
        once the first time, then at most every MEMORY_SAVE_SECONDS (the metrics loop
        comes back for the rest), so a flood of announcements is not a flood of writes."""
        if not self.policy.learned or self._memory is None:
            return
        at = time.monotonic()
        if not now and at - self._memory_saved_at < MEMORY_SAVE_SECONDS:
            return
        self._memory_saved_at = at
        ids, topics = self.policy.memory()
        self._memory.save(MEMORY, {"ids": ids, "topics": topics})

    def _counters(self) -> list[_Counted]:
        """The stats that move into /metrics."""
        metrics = self.metrics
        counted = [
            _Counted(metrics.home_messages, self.inventory.stats),
            _Counted(metrics.home_commands, self.executor.stats),
            _Counted(metrics.home_confirmations, self.gate.book.stats),
        ]
        if self.consent is not None:
            counted.append(_Counted(metrics.home_confirmations, self.consent.stats))
        if self.conn is not None:
            counted.append(_Counted(metrics.mqtt_events, self.conn.stats))
        return counted

    @property
    def announcements(self) -> int:
        """How often the daemon's own entities were announced."""
        return self.own_device.announcements

    def _held_line(self) -> str:
        """The new sensitive devices on hold, for Home Assistant: one line."""
        held = self.admission.held()
        return ", ".join(f"{h.name} ({h.category})" for h in held) or "none"

    # ----------------------------------------------------------- sensitive devices

    def _admission_topics(self) -> tuple[list[str], list[str]]:
        """The devices' state/availability topics, and the config file's command topics."""
        device_topics: list[str] = []
        declared: list[str] = []
        for dev in self.inventory.devices():
            device_topics.extend(dev.topics)
            if dev.source == "config":
                declared.extend(dev.command_topics)
        return device_topics, declared

    def _sensitive_record(self, dev: Device) -> tuple[str, str, str, str] | None:
        """(name, category, fingerprint, the older fingerprint) of a discovered device
        that needs confirmation."""
        if dev.source != "discovery":
            return None
        sens = self.policy.flags(entity_of(dev), [a.name for a in dev.capabilities])
        if sens is None:
            return None
        fp, older = device_fingerprints(dev.component, dev.command_topics, dev.device_class,
                                        dev.config.spec)
        return dev.name, sens.category, fp, older

    def _on_inventory(self, event: InventoryEvent) -> None:
        if not isinstance(event, DeviceAdded | DeviceUpdated | DeviceRemoved):
            return
        self.policy.changed()
        self.admission.changed()
        if isinstance(event, DeviceRemoved):
            self.admission.forget(event.device.id)
            return
        self.policy.learn(entity_of(event.device))  # before any tamer re-announcement
        if self._initial_done:
            record = self._sensitive_record(event.device)
            if record is not None and self.admission.consider(event.device.id, *record):
                self.own_device.wake()  # announce it to Home Assistant now
            self._keep_memory()

    def _settle_sensitive(self) -> None:
        """The first full read of the broker's discovery configs is in."""
        if self._initial_done:
            return
        found = {}
        for dev in self.inventory.devices():
            record = self._sensitive_record(dev)
            if record is not None:
                found[dev.id] = record
        self.admission.settle_initial(found)
        self._initial_done = True
        self._keep_memory()

    # ----------------------------------------------------------------- run

    async def wait_ready(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once connected, retained discovery read and the tools registered."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    async def run(self) -> None:
        """Serve until cancelled; then say "offline" and take the device tools away."""
        conn = self.conn
        if conn is None:
            log.info("no MQTT broker configured (mqtt.host): device tools are off")
            self._ready.set()
            return
        if self._running:
            raise RuntimeError("HomeService.run() is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(conn.run(), name="mqtt")
                self._attach(conn)
                tg.create_task(
                    self.tools.run(debounce=self.settings.mqtt.refresh_debounce),
                    name="home-tools",
                )
                tg.create_task(self._become_ready(conn), name="home-ready")
                tg.create_task(self._reread_loop(conn), name="home-reread")
                if self.settings.mqtt.announce and self.own_device.entities:
                    tg.create_task(self.own_device.run(conn), name="home-announce")
                tg.create_task(self._metrics_loop(), name="home-metrics")
        finally:
            self._detach()
            self.tools.unregister()
            self.sync_metrics()
            self._keep_memory(now=True)
            self.own_device.release_talk("the home service stops")
            self._ready.clear()
            self._running = False

    def _attach(self, conn: MqttConnection) -> None:
        self.inventory.attach(conn)
        # Our own handlers on the same filters: settle detection and re-reading.
        self._disc_subs = [
            conn.subscribe(flt, self._on_discovery_seen) for flt in self.inventory.discovery_filters
        ]
        prefix = self.settings.mqtt.discovery_prefix
        self._subs = [conn.subscribe(f"{prefix}/status", self._on_ha_status)]
        if self.settings.mqtt.announce:
            self._subs += self.own_device.subscribe(conn)

    def _detach(self) -> None:
        self.inventory.detach()
        for sub in self._disc_subs + self._subs:
            sub.cancel()
        self._disc_subs, self._subs = [], []

    def _on_discovery_seen(self, msg: MqttMessage) -> None:
        """The inventory handles it; during a re-read, note which configs are still there."""
        if self._seen is not None:
            self._seen.add(msg.topic)

    def _on_ha_status(self, msg: MqttMessage) -> None:
        """Home Assistant (re)started: announce ourselves again and re-read discovery.

        A retained "online" arrives with every (re)connect; those are covered by the
        announcement each new connection makes anyway.
        """
        if msg.text().strip() != "online" or msg.retain:
            return
        if self._reread.is_set():
            self.reread_coalesced += 1
            self.metrics.home_ha_commands.labels("ha_status", "coalesced").inc()
            return
        log.info("Home Assistant is online: re-announcing and re-reading discovery")
        self.own_device.reannounce()
        self._reread.set()

    async def _reread_loop(self, conn: MqttConnection) -> None:
        """Re-read on Home Assistant's birth, at most every _REREAD_INTERVAL s.

        Any client may publish `<prefix>/status`: a flood of "online" coalesces into
        one re-read per interval instead of one each.
        """
        while True:
            await self._reread.wait()
            wait = self._last_reread + _REREAD_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._reread.clear()
            self._last_reread = time.monotonic()
            self.rereads += 1
            await self.reread(conn)

    async def reread(self, conn: MqttConnection) -> bool:
        """Re-read every retained discovery config, then sweep what did not come back.

        Mark and sweep: the broker re-sends the retained configs on a new SUBSCRIBE;
        once they stopped arriving, a discovered device whose config topic was not among
        them was removed while we were not looking. If the connection changed
        meanwhile the read may be incomplete: nothing is swept (False).
        """
        if not self._disc_subs:
            return False
        await conn.wait_connected()
        connects = conn.stats.connects
        seen: set[str] = set()
        self._seen = seen
        try:
            conn.resubscribe(*self._disc_subs)
            if not await conn.wait_subscribed(*self._disc_subs, timeout=10.0):
                return False
            await self.settle(conn, 3.0)
        finally:
            self._seen = None
        if conn.stats.connects != connects or not conn.connected:
            return False
        for device in self.inventory.sweep(seen):
            log.info("%s (%s): its discovery config is gone; forgotten", device.id, device.name)
        return True

    async def settle(self, conn: MqttConnection, limit: float) -> None:
        """Wait until no message arrived for a moment (retained ones come in a burst)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        seen = conn.stats.messages_received
        quiet_since = loop.time()
        while loop.time() < end:
            await asyncio.sleep(0.05)
            if conn.stats.messages_received != seen:
                seen = conn.stats.messages_received
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= _SETTLE_SECONDS:
                return

    async def _become_ready(self, conn: MqttConnection) -> None:
        await conn.wait_subscribed(*self._disc_subs)
        await self.settle(conn, 3.0)
        self._settle_sensitive()
        self.tools.refresh()  # now, not after the debounce: the model may be about to ask
        self._ready.set()

    async def _metrics_loop(self) -> None:
        while True:
            self.sync_metrics()
            self._keep_memory()  # what a burst of announcements taught, saved late
            self._watch_link()
            await asyncio.sleep(1.0)

    def _link_number(self) -> int:
        return self.conn.stats.connects if self.conn is not None else 0

    def _watch_link(self) -> None:
        self.own_device.watch_talk(self.conn is not None and self.conn.connected)

    def sync_metrics(self) -> None:
        """Move the counters into /metrics now (the service does it every second)."""
        for counted in self._counted:
            counted.sync()
        self.metrics.mqtt_connected.set(1 if self.conn is not None and self.conn.connected else 0)
        by_source = {"discovery": 0, "config": 0}
        for dev in self.inventory.devices():
            by_source[dev.source] = by_source.get(dev.source, 0) + 1
        for source, count in by_source.items():
            self.metrics.home_devices.labels(source).set(count)

    # ----------------------------------------------------------- describe

    async def snapshot(self, timeout: float = 3.0) -> str:  # noqa: ASYNC109
        """Read the broker's retained discovery configs briefly, then `describe()`.

        Uses its own clean-session client id without a last will, so a running daemon
        keeps its connection and nothing is left behind on the broker.
        """
        notes: list[str] = []
        mqtt = self.settings.mqtt
        if self._running:
            notes.append("the service is running: showing what it knows now")
        elif not mqtt.host:
            notes.append("no MQTT broker configured (mqtt.host): declared devices only")
        elif not await self._read_retained(mqtt, timeout):
            notes.append(
                f"MQTT broker {mqtt.host}:{mqtt.port} not reachable within {timeout:g} s: "
                "declared devices only"
            )
        self.tools.refresh()
        return self.describe(notes)

    async def _read_retained(self, mqtt: MqttSettings, timeout: float) -> bool:  # noqa: ASYNC109
        reader_settings = mqtt.model_copy(
            update={"client_id": f"{mqtt.client_id}-devices-{os.getpid()}"}
        )
        conn = MqttConnection(
            reader_settings,
            availability_topic="",
            clean_session=True,
            connect_timeout=timeout,
            backoff_initial=0.2,
            backoff_max=1.0,
        )
        async with conn:
            self.inventory.attach(conn)
            try:
                subs = [
                    conn.subscribe(f, self._on_discovery_seen)
                    for f in self.inventory.discovery_filters
                ]
                if not await conn.wait_subscribed(*subs, timeout=timeout):
                    return False
                await self.settle(conn, timeout)
            finally:
                self.inventory.detach()
        return True

    def describe(self, notes: list[str] | None = None) -> str:
        """The inventory and the exact tool declarations the model will see."""
        lines: list[str] = []
        for note in notes or []:
            lines.append(f"note: {note}")
        devices = self.inventory.devices()
        lines.append(f"Devices ({len(devices)}):")
        if not devices:
            lines.append("  none")
        for dev in devices:
            snap = self.inventory.snapshot(dev.id)
            online = {True: "online", False: "offline", None: "availability unknown"}[
                snap.available if snap else None
            ]
            flag = ", needs confirmation" if self.tools.is_sensitive(dev) else ""
            area = dev.area or "no area"
            lines.append(
                f"  {dev.id}: {dev.name} [{dev.component}, {area}, {dev.source}, {online}{flag}]"
            )
            if snap and snap.state:
                state = json.dumps(plain_state(snap.state), ensure_ascii=False)
                lines.append(f"      state: {state}")
            if dev.capabilities:
                acts = ", ".join(action_text(a) for a in dev.capabilities)
                lines.append(f"      actions: {acts}")
        problems = [*self.declared_errors, *self.inventory.problems()]
        if problems:
            lines.append(f"Ignored configs ({len(problems)}):")
            lines += [f"  {p}" for p in problems]
        lines.append("Tools the model will see (declarations as sent to the Live API):")
        lines.append(json.dumps(self.declarations(), indent=2, ensure_ascii=False))
        return "\n".join(lines)

    def declarations(self) -> list[dict[str, Any]]:
        """The registry's declarations with the device tools as the inventory makes them now.

        In the Live API's own terms: `parameters_json_schema` is passed on verbatim.
        """
        by_name = {
            d["name"]: d for d in self.registry.declarations() if d["name"] not in TOOL_NAMES
        }
        for tool in self.tools.tools():
            by_name[tool.name] = tool.declaration()
        return [
            {
                "name": d["name"],
                "description": d["description"],
                "parameters_json_schema": d["parameters"],
                "behavior": "BLOCKING" if d.get("blocking") else "NON_BLOCKING",
            }
            for _name, d in sorted(by_name.items())
        ]


MEMORY = "sensitive_memory"  # the state record of devices and topics ever sensitive
MEMORY_SAVE_SECONDS = 5.0


def _memory_of(record: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(ids, topics) -> category from the state record; empty parts where it is odd."""
    out: tuple[dict[str, str], dict[str, str]] = ({}, {})
    if record is None:
        return out
    for part, key in zip(out, ("ids", "topics"), strict=True):
        items = record.get(key)
        if isinstance(items, Mapping):
            part.update({str(k): str(v) for k, v in items.items()})
    return out

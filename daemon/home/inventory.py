"""The devices the daemon knows, their last reported state and availability.

Devices come from two places that share one schema: Home Assistant discovery on
the broker, and `[[mqtt.devices]]` tables in the config file (daemon.home.declared).
The inventory follows their state and availability topics, tells listeners when
devices appear, change or vanish (so the daemon can refresh the model's tools), and
finds a device from the words a person used (daemon.home.search). What a state
message means is up to the device's component (daemon.home.components).

Everything it keeps is bounded: the rejected configs (the newest `max_errors`), the
last payload of shared state topics (for devices announced later; `replay_budget`
bytes), and the search index.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.home.actions import StateValue
from daemon.home.declared import parse_declared_devices
from daemon.home.device import Device, DeviceSnapshot
from daemon.home.discovery import (
    Discovered,
    DiscoveryError,
    DiscoveryResult,
    EntityConfig,
    Removal,
    parse_discovery,
    parse_topic,
)
from daemon.home.search import LookupFailure, Match, SearchIndex
from daemon.home.templates import render
from daemon.home.text import ID_RE
from daemon.ops.lograte import LineBudget, seldom

log = logging.getLogger(__name__)

# How an edge-agent daemon announces itself (daemon.home.own_device): such entities
# (the mute switch of the glasses in the next room) are never devices for the model.
EDGE_AGENT_ORIGIN = "edge-agent"
EDGE_AGENT_MODEL = "edge-agent daemon"
Handler = Callable[["IncomingMessage"], None]


class IncomingMessage(Protocol):
    """What the inventory needs from a received MQTT message."""

    @property
    def topic(self) -> str:
        """The topic the message arrived on."""

    @property
    def payload(self) -> bytes:
        """The raw payload (decoded by the inventory, after a length cap)."""

    @property
    def retain(self) -> bool:
        """Whether the broker delivered it from its retained store."""


class Cancelable(Protocol):
    """A subscription the inventory can end."""

    def cancel(self) -> None:
        """End the subscription; its handler is not called again."""


class MessageSource(Protocol):
    """Something that delivers messages for topic filters (an `MqttConnection`)."""

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> Cancelable:
        """Call `handler` for every message matching `topic_filter` until cancelled."""


# --------------------------------------------------------------------- events


@dataclass(frozen=True)
class DeviceAdded:
    """A device appeared (discovered or declared)."""

    device: Device


@dataclass(frozen=True)
class DeviceUpdated:
    """A device's config changed; `previous` is the one it replaced."""

    device: Device
    previous: Device


@dataclass(frozen=True)
class DeviceRemoved:
    """A device went away (its config was removed, or not seen in a re-read)."""

    device: Device


@dataclass(frozen=True)
class StateReported:
    """A state message arrived (even if nothing changed: it is fresh evidence).

    `retained`: the broker's stored copy (sent on every (re)subscribe), which says what
    the state was at some time, not that the device just acted.
    """

    device: Device
    values: Mapping[str, StateValue]
    state: Mapping[str, StateValue]
    retained: bool = False


@dataclass(frozen=True)
class AvailabilityChanged:
    """A device became reachable, unreachable, or unknown (None)."""

    device: Device
    available: bool | None


InventoryEvent = DeviceAdded | DeviceUpdated | DeviceRemoved | StateReported | AvailabilityChanged
Listener = Callable[[InventoryEvent], None]


@dataclass
class InventoryStats:
    """Counters until they move to daemon.ops.metrics."""

    discovery_configs: int = 0
    discovery_unchanged: int = 0
    discovery_removals: int = 0
    discovery_errors: int = 0
    discovery_edge_agents: int = 0  # another edge-agent daemon's own entities: ignored
    discovery_swept: int = 0  # gone from the broker when discovery was re-read
    discovery_bad_topic: int = 0  # on a discovery filter, but no valid config topic
    discovery_bad_unique_id: int = 0  # unusable unique_id: the topic named the device
    discovery_errors_evicted: int = 0  # older rejected configs forgotten (max_errors)
    state_messages: int = 0
    state_ignored: int = 0
    availability_messages: int = 0
    listener_errors: int = 0
    state_errors: int = 0  # a device's parser failed on a message (skipped for it)
    replay_evicted: int = 0  # last payloads of shared topics forgotten (replay_budget)
    replay_resubscribed: int = 0  # asked the broker again for a forgotten one

@dataclass
class _Entry:
    device: Device
    state: dict[str, StateValue] = field(default_factory=dict)
    avail: dict[str, bool] = field(default_factory=dict)
    avail_latest: bool | None = None
    updated_at: float | None = None


def _from_edge_agent(entity: EntityConfig) -> bool:
    """An entity announced by an edge-agent daemon (by its origin or its device model)."""
    if entity.origin == EDGE_AGENT_ORIGIN:
        return True
    return entity.device is not None and entity.device.model == EDGE_AGENT_MODEL


def _availability_of(entry: _Entry) -> bool | None:
    av = entry.device.availability
    if not av.topics:
        return True
    if av.mode == "latest":
        return entry.avail_latest
    known = [entry.avail.get(t.topic) for t in av.topics]
    if av.mode == "all":
        if any(v is False for v in known):
            return False
        return True if all(v is True for v in known) else None
    if any(v is True for v in known):
        return True
    return False if all(v is False for v in known) else None


# ------------------------------------------------------------------ inventory


class Inventory:
    """All known devices, kept current from discovery, state and availability messages."""

    def __init__(
        self,
        discovery_prefix: str = "homeassistant",
        *,
        clock: Callable[[], float] = time.time,
        ignore_nodes: Iterable[str] = (),
        max_devices: int = 5000,
        max_errors: int = 100,
        replay_budget: int = 1 << 20,
        replay_item: int = 4096,
    ) -> None:
        self.prefix = discovery_prefix
        self.max_devices = max_devices  # a runaway publisher must not eat the memory
        self.max_errors = max_errors
        # The last payload of each followed topic, for devices announced later on a
        # topic we already follow (the broker sends a retained message only once): up to
        # `replay_item` characters each and `replay_budget` in all, the oldest forgotten
        # first; a forgotten one is asked of the broker again when it is needed.
        self.replay_budget = replay_budget
        self.replay_item = replay_item
        # Our own entities (the daemon announces itself): never a device for the model.
        self.ignore_nodes = frozenset(ignore_nodes)
        self.stats = InventoryStats()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._topic_devices: dict[str, set[str]] = {}  # state/availability topic -> ids
        self._by_disc_topic: dict[str, str] = {}
        self._errors: OrderedDict[str, DiscoveryError] = OrderedDict()
        self._lines = LineBudget()  # discovery lines anyone on the broker can provoke
        self._listeners: list[Listener] = []
        self._source: MessageSource | None = None
        self._subs: dict[str, Cancelable] = {}
        self._disc_subs: list[Cancelable] = []
        self._last: OrderedDict[str, str] = OrderedDict()
        self._last_chars = 0
        self._unkept: set[str] = set()  # followed topics whose last payload was not kept
        self._index = SearchIndex()
        self._sorted: list[Device] | None = None

    # ---- queries

    def devices(self) -> list[Device]:
        """Every known device, by id."""
        if self._sorted is None:
            self._sorted = sorted((e.device for e in self._entries.values()), key=lambda d: d.id)
        return list(self._sorted)

    def get(self, device_id: str) -> Device | None:
        """The device with exactly this id (never a fuzzy match)."""
        entry = self._entries.get(device_id)
        return entry.device if entry else None

    def state(self, device_id: str) -> Mapping[str, StateValue]:
        """The device's last reported state (a copy; empty when unknown)."""
        entry = self._entries.get(device_id)
        return dict(entry.state) if entry else {}

    def available(self, device_id: str) -> bool | None:
        """True/False from the availability topics; None if unknown or no such device."""
        entry = self._entries.get(device_id)
        return _availability_of(entry) if entry else None

    def snapshot(self, device_id: str) -> DeviceSnapshot | None:
        """The device with its state and availability now; None if unknown."""
        entry = self._entries.get(device_id)
        if entry is None:
            return None
        return DeviceSnapshot(
            entry.device, dict(entry.state), _availability_of(entry), entry.updated_at
        )

    def problems(self) -> list[DiscoveryError]:
        """Configs that were rejected, newest reason per discovery topic (the newest
        `max_errors` topics)."""
        return list(self._errors.values())

    def in_area(self, device: Device, area: str) -> bool:
        """Whether the device is in `area` (its area, or its name, fits the words)."""
        members = self._index.in_area(area)
        return members is None or device.id in members

    def find(self, query: str, area: str | None = None, *, limit: int = 5) -> list[Match]:
        """Devices ranked by how well their id/name/area/kind fit the words given."""
        members = self._index.in_area(area) if area else None
        matches = []
        for dev_id, score in self._index.scores(query).items():
            entry = self._entries.get(dev_id)
            if entry is None or score < 0.5 or (members is not None and dev_id not in members):
                continue
            matches.append(Match(entry.device, score))
        matches.sort(key=lambda m: (-m.score, m.device.id))
        return matches[:limit]

    def resolve(self, query: str, area: str | None = None) -> Device | LookupFailure:
        """One device for a spoken reference, or a failure naming the options."""
        exact = self._entries.get(query)
        if exact is not None:
            return exact.device
        matches = self.find(query, area)
        where = f" in {area!r}" if area else ""
        if not matches:
            known = ", ".join(f"{d.name} ({d.id})" for d in self.devices()[:20]) or "none"
            return LookupFailure(f"no device matches {query!r}{where}; known devices: {known}")
        top = matches[0]
        if len(matches) == 1 or top.score - matches[1].score >= 0.15 or top.score >= 0.999:
            return top.device
        close = tuple(m.device for m in matches if top.score - m.score < 0.15)
        names = "; ".join(f"{d.name} in {d.area or 'no area'} ({d.id})" for d in close)
        return LookupFailure(f"{query!r}{where} could mean several devices: {names}", close)

    # ---- listeners

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every event; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _emit(self, event: InventoryEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.stats.listener_errors += 1
                log.exception("inventory listener failed on %s", type(event).__name__)

    # ---- changes

    def add(self, device: Device) -> None:
        """Add or replace a device (declared ones, or tests)."""
        old = self._entries.get(device.id)
        if old is not None and old.device == device:
            return
        entry = _Entry(device)
        self._put(entry)
        if device.discovery_topic:
            self._by_disc_topic[device.discovery_topic] = device.id
        self._sync_subscriptions()
        self._emit(DeviceAdded(device) if old is None else DeviceUpdated(device, old.device))
        self._replay(entry)

    def _put(self, entry: _Entry) -> None:
        """Store an entry and index its topics (one message reaches only its devices)."""
        old = self._entries.get(entry.device.id)
        if old is not None:
            self._unindex(old.device)
        self._entries[entry.device.id] = entry
        for topic in entry.device.topics:
            self._topic_devices.setdefault(topic, set()).add(entry.device.id)
        self._index.add(entry.device)
        self._sorted = None

    def _unindex(self, device: Device) -> None:
        for topic in device.topics:
            ids = self._topic_devices.get(topic)
            if ids is not None:
                ids.discard(device.id)
                if not ids:
                    del self._topic_devices[topic]

    def remove(self, device_id: str) -> Device | None:
        """Forget a device (listeners hear of it); None when there was none."""
        entry = self._entries.pop(device_id, None)
        if entry is None:
            return None
        self._unindex(entry.device)
        self._index.remove(device_id)
        self._sorted = None
        if entry.device.discovery_topic:
            self._by_disc_topic.pop(entry.device.discovery_topic, None)
        self._sync_subscriptions()
        self._emit(DeviceRemoved(entry.device))
        return entry.device

    def sweep(self, seen: Collection[str]) -> list[Device]:
        """After a full re-read: forget discovered devices whose config topic was not seen.

        Declared devices stay; so do rejected configs that were seen again.
        """
        gone = [
            e.device
            for e in self._entries.values()
            if e.device.source == "discovery" and e.device.discovery_topic not in seen
        ]
        for device in gone:
            self.remove(device.id)
        self.stats.discovery_swept += len(gone)
        for topic in [t for t in self._errors if t not in seen]:
            del self._errors[topic]
        return gone

    def load_declared(
        self, entries: Sequence[Any], *, key: str = "mqtt.devices"
    ) -> list[DiscoveryError]:
        """Add the config file's devices; returns the errors of those that were skipped."""
        devices, errors = parse_declared_devices(entries, key=key)
        for dev in devices:
            self.add(dev)
        return errors

    def handle_discovery(self, topic: str, payload: bytes | str) -> DiscoveryResult | None:
        """Apply one discovery message; returns what it was.

        None: not a config topic, or an edge-agent daemon's own entity (ours or another's).
        """
        if self.ignore_nodes:
            where = parse_topic(topic, self.prefix)
            if where is not None and where.node_id in self.ignore_nodes:
                return None
        result = parse_discovery(topic, payload, self.prefix)
        if result is None:
            self.stats.discovery_bad_topic += 1
            return None
        if isinstance(result, DiscoveryError):
            self._reject(result)
            return result
        if isinstance(result, Discovered) and _from_edge_agent(result.entity):
            self.stats.discovery_edge_agents += 1
            self._errors.pop(topic, None)
            dev_id = self._by_disc_topic.get(topic)
            if dev_id is not None:
                self.remove(dev_id)
            return None
        if isinstance(result, Removal):
            self.stats.discovery_removals += 1
            self._errors.pop(topic, None)
            dev_id = self._by_disc_topic.get(topic)
            if dev_id is not None:
                self.remove(dev_id)
            return result
        return self._apply_discovered(result)

    def _apply_discovered(self, found: Discovered) -> DiscoveryResult:
        topic = found.topic.topic
        ent = found.entity
        if ent.bad_unique_id:
            self.stats.discovery_bad_unique_id += 1
        # A unique_id that is no valid id was dropped when parsing: the topic names it.
        dev_id = ent.unique_id or ".".join(
            p for p in (ent.component, found.topic.node_id, found.topic.object_id) if p
        )
        if not ID_RE.match(dev_id):
            err = DiscoveryError(topic, "no usable device id (unique_id or topic too long)")
            self._reject(err)
            return err
        existing = self._entries.get(dev_id)
        if existing is not None and existing.device.discovery_topic != topic:
            owner = existing.device.discovery_topic or "the config file"
            err = DiscoveryError(topic, f"device id {dev_id!r} is already used by {owner}")
            self._reject(err)
            return err
        is_new = existing is None and topic not in self._by_disc_topic
        if is_new and len(self._entries) >= self.max_devices:
            err = DiscoveryError(topic, f"more than {self.max_devices} devices; ignored")
            self._reject(err)
            return err
        self._errors.pop(topic, None)
        previous_id = self._by_disc_topic.get(topic)
        if previous_id is not None and previous_id != dev_id:
            self.remove(previous_id)
        device = Device(dev_id, ent, "discovery", topic)
        if existing is not None and existing.device == device:
            self.stats.discovery_unchanged += 1
            return found
        self.stats.discovery_configs += 1
        if existing is not None:
            # Keep what we knew only if the state topics did not change.
            keep = existing.device.state_topics == device.state_topics
            entry = _Entry(device, existing.state if keep else {})
            if existing.device.availability == device.availability:
                entry.avail, entry.avail_latest = existing.avail, existing.avail_latest
            self._put(entry)
            self._by_disc_topic[topic] = dev_id
            self._sync_subscriptions()
            self._emit(DeviceUpdated(device, existing.device))
            self._replay(entry)
        else:
            self.add(device)
        for note in ent.notes:
            if self._lines.take() is not None:
                log.info("%s: %s", topic, note)
        return found

    def _reject(self, err: DiscoveryError) -> None:
        """Remember why (the newest `max_errors` topics; older ones are counted out)."""
        self.stats.discovery_errors += 1
        if self._errors.get(err.where) != err and (quiet := self._lines.take()) is not None:
            more = f" ({quiet} more not logged; discovery_errors counts them)" if quiet else ""
            log.warning("ignored discovery config %s%s", err, more)
        self._errors.pop(err.where, None)
        self._errors[err.where] = err
        while len(self._errors) > self.max_errors:
            self._errors.popitem(last=False)
            self.stats.discovery_errors_evicted += 1

    def handle_device_message(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """A message on some device's state or availability topic (`retain`: a stored copy)."""
        text = payload.decode("utf-8", errors="replace")
        if topic in self._subs or self._source is None:
            # Several devices may share a topic (a bridge's availability, one JSON state
            # for a multi-entity device); a retained message arrives only once, so keep it
            # for devices that are announced later.
            self._remember(topic, text)
        for dev_id in sorted(self._topic_devices.get(topic, ())):
            entry = self._entries.get(dev_id)
            if entry is not None:  # a listener may have removed it meanwhile
                self._apply_guarded(entry, topic, text, replay=False, retained=retain)

    def _apply_guarded(
        self, entry: _Entry, topic: str, text: str, *, replay: bool, retained: bool = False
    ) -> None:
        """One device's reading of a message: a payload its parser trips on costs that
        device that message, not the other devices on the topic."""
        try:
            self._apply_message(entry, topic, text, replay=replay, retained=retained)
        except Exception as exc:  # a bug or a hostile payload: counted, logged
            self.stats.state_errors += 1
            n = self.stats.state_errors
            if seldom(n):  # a flood must not fill the log
                log.warning("state message on %s for %s could not be read (%s; %d so far)",
                            topic, entry.device.id, type(exc).__name__, n)

    def _apply_message(
        self, entry: _Entry, topic: str, text: str, *, replay: bool, retained: bool = False
    ) -> None:
        dev = entry.device
        if topic in dev.availability_topics:
            self.stats.availability_messages += 1
            self._apply_availability(entry, topic, text)
        if topic in dev.state_topics:
            values = dev.decode(topic, text)
            if not values:
                self.stats.state_ignored += 1
                return
            self.stats.state_messages += 1
            entry.state.update(values)
            if replay:  # old news: not evidence that the device just acted
                return
            if not retained:
                entry.updated_at = self._clock()
            self._emit(StateReported(dev, values, dict(entry.state), retained))

    def _remember(self, topic: str, text: str) -> None:
        self._forget(topic)
        if len(text) > self.replay_item:
            self._unkept.add(topic)
            return
        self._unkept.discard(topic)
        self._last[topic] = text
        self._last_chars += len(text)
        while self._last_chars > self.replay_budget:
            old_topic, old_text = self._last.popitem(last=False)
            self._last_chars -= len(old_text)
            self._unkept.add(old_topic)
            self.stats.replay_evicted += 1

    def _forget(self, topic: str) -> None:
        text = self._last.pop(topic, None)
        if text is not None:
            self._last_chars -= len(text)
        self._unkept.discard(topic)

    def _replay(self, entry: _Entry) -> None:
        again: list[Cancelable] = []
        for topic in sorted(entry.device.topics):
            text = self._last.get(topic)
            if text is not None:
                self._apply_guarded(entry, topic, text, replay=True)
            elif topic in self._unkept and topic in self._subs:
                again.append(self._subs[topic])
        # An MqttConnection can; a plain MessageSource cannot (then the next message does).
        resubscribe = getattr(self._source, "resubscribe", None)
        if again and resubscribe is not None:
            # Not kept here: the broker sends its retained copy again on a new SUBSCRIBE.
            self.stats.replay_resubscribed += len(again)
            resubscribe(*again)

    def _apply_availability(self, entry: _Entry, topic: str, text: str) -> None:
        before = _availability_of(entry)
        for at in entry.device.availability.topics:
            if at.topic != topic:
                continue
            value = render(at.template, text)
            if value == at.payload_available:
                entry.avail[topic] = True
                entry.avail_latest = True
            elif value == at.payload_not_available:
                entry.avail[topic] = False
                entry.avail_latest = False
        after = _availability_of(entry)
        if after != before:
            self._emit(AvailabilityChanged(entry.device, after))

    # ---- wiring to MQTT

    @property
    def discovery_filters(self) -> tuple[str, str]:
        """The two filters discovery configs arrive on (with and without a node id)."""
        return (f"{self.prefix}/+/+/config", f"{self.prefix}/+/+/+/config")

    def topics(self) -> set[str]:
        """Every state and availability topic of the known devices."""
        return set(self._topic_devices)

    def attach(self, source: MessageSource) -> None:
        """Subscribe to discovery and, as devices come and go, to their topics."""
        if self._source is not None:
            raise RuntimeError("inventory is already attached")
        self._source = source
        for flt in self.discovery_filters:
            self._disc_subs.append(source.subscribe(flt, self._on_discovery_message))
        self._sync_subscriptions()

    def _on_discovery_message(self, msg: IncomingMessage) -> None:
        self.handle_discovery(msg.topic, msg.payload)

    def detach(self) -> None:
        """Stop following the broker (the devices and their state stay)."""
        for sub in [*self._disc_subs, *self._subs.values()]:
            sub.cancel()
        self._disc_subs.clear()
        self._subs.clear()
        self._source = None

    def _sync_subscriptions(self) -> None:
        if self._source is None:
            return
        wanted = self.topics()
        for topic in set(self._subs) - wanted:
            self._subs.pop(topic).cancel()
            self._forget(topic)
        for topic in sorted(wanted - set(self._subs)):
            self._subs[topic] = self._source.subscribe(
                topic, lambda m: self.handle_device_message(m.topic, m.payload, retain=m.retain)
            )

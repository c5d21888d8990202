"""The devices the daemon knows, their last reported state and availability.

Devices come from two places that share one schema: Home Assistant discovery on
the broker, and `[[mqtt.devices]]` tables in the config file (same keys as a
discovery config, plus `id`, `component` and `area`). The inventory follows their
state and availability topics, tells listeners when devices appear, change or
vanish (so the daemon can refresh the model's tools), and finds a device from the
words a person used ("the lamp in the bedroom").

Everything it keeps is bounded: the rejected configs (the newest `max_errors`), the
last payload of shared state topics (for devices announced later; `replay_budget`
bytes), and the search index. Finding a device costs a dictionary lookup per word
and work proportional to the devices that share a word, never a fuzzy comparison
per word and device.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from daemon.home.discovery import (
    ALARM_STATES,
    COMPONENTS,
    ID_RE,
    MAX_STATE_CHARS,
    ActionSpec,
    AlarmPanelSpec,
    Availability,
    BinarySensorSpec,
    ClimateSpec,
    CoverSpec,
    Discovered,
    DiscoveryError,
    DiscoveryResult,
    EntityConfig,
    FanSpec,
    LightSpec,
    LockSpec,
    Removal,
    SensorSpec,
    SwitchSpec,
    ValueTemplate,
    clean_text,
    parse_discovery,
    parse_entity,
    parse_topic,
)

log = logging.getLogger(__name__)

StateValue = str | int | float | bool | tuple[int, ...] | None
# How an edge-agent daemon announces itself (daemon.tools.home_service): such entities
# (the mute switch of the glasses in the next room) are never devices for the model.
EDGE_AGENT_ORIGIN = "edge-agent"
EDGE_AGENT_MODEL = "edge-agent daemon"
Handler = Callable[["IncomingMessage"], None]


class IncomingMessage(Protocol):
    """What the inventory needs from a received MQTT message."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def retain(self) -> bool: ...


class Cancelable(Protocol):
    def cancel(self) -> None: ...


class MessageSource(Protocol):
    """Something that delivers messages for topic filters (an `MqttConnection`)."""

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> Cancelable: ...


@dataclass(frozen=True)
class Device:
    """A device the model may act on: a stable id plus its parsed config.

    The id is the config's `unique_id` when it has one, otherwise it is derived from
    the discovery topic (`light.kitchen` or `light.node.kitchen`), or is the `id`
    given in the config file.
    """

    id: str
    config: EntityConfig
    source: Literal["discovery", "config"] = "discovery"
    discovery_topic: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def component(self) -> str:
        return self.config.component

    @property
    def area(self) -> str | None:
        return self.config.area

    @property
    def device_class(self) -> str | None:
        return self.config.device_class

    # Cached: derived from the frozen config, and asked for on every message.
    @functools.cached_property
    def capabilities(self) -> tuple[ActionSpec, ...]:
        return self.config.actions

    @functools.cached_property
    def command_topics(self) -> frozenset[str]:
        return self.config.command_topics

    @functools.cached_property
    def state_topics(self) -> frozenset[str]:
        return self.config.state_topics

    @property
    def availability(self) -> Availability:
        return self.config.availability

    @functools.cached_property
    def availability_topics(self) -> frozenset[str]:
        return frozenset(a.topic for a in self.config.availability.topics)

    @functools.cached_property
    def topics(self) -> frozenset[str]:
        """State and availability topics: what the inventory listens to for it."""
        return self.state_topics | self.availability_topics

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the model: what it is and what it can do."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": self.component,
            "area": self.area,
            "device_class": self.device_class,
            "actions": [
                {
                    "action": a.name,
                    "args": {arg.name: arg.describe() for arg in a.args},
                    **({"note": a.description} if a.description else {}),
                }
                for a in self.capabilities
            ],
        }
        if self.config.caveat:
            out["note"] = self.config.caveat
        return out


# --------------------------------------------------------------------- events


@dataclass(frozen=True)
class DeviceAdded:
    device: Device


@dataclass(frozen=True)
class DeviceUpdated:
    device: Device
    previous: Device


@dataclass(frozen=True)
class DeviceRemoved:
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
    replay_evicted: int = 0  # last payloads of shared topics forgotten (replay_budget)
    replay_resubscribed: int = 0  # asked the broker again for a forgotten one


@dataclass(frozen=True)
class DeviceSnapshot:
    """A device with what we currently know about it."""

    device: Device
    state: Mapping[str, StateValue]
    available: bool | None
    updated_at: float | None

    def describe(self) -> dict[str, Any]:
        out = self.device.describe()
        out["available"] = self.available
        out["state"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.state.items()}
        return out


@dataclass(frozen=True)
class Match:
    device: Device
    score: float


@dataclass(frozen=True)
class LookupFailure:
    """No single device fits the words used; the message says why and lists options."""

    message: str
    candidates: tuple[Device, ...] = ()

    def __str__(self) -> str:
        return self.message


@dataclass
class _Entry:
    device: Device
    state: dict[str, StateValue] = field(default_factory=dict)
    avail: dict[str, bool] = field(default_factory=dict)
    avail_latest: bool | None = None
    updated_at: float | None = None


# ----------------------------------------------------------------- declared devices


def parse_declared_devices(
    entries: Sequence[Any], *, key: str = "mqtt.devices"
) -> tuple[list[Device], list[DiscoveryError]]:
    """Devices from the config file's `[[mqtt.devices]]` tables, and one error per bad one.

    Each table has `component`, `name`, optional `id` and `area`, and otherwise the
    Home Assistant discovery keys of that component (full or abbreviated).
    """
    devices: list[Device] = []
    errors: list[DiscoveryError] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append(DiscoveryError(where, "must be a table"))
            continue
        body = dict(entry)
        component = body.pop("component", None)
        if component not in COMPONENTS:
            errors.append(
                DiscoveryError(
                    f"{where}.component",
                    f"must be one of {', '.join(COMPONENTS)}, got {component!r}",
                )
            )
            continue
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(DiscoveryError(f"{where}.name", "a non-empty name is required"))
            continue
        dev_id = body.pop("id", None)
        if dev_id is None:
            dev_id = _slug(name)
        if not isinstance(dev_id, str) or not ID_RE.match(dev_id):
            errors.append(DiscoveryError(f"{where}.id", "must be 1-128 of A-Z a-z 0-9 _ . : -"))
            continue
        if dev_id in seen:
            errors.append(DiscoveryError(f"{where}.id", f"duplicate device id {dev_id!r}"))
            continue
        area = body.pop("area", None)
        if area is not None and not isinstance(area, str):
            errors.append(DiscoveryError(f"{where}.area", "must be a string"))
            continue
        if area:
            body["suggested_area"] = area
        parsed = parse_entity(component, body, object_id=_slug(dev_id), where=where)
        if isinstance(parsed, DiscoveryError):
            errors.append(parsed)
            continue
        seen.add(dev_id)
        devices.append(Device(dev_id, parsed, "config"))
    return devices, errors


def _from_edge_agent(entity: EntityConfig) -> bool:
    """An entity announced by an edge-agent daemon (by its origin or its device model)."""
    if entity.origin == EDGE_AGENT_ORIGIN:
        return True
    return entity.device is not None and entity.device.model == EDGE_AGENT_MODEL


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_") or "device"


# ------------------------------------------------------------------ state decoding


def decode_state(config: EntityConfig, topic: str, payload: str) -> dict[str, StateValue]:
    """What a message on one of the device's state topics says, in model units.

    Fields: `state` (on/off, open/closed/..., locked/unlocked/...), `brightness`
    and fan `percentage` and cover `position` in percent, `color_temp` in kelvin,
    `rgb`, `preset_mode`, `oscillating`, climate `mode`, `temperature`,
    `current_temperature`, sensor `value`, alarm panel `state` (Home Assistant's
    words: disarmed, armed_home, ..., triggered). Unrecognised payloads give nothing;
    text reported by a device is one clean line (`clean_text`).
    """
    spec = config.spec
    out: dict[str, StateValue] = {}
    if isinstance(spec, LightSpec):
        if spec.schema == "json":
            if topic == spec.state_topic:
                out.update(_decode_json_light(spec, payload))
            return out
        if topic == spec.state_topic:
            value = _render(spec.state_template, payload)
            if value == spec.payload_on:
                out["state"] = "on"
            elif value == spec.payload_off:
                out["state"] = "off"
        if topic == spec.brightness_state_topic:
            num = _number(_render(spec.brightness_template, payload))
            if num is not None:
                out["brightness"] = round(num * 100 / spec.brightness_scale)
        if topic == spec.color_temp_state_topic:
            num = _number(_render(spec.color_temp_template, payload))
            kelvin = _to_kelvin(num, spec.color_temp_kelvin)
            if kelvin is not None:
                out["color_temp"] = kelvin
        if topic == spec.rgb_state_topic:
            rgb = _rgb(_render(spec.rgb_template, payload))
            if rgb is not None:
                out["rgb"] = rgb
        return out
    if isinstance(spec, SwitchSpec):
        if topic == spec.state_topic:
            value = _render(spec.state_template, payload)
            if value == spec.state_on:
                out["state"] = "on"
            elif value == spec.state_off:
                out["state"] = "off"
        return out
    if isinstance(spec, FanSpec):
        return _decode_fan(spec, topic, payload)
    if isinstance(spec, CoverSpec):
        return _decode_cover(spec, topic, payload)
    if isinstance(spec, LockSpec):
        if topic == spec.state_topic:
            value = _render(spec.state_template, payload)
            names = {
                spec.state_locked: "locked",
                spec.state_unlocked: "unlocked",
                spec.state_locking: "locking",
                spec.state_unlocking: "unlocking",
                spec.state_jammed: "jammed",
                spec.state_open: "open",
                spec.state_opening: "opening",
            }
            if value in names:
                out["state"] = names[value]
        return out
    if isinstance(spec, ClimateSpec):
        if topic == spec.mode_state_topic:
            mode = _render(spec.mode_template, payload)
            if mode is not None and mode.strip():
                out["mode"] = clean_text(mode)
        if topic == spec.temperature_state_topic:
            num = _number(_render(spec.temperature_template, payload))
            if num is not None:
                out["temperature"] = num
        if topic == spec.current_temperature_topic:
            num = _number(_render(spec.current_temperature_template, payload))
            if num is not None:
                out["current_temperature"] = num
        return out
    if isinstance(spec, SensorSpec):
        if topic == spec.state_topic:
            value = _render(spec.state_template, payload)
            if value is not None and value not in ("None", "unknown", "unavailable"):
                num = _number(value)
                out["value"] = num if num is not None else clean_text(value, MAX_STATE_CHARS)
                if spec.unit_of_measurement:
                    out["unit"] = spec.unit_of_measurement
        return out
    if isinstance(spec, BinarySensorSpec):
        if topic == spec.state_topic:
            value = _render(spec.state_template, payload)
            if value == spec.payload_on:
                out["state"] = "on"
            elif value == spec.payload_off:
                out["state"] = "off"
        return out
    if isinstance(spec, AlarmPanelSpec):
        if topic == spec.state_topic:
            value = _render(spec.state_template, payload)
            word = value.strip().casefold() if value is not None else ""
            if word in ALARM_STATES:
                out["state"] = word
        return out
    return out


def _render(template: ValueTemplate | None, payload: str) -> str | None:
    return payload if template is None else template.render(payload)


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        num = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(num):
        return None
    return int(num) if num.is_integer() else num


def _to_kelvin(num: float | None, is_kelvin: bool) -> int | None:
    if num is None or num <= 0:
        return None
    return round(num) if is_kelvin else round(1e6 / num)


def _rgb(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 3:
        return None
    try:
        rgb = tuple(int(float(p)) for p in parts)
    except ValueError:
        return None
    return rgb if all(0 <= c <= 255 for c in rgb) else None


def _decode_json_light(spec: LightSpec, payload: str) -> dict[str, StateValue]:
    out: dict[str, StateValue] = {}
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return out
    if not isinstance(data, dict):
        return out
    state = data.get("state")
    if state == "ON":
        out["state"] = "on"
    elif state == "OFF":
        out["state"] = "off"
    bri = _number(data.get("brightness"))
    if bri is not None:
        out["brightness"] = round(bri * 100 / spec.brightness_scale)
    kelvin = _to_kelvin(_number(data.get("color_temp")), spec.color_temp_kelvin)
    if kelvin is not None:
        out["color_temp"] = kelvin
    color = data.get("color")
    if isinstance(color, dict) and all(k in color for k in ("r", "g", "b")):
        rgb = _rgb(",".join(str(color[k]) for k in ("r", "g", "b")))
        if rgb is not None:
            out["rgb"] = rgb
    if isinstance(data.get("color_mode"), str):
        out["color_mode"] = clean_text(data["color_mode"])
    return out


def _decode_fan(spec: FanSpec, topic: str, payload: str) -> dict[str, StateValue]:
    out: dict[str, StateValue] = {}
    if topic == spec.state_topic:
        value = _render(spec.state_template, payload)
        if value == spec.payload_on:
            out["state"] = "on"
        elif value == spec.payload_off:
            out["state"] = "off"
    if topic == spec.percentage_state_topic:
        num = _number(_render(spec.percentage_template, payload))
        if num is not None:
            count = spec.speed_range_max - spec.speed_range_min + 1
            steps = num - spec.speed_range_min + 1
            pct = 0 if num < spec.speed_range_min else steps * 100 / count
            out["percentage"] = round(pct)
    if topic == spec.preset_mode_state_topic:
        mode = _render(spec.preset_mode_template, payload)
        if mode is not None and mode.strip() and mode != "None":
            out["preset_mode"] = clean_text(mode)
    if topic == spec.oscillation_state_topic:
        value = _render(spec.oscillation_template, payload)
        if value == spec.payload_oscillation_on:
            out["oscillating"] = True
        elif value == spec.payload_oscillation_off:
            out["oscillating"] = False
    return out


def _decode_cover(spec: CoverSpec, topic: str, payload: str) -> dict[str, StateValue]:
    out: dict[str, StateValue] = {}
    if topic == spec.state_topic:
        value = _render(spec.state_template, payload)
        names = {
            spec.state_open: "open",
            spec.state_opening: "opening",
            spec.state_closed: "closed",
            spec.state_closing: "closing",
            spec.state_stopped: "stopped",
        }
        if value in names:
            out["state"] = names[value]
    if topic == spec.position_topic:
        num = _number(_render(spec.position_template, payload))
        if num is not None:
            span = spec.position_open - spec.position_closed
            pct = round((num - spec.position_closed) * 100 / span)
            out["position"] = pct
            if spec.state_topic is None:
                out["state"] = "closed" if pct <= 0 else "open"
    return out


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


# -------------------------------------------------------------------- lookup


_SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "light": ("light", "lamp", "lights", "bulb"),
    "switch": ("switch", "plug", "socket", "outlet"),
    "fan": ("fan",),
    "cover": ("cover", "blind", "blinds", "shutter", "door", "garage", "gate", "curtain"),
    "lock": ("lock", "door"),
    "climate": ("thermostat", "heating", "heater", "climate", "ac", "temperature"),
    "scene": ("scene", "mood"),
    "button": ("button",),
    "sensor": ("sensor", "temperature", "humidity"),
    "binary_sensor": ("sensor", "contact", "door", "window", "motion"),
    "alarm_control_panel": ("alarm", "security", "panel", "siren"),
}
_STOP = frozenset({"the", "a", "an", "in", "on", "of", "my", "please", "room"})
_FUZZY_MIN, _FUZZY_MAX = 4, 24  # token lengths matched approximately (others exactly)
_FUZZY_RATIO = 0.8
_FUZZY_ENTRIES = 50_000  # near-miss index entries at most (a real home needs a few k)
_MEMO = 256  # words and areas remembered per index version


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", text.casefold()) if t and t not in _STOP]


def _fuzzy(token: str) -> bool:
    return _FUZZY_MIN <= len(token) <= _FUZZY_MAX and not token.isdigit()


def _variants(token: str) -> set[str]:
    """The token and every one-character deletion of it: two tokens that share one
    are at most a substitution, an insertion or a swap apart."""
    return {token} | {token[:i] + token[i + 1 :] for i in range(len(token))}


@dataclass(frozen=True)
class _Doc:
    name: tuple[str, ...]
    area: tuple[str, ...]
    kind: tuple[str, ...]
    folded_name: str


class _SearchIndex:
    """Postings (token → device ids) of every device's name, area and kind words, and a
    deletion index for near misses ("kitchn"), kept current as devices come and go.

    A word matches a token exactly (score 1) or, for words of 4+ letters, a token
    sharing a deletion variant whose difflib ratio is at least 0.8 (score 0.9 x ratio),
    as before, only without comparing every word with every device.
    """

    def __init__(self) -> None:
        self.postings: dict[str, dict[str, set[str]]] = {"name": {}, "area": {}, "kind": {}}
        self.by_name: dict[str, set[str]] = {}  # casefolded name -> ids
        self.docs: dict[str, _Doc] = {}
        self.version = 0
        self._refs: Counter[str] = Counter()
        self._near: dict[str, set[str]] = {}  # deletion variant -> tokens
        self._near_entries = 0
        self._matches: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._areas: OrderedDict[str, frozenset[str] | None] = OrderedDict()

    def add(self, device: Device) -> None:
        if device.id in self.docs:
            self.remove(device.id)
        kind = _SYNONYMS.get(device.component, ()) + tuple(_tokens(device.device_class or ""))
        doc = _Doc(
            tuple(_tokens(device.name)),
            tuple(_tokens(device.area or "")),
            kind,
            device.name.casefold(),
        )
        self.docs[device.id] = doc
        self.by_name.setdefault(doc.folded_name, set()).add(device.id)
        for field_name, words in (("name", doc.name), ("area", doc.area), ("kind", doc.kind)):
            postings = self.postings[field_name]
            for word in set(words):
                postings.setdefault(word, set()).add(device.id)
                self._refs[word] += 1
                if self._refs[word] == 1 and _fuzzy(word):
                    self._index_near(word)
        self._changed()

    def remove(self, device_id: str) -> None:
        doc = self.docs.pop(device_id, None)
        if doc is None:
            return
        _discard(self.by_name, doc.folded_name, device_id)
        for field_name, words in (("name", doc.name), ("area", doc.area), ("kind", doc.kind)):
            postings = self.postings[field_name]
            for word in set(words):
                _discard(postings, word, device_id)
                self._refs[word] -= 1
                if self._refs[word] <= 0:
                    del self._refs[word]
                    if _fuzzy(word):
                        self._unindex_near(word)
        self._changed()

    def _index_near(self, word: str) -> None:
        variants = _variants(word)
        if self._near_entries + len(variants) > _FUZZY_ENTRIES:
            return  # a runaway inventory: exact matches still work
        for v in variants:
            self._near.setdefault(v, set()).add(word)
        self._near_entries += len(variants)

    def _unindex_near(self, word: str) -> None:
        variants = _variants(word)
        if word not in self._near.get(word, ()):
            return  # never indexed
        for v in variants:
            _discard(self._near, v, word)
        self._near_entries -= len(variants)

    def _changed(self) -> None:
        self.version += 1
        self._matches.clear()
        self._areas.clear()

    def match(self, word: str) -> dict[str, float]:
        """Known tokens this word may mean, with their scores."""
        hit = self._matches.get(word)
        if hit is not None:
            return hit
        found: dict[str, float] = {}
        if word in self._refs:
            found[word] = 1.0
        if _fuzzy(word):
            candidates: set[str] = set()
            for v in _variants(word):
                candidates |= self._near.get(v, set())
            for cand in candidates - {word}:
                ratio = difflib.SequenceMatcher(None, word, cand).ratio()
                if ratio >= _FUZZY_RATIO:
                    found[cand] = ratio * 0.9
        self._matches[word] = found
        if len(self._matches) > _MEMO:
            self._matches.popitem(last=False)
        return found

    def ids_with(self, field_name: str, word: str) -> set[str]:
        """Devices whose `field_name` words include one this word may mean."""
        postings = self.postings[field_name]
        out: set[str] = set()
        for token in self.match(word):
            out |= postings.get(token, set())
        return out

    def in_area(self, area: str) -> frozenset[str] | None:
        """Devices in `area`: all its words fit the device's area, or else its name.
        None when the area has no words (every device fits)."""
        if area in self._areas:
            return self._areas[area]
        want = set(_tokens(area))
        result: frozenset[str] | None = None
        if want:
            by_area: set[str] | None = None
            by_name: set[str] | None = None
            for word in want:
                a, n = self.ids_with("area", word), self.ids_with("name", word)
                by_area = a if by_area is None else by_area & a
                by_name = n if by_name is None else by_name & n
            result = frozenset((by_area or set()) | (by_name or set()))
        self._areas[area] = result
        if len(self._areas) > _MEMO:
            self._areas.popitem(last=False)
        return result

    def scores(self, query: str) -> dict[str, float]:
        """Every device the words fit at all, with how well (1.0 only for an exact name)."""
        out: dict[str, float] = {i: 1.0 for i in self.by_name.get(query.casefold(), ())}
        if query in self.docs:
            out[query] = 1.0
        words = _tokens(query)
        if not words:
            return out
        weights = (("name", 1.0), ("area", 0.9), ("kind", 0.6))
        total: dict[str, float] = {}
        for word, count in Counter(words).items():
            best: dict[str, float] = {}
            for token, score in self.match(word).items():
                for field_name, weight in weights:
                    value = score * weight
                    for dev_id in self.postings[field_name].get(token, ()):
                        if value > best.get(dev_id, 0.0):
                            best[dev_id] = value
            for dev_id, value in best.items():
                total[dev_id] = total.get(dev_id, 0.0) + count * value
        for dev_id, value in total.items():
            if dev_id not in out:
                out[dev_id] = value / len(words) * 0.97  # only an exact id/name is certain
        return out


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]


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
        self._listeners: list[Listener] = []
        self._source: MessageSource | None = None
        self._subs: dict[str, Cancelable] = {}
        self._disc_subs: list[Cancelable] = []
        self._last: OrderedDict[str, str] = OrderedDict()
        self._last_chars = 0
        self._unkept: set[str] = set()  # followed topics whose last payload was not kept
        self._index = _SearchIndex()
        self._sorted: list[Device] | None = None

    # ---- queries

    def devices(self) -> list[Device]:
        if self._sorted is None:
            self._sorted = sorted((e.device for e in self._entries.values()), key=lambda d: d.id)
        return list(self._sorted)

    def get(self, device_id: str) -> Device | None:
        entry = self._entries.get(device_id)
        return entry.device if entry else None

    def state(self, device_id: str) -> Mapping[str, StateValue]:
        entry = self._entries.get(device_id)
        return dict(entry.state) if entry else {}

    def available(self, device_id: str) -> bool | None:
        """True/False from the availability topics; None if unknown or no such device."""
        entry = self._entries.get(device_id)
        return _availability_of(entry) if entry else None

    def snapshot(self, device_id: str) -> DeviceSnapshot | None:
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
            log.info("%s: %s", topic, note)
        return found

    def _reject(self, err: DiscoveryError) -> None:
        """Remember why (the newest `max_errors` topics; older ones are counted out)."""
        self.stats.discovery_errors += 1
        if self._errors.get(err.where) != err:
            log.warning("ignored discovery config %s", err)
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
                self._apply_message(entry, topic, text, replay=False, retained=retain)

    def _apply_message(
        self, entry: _Entry, topic: str, text: str, *, replay: bool, retained: bool = False
    ) -> None:
        dev = entry.device
        if topic in dev.availability_topics:
            self.stats.availability_messages += 1
            self._apply_availability(entry, topic, text)
        if topic in dev.state_topics:
            values = decode_state(dev.config, topic, text)
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
                self._apply_message(entry, topic, text, replay=True)
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
            value = _render(at.template, text)
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

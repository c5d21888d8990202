"""Which commands need the user's confirmation, decided by what they do.

How an entity calls itself is the attacker's choice: any client allowed to publish
under the discovery prefix can announce a "switch" whose command topic is the front
door lock's. So a command is sensitive when any of these holds:

* its device is sensitive: a lock or an alarm panel; a cover of class garage, gate
  or door; an entry of `tools.sensitive` naming its component, device class, id or
  name; a relay, button or scene whose names or topics say gate, garage, door, lock
  or alarm;
* its topic is a command topic of any sensitive device (an alias, whoever announced it);
* its payload unlocks, unlatches, disarms or opens something (blinds, shades,
  windows and water valves excepted: opening them is no way in); a payload too
  long to read whole counts as one that does.

Sensitivity only grows: a device or topic once sensitive stays so (`remember`,
kept in the state directory by the home service), so re-announcing the garage
door as a shutter, or removing it and announcing a "blind" on its topic, takes
nothing off. When that memory is damaged nobody can say what it held, so every
command asks (`distrust`) until the damaged copy is deleted. And a command whose
words say the opposite of its action ("lock" publishing "unlock_door") is refused
outright (`contradiction`): a "yes" to one must never do the other.

Each sensitive command has a category (lock, alarm, gate, garage, door, other); the
category decides how the user may confirm (`tools.confirm_with`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.home.device import Device

CATEGORIES: tuple[str, ...] = ("lock", "alarm", "gate", "garage", "door", "other")
DEFAULT_SENSITIVE: tuple[str, ...] = ("lock", "garage", "gate", "door", "alarm_control_panel")
# Covers whose opening lets nobody in.
HARMLESS_COVERS = frozenset(
    {"awning", "blind", "curtain", "damper", "shade", "shutter", "window"}
)
# Components whose opening lets nobody in: a valve (but a gas valve: `_HAZARDS`).
HARMLESS_COMPONENTS = frozenset({"valve"})
# (component, device class) whose opening is a hazard of its own.
_HAZARDS: Mapping[tuple[str, str], str] = {("valve", "gas"): "a gas valve"}
# Words in a name, id or topic that mark an entry point, and their category.
_ENTRY_WORDS: Mapping[str, str] = {
    "lock": "lock", "unlock": "lock", "deadbolt": "lock", "latch": "lock",
    "alarm": "alarm", "disarm": "alarm",
    "gate": "gate", "garage": "garage", "door": "door", "entrance": "door",
}
# Payload words that open a way in, and their category.
_PAYLOAD_WORDS: Mapping[str, str] = {
    "unlock": "lock", "unlatch": "lock", "unlocked": "lock",
    "disarm": "alarm", "disarmed": "alarm",
    "open": "door", "opened": "door",
}
# Actions that open a way in, whatever the device calls itself.
_ACTION_CATEGORY: Mapping[str, str] = {"unlock": "lock", "disarm": "alarm", "open": "door"}
_COMPONENT_CATEGORY: Mapping[str, str] = {
    "lock": "lock",
    "alarm_control_panel": "alarm",
}
_CLASS_CATEGORY: Mapping[str, str] = {"garage": "garage", "gate": "gate", "door": "door"}
# Payload words a command of a safe direction must not hold (a swapped payload).
_OPPOSITES: Mapping[str, frozenset[str]] = {
    "lock": frozenset({"unlock", "unlatch", "unlocked", "open", "opened"}),
    "close": frozenset({"open", "opened", "unlock", "unlatch", "unlocked"}),
    "arm": frozenset({"disarm", "disarmed"}),
}
_TOKEN = re.compile(r"[a-z0-9]+")
_MAX_NAME_SCAN = 4096
_MAX_PAYLOAD_SCAN = 65536  # read whole up to here; a longer command counts as sensitive
# Devices and topics remembered; the inventory holds at most 5000 devices, so there is
# always room for the present ones (a topic is at most 1 KB: about 10 MB at worst).
_MAX_REMEMBERED_IDS = 5000
_MAX_REMEMBERED_TOPICS = 10_000
_Z2M_ID = re.compile(r"zigbee2mqtt_(0x[0-9a-f]{16})", re.IGNORECASE)


def _tokens(*texts: str | None, limit: int = _MAX_NAME_SCAN) -> set[str]:
    out: set[str] = set()
    for text in texts:
        if text:
            out.update(_TOKEN.findall(text[:limit].casefold()))
    return out


def _payload_tokens(payload: str) -> set[str] | None:
    """Words of a payload, all of them; for JSON, of its string values (`{"state":
    "UNLOCK"}`). None when it is too long to read whole (padding must not hide a word)."""
    if len(payload) > _MAX_PAYLOAD_SCAN:
        return None
    try:
        data: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return _tokens(payload, limit=_MAX_PAYLOAD_SCAN)
    found: set[str] = set()
    stack = [data]
    while stack:  # bounded by the payload's length: every node is at least a byte
        item = stack.pop()
        if isinstance(item, str):
            found |= _tokens(item, limit=_MAX_PAYLOAD_SCAN)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@dataclass(frozen=True)
class Entity:
    """What the policy reads of a device (daemon.home.device.Device has it all)."""

    id: str
    name: str
    component: str
    device_class: str | None
    command_topics: frozenset[str]
    extra_names: tuple[str, ...] = ()  # the device's own name, its object id
    identifiers: tuple[str, ...] = ()  # its device's (`zigbee2mqtt_0x...`: other topics)


@dataclass(frozen=True)
class Sensitivity:
    """Why a device or command needs confirmation: its category (which decides how) and a reason."""

    category: str
    why: str


class SensitivityPolicy:
    """Classifies devices and commands; `index()` learns which topics sensitive devices use."""

    def __init__(
        self,
        sensitive: Iterable[str] = DEFAULT_SENSITIVE,
        source: Callable[[], Iterable[Entity]] | None = None,
    ) -> None:
        self.sensitive = tuple(sensitive)
        self._names = {s.casefold() for s in self.sensitive}
        self._topics: dict[str, Sensitivity] = {}
        self._source = source  # every device, re-read after `changed()`
        self._dirty = source is not None
        # Once sensitive, always: ids and command topics -> category (`remember`).
        self._ids: dict[str, str] = {}
        self._known_topics: dict[str, str] = {}
        self.learned = False  # `_ids` or `_known_topics` grew since `memory()` was read
        self.unremembered = 0  # past the bound with all of it present: not remembered
        self.forgotten = 0  # let go at the bound (devices no longer announced)
        self._saturated: set[int] = set()  # stores full of present devices (by id())
        self.distrusted = ""  # why every command asks (the memory was damaged), or ""

    def remember(self, ids: Mapping[str, str], topics: Mapping[str, str]) -> None:
        """Devices and topics found sensitive before (the state directory's record)."""
        for store, items in ((self._ids, ids), (self._known_topics, topics)):
            for key, cat in list(items.items())[:_bound(store is self._ids) - len(store)]:
                store.setdefault(key, cat if cat in CATEGORIES else "other")
        self._dirty = self._source is not None

    def distrust(self, why: str) -> None:
        """The memory of what was sensitive is lost: every command asks (category
        "other"), since any device may be a tamed one. The model's list is unchanged,
        and so is what admission holds: only the gate asks more."""
        self.distrusted = why

    def memory(self) -> tuple[dict[str, str], dict[str, str]]:
        """What to keep for the next start (bounded as `learn` keeps it)."""
        self.learned = False
        return dict(self._ids), dict(self._known_topics)

    def changed(self) -> None:
        """Devices came, changed or went: re-learn the sensitive topics before the next use."""
        self._dirty = self._source is not None
        self._saturated.clear()

    def _fresh(self) -> None:
        if self._dirty and self._source is not None:
            self._dirty = False
            self.index(self._source())

    def of_entity(self, e: Entity) -> Sensitivity | None:
        """The device itself is sensitive (any of its commands needs confirmation), now
        or at any time before."""
        now = self._classify(e)
        if now is not None:
            return now
        was = self._ids.get(e.id)
        if was is not None:
            return Sensitivity(was, "it was announced as a sensitive device before")
        return None

    def _classify(self, e: Entity) -> Sensitivity | None:
        component, cls = e.component, (e.device_class or "").casefold()
        hazard = _HAZARDS.get((component, cls))
        if hazard is not None:
            return Sensitivity("other", hazard)
        category = _COMPONENT_CATEGORY.get(component) or _CLASS_CATEGORY.get(cls)
        if category is not None and (component in _COMPONENT_CATEGORY or component == "cover"):
            if component == "alarm_control_panel" and component not in self._names:
                return None  # arming is the safe direction; disarm is caught by payload
            return Sensitivity(category, f"a {cls or component}")
        for value in (component, cls, e.id, e.name):
            if value and value.casefold() in self._names:
                why = f"listed in tools.sensitive ({value})"
                return Sensitivity(_category_of(component, cls, value), why)
        if component in ("switch", "button", "scene", "cover"):  # a cover of any other class
            words = _tokens(e.id, e.name, *e.extra_names, *sorted(e.command_topics))
            for word, cat in _ENTRY_WORDS.items():
                if word in words:
                    return Sensitivity(cat, f"its name or topic says {word!r}")
        return None

    def flags(self, e: Entity, actions: Iterable[str]) -> Sensitivity | None:
        """Whether some command of this device will need confirmation (for the model's list)."""
        actions = list(actions)
        if not actions:
            return None  # a sensor: nothing to confirm
        own = self.of_entity(e)
        if own is not None:
            return own
        self._fresh()
        for topic in e.command_topics:
            alias = self._alias(topic)
            if alias is not None:
                return Sensitivity(alias.category, f"its command topic is shared: {alias.why}")
        harmless = _opens_no_way_in(e)
        for action in actions:
            cat = _ACTION_CATEGORY.get(action)
            if cat is not None and not (harmless and cat == "door"):
                return Sensitivity(_COMPONENT_CATEGORY.get(e.component, cat), f"it can {action}")
        return None

    def _alias(self, topic: str) -> Sensitivity | None:
        """A sensitive device's command topic, or one under it: Zigbee2MQTT also takes
        `<device>/set/<attribute>`, so `.../set/state` commands the same device."""
        parts = topic.split("/")
        for n in range(len(parts), 0, -1):
            hit = self._topics.get("/".join(parts[:n]))
            if hit is not None:
                return hit
        return None

    def index(self, entities: Iterable[Entity]) -> None:
        """Remember the command topics of every sensitive device, for aliases (and
        every sensitive device and topic for good)."""
        topics: dict[str, Sensitivity] = {}
        for e in entities:
            sens = self.learn(e)
            if sens is None:
                continue
            for topic in _aliases(e):
                topics.setdefault(topic, Sensitivity(sens.category, f"{topic} belongs to {e.name}"))
        for topic, cat in self._known_topics.items():
            topics.setdefault(topic, Sensitivity(cat, f"{topic} was a sensitive device's"))
        self._topics = topics

    def learn(self, e: Entity) -> Sensitivity | None:
        """Classify a device as it is announced, and remember it (and its command
        topics) for good if it is sensitive: a later, tamer announcement keeps it so."""
        sens = self.of_entity(e)
        if sens is None:
            return None
        for store, key in ((self._ids, e.id), *((self._known_topics, t) for t in _aliases(e))):
            if key in store:
                continue
            if len(store) >= _bound(store is self._ids) and (
                    id(store) in self._saturated or not self._make_room(store)):
                self.unremembered += 1
                continue
            store[key] = sens.category
            self.learned = True
        return sens

    def _make_room(self, store: dict[str, str]) -> bool:
        """A tenth of the memory goes, oldest first, but never a device (or topic) the
        inventory has now: a flood of announcements made and withdrawn cannot push the
        household's present devices out. False if everything remembered is present."""
        present: set[str] = set()
        for e in self._source() if self._source is not None else ():
            present.add(e.id)
            present.update(_aliases(e))
        gone = [k for k in store if k not in present][: _bound(store is self._ids) // 10]
        for key in gone:
            del store[key]
        self.forgotten += len(gone)
        if not gone:  # all present: no second scan until the devices change
            self._saturated.add(id(store))
        return bool(gone)

    def contradiction(self, action: str, payload: str) -> str | None:
        """Why the payload does the opposite of a safe action ("lock" sending "unlock"),
        or None. Such a command is refused: the user would confirm the one, and get the
        other."""
        opposite = _OPPOSITES.get("arm" if action.startswith("arm_") else action)
        if opposite is None:
            return None
        words = _payload_tokens(payload)
        if words is None:
            return f"the command for {action!r} is too long to check"
        hit = sorted(opposite & words)
        return f"the command for {action!r} says {hit[0]!r}" if hit else None

    def of_command(self, e: Entity, action: str, topic: str, payload: str) -> Sensitivity | None:
        """The command to publish is sensitive: its device, action, topic or payload says so."""
        own = self.of_entity(e)
        if own is not None:
            return own
        self._fresh()
        if action in _ACTION_CATEGORY:
            cat = _ACTION_CATEGORY[action]
            if not (cat == "door" and _opens_no_way_in(e)):
                return Sensitivity(_COMPONENT_CATEGORY.get(e.component, cat), f"it would {action}")
        alias = self._alias(topic)
        if alias is not None:
            return Sensitivity(alias.category, f"its command topic is shared: {alias.why}")
        words = _payload_tokens(payload)
        if words is None:
            return Sensitivity("other", "the command is too long to check")
        harmless = _opens_no_way_in(e)
        for word, cat in _PAYLOAD_WORDS.items():
            if word in words and not (harmless and cat == "door"):
                if e.component == "alarm_control_panel":
                    cat = "alarm"
                return Sensitivity(cat, f"the command says {word!r}")
        if self.distrusted:
            return Sensitivity("other", self.distrusted)
        return None


def _bound(ids: bool) -> int:
    return _MAX_REMEMBERED_IDS if ids else _MAX_REMEMBERED_TOPICS


def _aliases(e: Entity) -> set[str]:
    """Every topic that commands the device: its own, and for a Zigbee2MQTT device the
    same under its IEEE address (`zigbee2mqtt/0x.../set`, which Zigbee2MQTT also takes)."""
    topics = set(e.command_topics)
    ieee = [m.group(1).lower() for i in e.identifiers if (m := _Z2M_ID.fullmatch(i))]
    for topic in e.command_topics:
        if ieee and topic.endswith("/set") and "/" in topic[:-4]:
            base = topic.split("/", 1)[0]
            topics.update(f"{base}/{address}/set" for address in ieee)
    return topics


def _opens_no_way_in(e: Entity) -> bool:
    """Opening it lets nobody in: blinds, shades, windows and the like, and valves."""
    if (e.component, (e.device_class or "").casefold()) in _HAZARDS:
        return False
    if e.component in HARMLESS_COMPONENTS:
        return True
    return e.component == "cover" and (e.device_class or "") in HARMLESS_COVERS


def _category_of(component: str, cls: str, listed: str) -> str:
    for value in (component, cls, listed.casefold()):
        if value in _COMPONENT_CATEGORY:
            return _COMPONENT_CATEGORY[value]
        if value in _CLASS_CATEGORY:
            return _CLASS_CATEGORY[value]
        if value in _ENTRY_WORDS:
            return _ENTRY_WORDS[value]
    return "other"


def entity_of(device: Device) -> Entity:
    """What the policy reads of an inventory device."""
    config = device.config
    extra = tuple(
        x for x in (config.device.name if config.device else None, config.object_id) if x
    )
    return Entity(
        device.id, device.name, device.component, device.device_class,
        frozenset(device.command_topics), extra,
        config.device.identifiers if config.device else (),
    )

"""Which device commands may be published at all, before any confirmation.

Two rules that keep a client allowed to publish discovery configs from steering
the daemon:

* A command topic must fall under the allowed prefixes: `mqtt.command_prefixes`
  when set, else the first levels of the known devices' own state and
  availability topics (`zigbee2mqtt/`, `shellies/`, ...). Never the daemon's own
  topics (`edge-agent/`), the discovery prefix, or the broker's `$SYS/`.
* A sensitive device announced since the daemon last saw it (or whose command
  topics changed) is held for `tools.new_device_hold` seconds: announced in the
  log and to Home Assistant, controllable only afterwards. The devices already
  accepted are remembered in the state directory; on the very first start the
  devices present are accepted (and listed in the log). A record that exists but
  cannot be used (damaged, see daemon/ops/state.py) is no first start: every
  sensitive device present is held as if newly announced (failing closed).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.ops.state import StateStore

log = logging.getLogger(__name__)

RECORD = "sensitive_devices"
_MAX_REMEMBERED = 2000
NEVER_PREFIXES: tuple[str, ...] = ("edge-agent/", "$SYS/")
V2 = "2:"  # fingerprints that cover what the commands say, not only where they go


@dataclass(frozen=True)
class Held:
    """A new sensitive device waiting out its hold."""

    device_id: str
    name: str
    category: str
    until: float
    fingerprint: str


def fingerprint(component: str, command_topics: Iterable[str], detail: str | None = None) -> str:
    """What makes a sensitive device "the same one": its kind, where commands go and
    what they say (`detail`: its class, payloads and templates). A re-announcement that
    swaps "lock" and "unlock", or calls a garage door a shutter, is a new device.

    Without `detail`: the fingerprint records before that was part of it held, read
    once to carry an unchanged device over (`V2` marks the new ones)."""
    parts = [component, *sorted(command_topics)]
    if detail is None:
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return V2 + hashlib.sha256("\n".join([*parts, detail]).encode()).hexdigest()[:16]


def device_fingerprints(component: str, command_topics: Iterable[str], device_class: str | None,
                        spec: object) -> tuple[str, str]:
    """(fingerprint, the older kind) of a parsed device; the spec's dataclass repr holds
    every topic, payload and template it commands with."""
    topics = tuple(command_topics)
    detail = f"{device_class or ''}\n{spec!r}"
    return fingerprint(component, topics, detail), fingerprint(component, topics)


class Admission:
    """Decides which command topics may be published and which sensitive devices are still held."""

    def __init__(
        self,
        *,
        discovery_prefix: str,
        configured_prefixes: Iterable[str] = (),
        hold_seconds: float = 60.0,
        state: StateStore | None = None,
        clock: Callable[[], float],
        topics: Callable[[], tuple[Iterable[str], Iterable[str]]] | None = None,
    ) -> None:
        self.configured = tuple(configured_prefixes)
        self.never = (*NEVER_PREFIXES, f"{discovery_prefix}/")
        self.hold_seconds = hold_seconds
        self._state = state
        self._clock = clock
        self._topics_source = topics  # (device topics, declared command topics)
        self._topics_dirty = topics is not None
        self._derived: frozenset[str] = frozenset()
        self._trusted_topics: frozenset[str] = frozenset()
        self._held: dict[str, Held] = {}
        self._accepted: dict[str, str] = {}
        self._first_start = True
        self.damaged = ""  # why the record of accepted devices could not be used
        self.refused_topics = 0
        self.refused_held = 0
        if state is not None:
            self._load(state)

    def _load(self, state: StateStore) -> None:
        """The devices accepted before; a record that exists but is unusable is no first
        start (every sensitive device is held), whatever made it so."""
        record, damaged = state.load_status(RECORD)
        devices = record.get("devices") if record is not None else None
        if isinstance(devices, Mapping):
            self._accepted = {str(k): str(v) for k, v in devices.items()}
            self._first_start = False
            return
        if damaged is not None:
            self.damaged = damaged.describe()
        elif record is not None:
            self.damaged = f"state record {RECORD} is unusable (no device list)"
        if self.damaged:
            self._first_start = False
            log.error("%s: every sensitive device is held for %.0f s as if newly announced",
                      self.damaged, self.hold_seconds)

    def now(self) -> float:
        """The clock holds are measured on (the one `held_until` answers in)."""
        return self._clock()

    # -- topics ---------------------------------------------------------------
    def learn_topics(self, device_topics: Iterable[str], trusted_commands: Iterable[str]) -> None:
        """The devices' state/availability topics (for the derived prefixes) and the
        command topics the owner declared in the config file (always allowed)."""
        derived = set()
        for topic in device_topics:
            first = topic.split("/", 1)[0]
            if first and "/" in topic:
                derived.add(f"{first}/")
        self._derived = frozenset(p for p in derived if not self._forbidden(p))
        self._trusted_topics = frozenset(trusted_commands)

    def changed(self) -> None:
        """Devices came, changed or went: re-learn the topics before the next check."""
        self._topics_dirty = self._topics_source is not None

    def _fresh(self) -> None:
        if self._topics_dirty and self._topics_source is not None:
            self._topics_dirty = False
            self.learn_topics(*self._topics_source())

    def _forbidden(self, topic: str) -> bool:
        return any(topic.startswith(p) or topic == p.rstrip("/") for p in self.never)

    def topic_allowed(self, topic: str) -> bool:
        """Whether a command may go to `topic`: never a forbidden one, else under the prefixes."""
        if self._forbidden(topic):
            return False
        self._fresh()
        if topic in self._trusted_topics:
            return True
        prefixes = self.configured or tuple(self._derived)
        return any(topic.startswith(p) for p in prefixes)

    def prefixes(self) -> tuple[str, ...]:
        """The allowed command prefixes now: the configured ones, else those the devices use."""
        self._fresh()
        return self.configured or tuple(sorted(self._derived))

    def why_topic(self, topic: str) -> str:
        """One clause for the model saying why `topic_allowed` refused `topic`."""
        if self._forbidden(topic):
            return f"{topic!r} is one of the daemon's own or the broker's topics"
        where = "mqtt.command_prefixes" if self.configured else "the devices' own topic prefixes"
        allowed = ", ".join(self.prefixes()) or "none"
        return f"{topic!r} is outside {where} ({allowed})"

    # -- holds ----------------------------------------------------------------
    def settle_initial(self, sensitive: Mapping[str, tuple[str, str, str, str]]) -> None:
        """The first full read of the inventory: {id: (name, category, fingerprint,
        the older fingerprint)}.

        On the very first start the devices present are accepted; later, those not
        remembered (announced while the daemon was down) are held like new ones. After
        a damaged record, the (empty) list is saved at once: a restart before the holds
        end holds them again rather than taking it for a first start.
        """
        if self._first_start:
            for dev_id, (name, category, fp, _older) in sensitive.items():
                self._accepted[dev_id] = fp
                log.info("sensitive device accepted on first start: %s (%s, %s)",
                         name, dev_id, category)
            self._first_start = False
            self._save()
            return
        for dev_id, (name, category, fp, older) in sensitive.items():
            self.consider(dev_id, name, category, fp, older)
        if self.damaged:
            self._save()

    def consider(self, dev_id: str, name: str, category: str, fp: str,
                 older: str | None = None) -> Held | None:
        """A sensitive device appeared or changed: hold it unless it is the one we know.

        `older`: its fingerprint as records before `V2` held it; a device accepted
        under that one, unchanged, is carried over (once) rather than held."""
        known = self._accepted.get(dev_id)
        if known == fp:
            return None
        if known is not None and older is not None and not known.startswith(V2) \
                and known == older:
            self.accept(dev_id, fp)
            return None
        held = self._held.get(dev_id)
        if held is not None:
            return held
        held = Held(dev_id, name, category, self._clock() + self.hold_seconds, fp)
        self._held[dev_id] = held
        log.warning(
            "new sensitive device %r (%s, %s) announced on the broker: it can be controlled "
            "in %.0f s. If you did not add it, remove its discovery config and check who may "
            "publish under the discovery prefix.",
            name, dev_id, category, self.hold_seconds,
        )
        return held

    def accepted_ids(self) -> list[str]:
        """The sensitive devices accepted so far (they stay sensitive, see sensitivity.py)."""
        return list(self._accepted)

    def forget(self, dev_id: str) -> None:
        """The device was removed: its hold ends (announcing it again starts a new one)."""
        self._held.pop(dev_id, None)

    def held(self) -> list[Held]:
        """Devices still held now; those whose hold ended are accepted and remembered."""
        now = self._clock()
        done = [h for h in self._held.values() if now >= h.until]
        for h in done:
            del self._held[h.device_id]
            self._accepted[h.device_id] = h.fingerprint
            log.info("sensitive device %r (%s) can now be controlled", h.name, h.device_id)
        if done:
            self._save()
        return sorted(self._held.values(), key=lambda h: h.until)

    def accept(self, dev_id: str, fp: str) -> None:
        """Remember a sensitive device whose hold ended (or that was declared)."""
        if self._accepted.get(dev_id) != fp:
            self._accepted[dev_id] = fp
            self._save()

    def held_until(self, dev_id: str) -> float | None:
        """When a held device may be controlled, or None once it is not held."""
        if dev_id not in self._held:
            return None
        self.held()  # accepts those whose hold ended
        held = self._held.get(dev_id)
        return None if held is None else held.until

    def _save(self) -> None:
        if self._state is None:
            return
        items = list(self._accepted.items())[-_MAX_REMEMBERED:]
        record: dict[str, Any] = {"devices": dict(items)}
        self._state.save(RECORD, record)

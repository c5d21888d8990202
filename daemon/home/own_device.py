"""The daemon itself as a Home Assistant device, over the home's MQTT connection.

Glasses connected, battery, Live link state, the new sensitive devices on hold,
the last transcript (opt-in), and the "mute microphone" and "camera" switches that
really call the Agent. Each entity is announced with a retained discovery config
(marked as edge-agent's own, so no edge-agent daemon takes it for a device) and its
state is published when it changes, and in full every `mqtt.state_interval`. The
device's availability is the connection's last will.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon import __version__
from daemon.config import MqttSettings
from daemon.home.inventory import EDGE_AGENT_MODEL, EDGE_AGENT_ORIGIN
from daemon.home.mqtt import MqttConnection, MqttMessage, NotPublished, Subscription
from daemon.ops.lograte import LineBudget
from daemon.ops.logsetup import clip
from daemon.ops.metrics import Metrics

log = logging.getLogger(__name__)

StatusProvider = Callable[[], Mapping[str, Any]]
Switch = Callable[[bool], None]

_STATE_MAX_CHARS = 255  # Home Assistant's limit for an entity state
_POLL_SECONDS = 0.25  # how often the daemon's own state is compared with what was sent
_HELD_KEY = "_new_sensitive_devices"
# Switch commands that make the daemon hear or see more: opt-in over MQTT.
_OPENING = {"mute_microphone": False, "camera": True}


@dataclass(frozen=True)
class OwnEntity:
    """One entity of the daemon's own Home Assistant device."""

    component: str
    object_id: str
    name: str
    value: Callable[[Mapping[str, Any]], str]
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    command: Switch | None = None
    retain: bool = True


def node_id_for(client_id: str) -> str:
    """The discovery node id: the client id with anything but [A-Za-z0-9_-] as `_`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", client_id) or "edge_agent"


def _on_off(value: Any) -> str:
    return "ON" if value else "OFF"


def _glasses_connected(status: Mapping[str, Any]) -> str:
    """A BLE peripheral says `connected`; a file or microphone input is always there."""
    peripheral = status.get("peripheral")
    if not isinstance(peripheral, Mapping):
        return "OFF"
    connected = peripheral.get("connected")
    if isinstance(connected, bool):
        return _on_off(connected)
    return _on_off(peripheral.get("kind") in ("file", "kiosk"))


def _battery(status: Mapping[str, Any]) -> str:
    value = status.get("battery_percent")
    if value is None and isinstance(status.get("peripheral"), Mapping):
        value = status["peripheral"].get("battery")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "None"  # Home Assistant's "unknown" for a sensor
    return str(round(value))


def _text(key: str, default: str = "") -> Callable[[Mapping[str, Any]], str]:
    def get(status: Mapping[str, Any]) -> str:
        value = status.get(key)
        text = default if value is None else str(value)
        return clip(text, _STATE_MAX_CHARS)  # a peer's error text may quote a secret

    return get


def _is_kiosk(status: StatusProvider) -> bool:
    try:
        peripheral = status().get("peripheral")
    except Exception:  # a status that cannot be read yet has no kiosk to show
        return False
    return isinstance(peripheral, Mapping) and peripheral.get("kind") == "kiosk"


def _has_tasks(status: StatusProvider) -> bool:
    return _has_key(status, "background_task")


def _has_key(status: StatusProvider, key: str) -> bool:
    try:
        return key in status()
    except Exception:  # a status that cannot be read yet has nothing to show
        return False


def _assistant_state(status: Mapping[str, Any]) -> str:
    """The kiosk's own word for it (daemon.audio.frontend.FrontEnd.assistant_state), or
    "muted": a muted kiosk hears nothing, whatever its front end would say."""
    if status.get("microphone_muted") is True:
        return "muted"
    peripheral = status.get("peripheral")
    value = peripheral.get("assistant") if isinstance(peripheral, Mapping) else None
    return value if isinstance(value, str) else "unknown"


def _push_to_talk(status: Mapping[str, Any]) -> str:
    """The kiosk's talk button (any source holds it)."""
    peripheral = status.get("peripheral")
    return _on_off(isinstance(peripheral, Mapping) and peripheral.get("push_to_talk") is True)


def _status_entities(publish_transcript: bool) -> list[OwnEntity]:
    """The sensors a status provider backs."""
    out = [
        OwnEntity(
            "binary_sensor",
            "glasses_connected",
            "Glasses connected",
            _glasses_connected,
            {"device_class": "connectivity"},
        ),
        OwnEntity(
            "sensor",
            "battery",
            "Battery",
            _battery,
            {"device_class": "battery", "unit_of_measurement": "%", "state_class": "measurement"},
        ),
        OwnEntity(
            "sensor",
            "live_link",
            "Live link state",
            _text("live_link", "unknown"),
            {"icon": "mdi:cloud-sync"},
        ),
    ]
    if publish_transcript:  # opt-in: speech stays here by default
        # Not retained: what the user said should not sit on the broker forever.
        out.append(
            OwnEntity(
                "sensor",
                "last_transcript",
                "Last transcript",
                _text("last_user_text"),
                {"icon": "mdi:text-box-outline"},
                retain=False,
            )
        )
    return out


class OwnDevice:
    """The daemon's entities: their configs, states, and the switch commands they take.

    `held` says which new sensitive devices are on hold (one line); `wake()` asks for
    the states to be compared and published now, `reannounce()` for the discovery
    configs to be published again first (Home Assistant restarted).
    """

    def __init__(
        self,
        mqtt: MqttSettings,
        metrics: Metrics,
        *,
        availability_topic: str,
        held: Callable[[], str],
        status_provider: StatusProvider | None = None,
        on_mute: Switch | None = None,
        on_camera: Switch | None = None,
        on_push_to_talk: Switch | None = None,
        link_number: Callable[[], int] | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.metrics = metrics
        self.client_id = mqtt.client_id
        self.node_id = node_id_for(mqtt.client_id)
        self.base_topic = f"edge-agent/{mqtt.client_id}"
        self.availability_topic = availability_topic
        self.status_provider = status_provider
        self.on_mute = on_mute
        self.on_camera = on_camera
        self.on_push_to_talk = on_push_to_talk  # the kiosk's talk button, opted in
        self._talk_held = False  # Home Assistant's switch holds it now
        # Which broker connection this is (the connection counts them): a press is tied
        # to the one it came on.
        self.link_number: Callable[[], int] = link_number or (lambda: 0)
        self._talk_link = 0  # the broker connection (by number) its press came on
        self.announcements = 0
        self._held = held
        self._wake = asyncio.Event()
        self._announce_due = False
        self._published: dict[str, str] = {}
        self._lines = LineBudget()  # command lines anyone on the broker can provoke
        self._commanded: dict[str, bool] = {}
        self.entities = self._entities()

    # ----------------------------------------------------------- entities

    def state_topic(self, entity: OwnEntity) -> str:
        """Where the entity's state is published."""
        return f"{self.base_topic}/{entity.object_id}"

    def command_topic(self, entity: OwnEntity) -> str:
        """Where Home Assistant switches the entity."""
        return f"{self.base_topic}/{entity.object_id}/set"

    def discovery_topic(self, entity: OwnEntity) -> str:
        """Where the entity's retained discovery config goes."""
        prefix = self.mqtt.discovery_prefix
        return f"{prefix}/{entity.component}/{self.node_id}/{entity.object_id}/config"

    def _entities(self) -> list[OwnEntity]:
        """Only entities something backs: sensors need a status, switches a callback."""
        out: list[OwnEntity] = []
        if self.status_provider is not None:
            out += _status_entities(self.mqtt.publish_transcript)
            if _is_kiosk(self.status_provider):  # idle/listening/thinking/speaking: an LED ring
                out.append(OwnEntity("sensor", "assistant_state", "Assistant state",
                                     _assistant_state, {"icon": "mdi:account-voice"}))
            if _has_tasks(self.status_provider):  # [interactions] on: daemon.tasks
                out += [OwnEntity("sensor", "background_task", "Background task",
                                  _text("background_task", "none"), {"icon": "mdi:progress-clock"}),
                        OwnEntity("sensor", "background_task_result", "Background task result",
                                  _text("background_task_result"), {"icon": "mdi:text-search"})]
            if _has_key(self.status_provider, "road"):  # [interactions] fallback: live/fallback
                out.append(OwnEntity("sensor", "road", "Conversation road",
                                     _text("road", "live"), {"icon": "mdi:call-split"}))
        out.append(
            OwnEntity(
                "sensor",
                "new_sensitive_devices",
                "New sensitive devices on hold",
                _text(_HELD_KEY, "none"),
                {"icon": "mdi:shield-alert"},
            )
        )
        if self.on_mute is not None:
            out.append(
                OwnEntity(
                    "switch",
                    "mute_microphone",
                    "Mute microphone",
                    lambda s: _on_off(s.get("microphone_muted")),
                    {"icon": "mdi:microphone-off"},
                    command=self.on_mute,
                )
            )
        if self.on_camera is not None:
            out.append(
                OwnEntity(
                    "switch",
                    "camera",
                    "Camera",
                    lambda s: _on_off(s.get("camera_enabled", True)),
                    {"icon": "mdi:camera"},
                    command=self.on_camera,
                )
            )
        if self.on_push_to_talk is not None:
            # ON = the button down (the kiosk listens), OFF = up; a press with no
            # release is let go after peripheral.kiosk.push_to_talk_max_hold.
            out.append(OwnEntity("switch", "push_to_talk", "Push to talk",
                                 _push_to_talk, {"icon": "mdi:microphone-message"},
                                 command=self._talk, retain=False))
        return out

    def discovery_config(self, entity: OwnEntity) -> dict[str, Any]:
        """The retained Home Assistant discovery config of one own entity."""
        config: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"edge-agent-{self.node_id}-{entity.object_id}",
            "object_id": f"{self.node_id}_{entity.object_id}",
            "state_topic": self.state_topic(entity),
            "availability_topic": self.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [f"edge-agent-{self.node_id}"],
                "name": f"Edge agent {self.client_id}",
                "manufacturer": "edge-agent",
                "model": EDGE_AGENT_MODEL,
                "sw_version": __version__,
            },
            "origin": {"name": EDGE_AGENT_ORIGIN, "sw_version": __version__},
            **entity.extra,
        }
        if entity.command is not None:
            config.update(
                command_topic=self.command_topic(entity),
                payload_on="ON",
                payload_off="OFF",
                optimistic=False,
            )
        return config

    def entity_states(self) -> dict[str, str]:
        """The state payload of every own entity, from the status provider.

        Without a provider (or when it does not say), a switch reports what it was
        last told to do.
        """
        status: dict[str, Any] = {}
        if self.status_provider is not None:
            try:
                status = dict(self.status_provider())
            except Exception:
                log.exception("status provider failed")
                return {}
        status[_HELD_KEY] = self._held()
        status.setdefault("microphone_muted", self._commanded.get("mute_microphone", False))
        status.setdefault("camera_enabled", self._commanded.get("camera", True))
        return {e.object_id: e.value(status) for e in self.entities}

    # ----------------------------------------------------------- commands

    def _kiosk_holds(self) -> bool:
        try:
            status = self.status_provider() if self.status_provider is not None else {}
        except Exception:  # a status that cannot be read: let go to be sure
            return True
        peripheral = status.get("peripheral")
        return not isinstance(peripheral, Mapping) or peripheral.get("push_to_talk") is not False

    def subscribe(self, conn: MqttConnection) -> list[Subscription]:
        """Follow the command topic of every switch. Push-to-talk at QoS 0: a press the
        broker queued while the daemon was away must not open the microphone hours later."""
        return [
            conn.subscribe(self.command_topic(e), functools.partial(self._on_command, e),
                           qos=0 if e.object_id == "push_to_talk" else 1)
            for e in self.entities
            if e.command is not None
        ]

    def _talk(self, on: bool) -> None:
        assert self.on_push_to_talk is not None  # the entity exists only with it
        self.on_push_to_talk(on)
        self._talk_held = on
        self._talk_link = self.link_number()

    def watch_talk(self, connected: bool) -> None:
        """A release sent while the link was down is lost for good (push-to-talk is QoS
        0): a press from before a disconnect, however short, is let go."""
        if self._talk_held and (not connected or self.link_number() != self._talk_link):
            self.release_talk("the broker link was lost since the press")

    def release_talk(self, why: str) -> None:
        """Home Assistant can no longer send the release (the broker link is gone, or the
        daemon stops): a push-to-talk it holds is let go now, not at the hold limit."""
        if not self._talk_held or self.on_push_to_talk is None:
            return
        if not self._kiosk_holds():  # let go already (its hold limit, a lost microphone)
            self._talk_held = False
            return
        log.info("push-to-talk from Home Assistant let go: %s", why)
        try:
            self._talk(False)
        except Exception:
            log.exception("could not let push-to-talk go (%s)", why)

    def _on_command(self, entity: OwnEntity, msg: MqttMessage) -> None:
        """A switch command from Home Assistant: ON/OFF only, never a retained one."""
        counter = self.metrics.home_ha_commands
        if msg.retain:  # a stale command someone retained must not flip the mic on reconnect
            counter.labels(entity.object_id, "ignored_retained").inc()
            return
        text = msg.text().strip().upper()
        if text not in ("ON", "OFF") or entity.command is None:
            counter.labels(entity.object_id, "invalid").inc()
            if self._lines.take() is not None:
                log.warning("ignored %r on %s", msg.text()[:40], msg.topic)
            return
        on = text == "ON"
        opening = _OPENING.get(entity.object_id)
        if opening is not None and on == opening and not self.mqtt.remote_unmute:
            # Anyone who can publish here could listen in: only the safe direction.
            counter.labels(entity.object_id, "refused_remote_unmute").inc()
            if self._lines.take() is not None:
                log.warning(
                    "refused %s %s over MQTT: turning the %s back on from Home Assistant "
                    "needs mqtt.remote_unmute = true (and a broker ACL on %s)",
                    entity.object_id, text,
                    "microphone" if entity.object_id == "mute_microphone" else "camera",
                    msg.topic,
                )
            self._wake.set()  # re-publish the real state so Home Assistant's switch flips back
            self._published.pop(entity.object_id, None)
            return
        try:
            entity.command(on)
        except Exception:
            counter.labels(entity.object_id, "error").inc()
            log.exception("%s: applying %s failed", entity.object_id, text)
            return
        self._commanded[entity.object_id] = text == "ON"
        counter.labels(entity.object_id, "applied").inc()
        self._wake.set()

    # ----------------------------------------------------------- publishing

    def wake(self) -> None:
        """Compare and publish the states now, not at the next poll."""
        self._wake.set()

    def reannounce(self) -> None:
        """Publish the discovery configs again, then the states (Home Assistant's birth)."""
        self._announce_due = True
        self._wake.set()

    async def run(self, conn: MqttConnection) -> None:
        """Announce on every new connection and on HA's birth; publish states on change."""
        loop = asyncio.get_running_loop()
        announced_on = -1
        last_full = -math.inf
        while True:
            await conn.wait_connected()
            try:
                if conn.stats.connects != announced_on or self._announce_due:
                    connects = conn.stats.connects
                    self._announce_due = False
                    await self.announce(conn)
                    announced_on = connects
                    self._published.clear()
                if loop.time() - last_full >= self.mqtt.state_interval:
                    self._published.clear()
                    last_full = loop.time()
                await self._publish_states(conn)
            except NotPublished as exc:
                log.info("own device state not published: %s", exc)
                self.metrics.home_state_publishes.labels("not_sent").inc()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()

    async def announce(self, conn: MqttConnection) -> None:
        """Publish every own entity's discovery config, retained."""
        for entity in self.entities:
            await conn.publish(
                self.discovery_topic(entity),
                json.dumps(self.discovery_config(entity), separators=(",", ":")),
                qos=1,
                retain=True,
                timeout=5.0,
            )
        self.announcements += 1
        self.metrics.home_announcements.inc()

    async def _publish_states(self, conn: MqttConnection) -> None:
        states = self.entity_states()
        for entity in self.entities:
            value = states.get(entity.object_id)
            if value is None or self._published.get(entity.object_id) == value:
                continue
            await conn.publish(
                self.state_topic(entity), value, qos=1, retain=entity.retain, timeout=5.0
            )
            self._published[entity.object_id] = value
            self.metrics.home_state_publishes.labels("published").inc()

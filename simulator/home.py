"""Virtual Home Assistant-style devices over MQTT, for tests and the demo.

Each device publishes a retained discovery config (some with abbreviated keys and a
`~` base topic), listens on its command topics and reports state as retained
messages, the way Zigbee2MQTT or Tasmota devices do. Knobs for fault tests: a
response latency, devices that go offline (availability), and devices that
silently ignore commands. The devices interpret commands with their own small
state machines, deliberately independent of daemon.home.commands, so a round trip
checks the daemon against an outside view of the protocol.

Run it on its own with `edge-agent sim home --host H --port P`, optionally with
`--offline ID` and `--ignore ID` (see `main`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from daemon.config import MqttSettings
from daemon.home.mqtt import MqttConnection, MqttMessage, NotPublished, Subscription
from simulator.broker import PrivateBroker

log = logging.getLogger(__name__)

BRIDGE_TOPIC = "sim-home/bridge/availability"
Step = tuple[float, str, str]  # (delay before, topic, payload), published retained


def _avty(base: str, *, tilde: bool = False) -> dict[str, Any]:
    own = "~/availability" if tilde else f"{base}/availability"
    return {"avty": [{"t": BRIDGE_TOPIC}, {"t": own}], "avty_mode": "all"}


def _dev(ident: str, name: str, area: str, model: str) -> dict[str, Any]:
    return {"ids": [ident], "name": name, "mf": "Edge Sim", "mdl": model, "sa": area}


@dataclass
class VirtualDevice:
    """One simulated entity: its discovery config, state and command behaviour."""

    component: str
    object_id: str
    config: dict[str, Any]
    node_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    online: bool = True
    ignore_commands: bool = False
    withdrawn: bool = False  # its config was removed: not announced again
    latency: float | None = None
    received: list[tuple[str, str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"sim/{self.object_id}"

    @property
    def availability_topic(self) -> str:
        return f"{self.base}/availability"

    def discovery_topic(self, prefix: str) -> str:
        node = f"{self.node_id}/" if self.node_id else ""
        return f"{prefix}/{self.component}/{node}{self.object_id}/config"

    def command_topics(self) -> set[str]:
        return set()

    def state_messages(self) -> list[tuple[str, str]]:
        return []

    def on_command(self, topic: str, payload: str) -> list[Step]:
        """Apply a command; the state messages to publish afterwards."""
        return []

    def _now(self) -> list[Step]:
        return [(0.0, t, p) for t, p in self.state_messages()]


def _int(payload: str) -> int | None:
    try:
        return int(float(payload))
    except ValueError:
        return None


class SimLight(VirtualDevice):
    """Default schema light: on/off, brightness 0..100, colour temperature in mireds."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "light",
            object_id,
            {
                "~": base,
                "name": None,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": "~/set",
                "stat_t": "~/state",
                "bri_cmd_t": "~/brightness/set",
                "bri_stat_t": "~/brightness",
                "bri_scl": 100,
                "clr_temp_cmd_t": "~/color_temp/set",
                "clr_temp_stat_t": "~/color_temp",
                "min_mirs": 153,
                "max_mirs": 454,
                **_avty(base, tilde=True),
                "dev": _dev(f"sim-{object_id}", name, area, "CT bulb"),
            },
            state={"state": "OFF", "brightness": 100, "color_temp": 370},
        )

    def command_topics(self) -> set[str]:
        b = self.base
        return {f"{b}/set", f"{b}/brightness/set", f"{b}/color_temp/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        b, s = self.base, self.state
        return [
            (f"{b}/state", s["state"]),
            (f"{b}/brightness", str(s["brightness"])),
            (f"{b}/color_temp", str(s["color_temp"])),
        ]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        """Like many bulbs: report the power state and the attribute that changed."""
        b = self.base
        if topic == f"{b}/set" and payload in ("ON", "OFF"):
            self.state["state"] = payload
            changed = []
        elif topic == f"{b}/brightness/set" and (v := _int(payload)) is not None and 0 <= v <= 100:
            self.state["brightness"] = v
            self.state["state"] = "ON" if v > 0 else "OFF"
            changed = [(f"{b}/brightness", str(v))]
        elif (
            topic == f"{b}/color_temp/set"
            and (v := _int(payload)) is not None
            and (153 <= v <= 454)
        ):
            self.state["color_temp"] = v
            self.state["state"] = "ON"
            changed = [(f"{b}/color_temp", str(v))]
        else:
            return []
        return [(0.0, t, p) for t, p in [(f"{b}/state", self.state["state"]), *changed]]


class SimJsonLight(VirtualDevice):
    """JSON schema light with brightness (0..255), colour temperature and RGB."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "light",
            object_id,
            {
                "~": base,
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "schema": "json",
                "cmd_t": "~/set",
                "stat_t": "~",
                "brightness": True,
                "sup_clrm": ["color_temp", "rgb"],
                "min_mirs": 153,
                "max_mirs": 500,
                **_avty(base, tilde=True),
                "dev": _dev(f"sim-{object_id}", name, area, "RGB lamp"),
            },
            state={
                "state": "OFF",
                "brightness": 255,
                "color_mode": "color_temp",
                "color_temp": 300,
            },
        )

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(self.base, json.dumps(self.state))]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        try:
            data = json.loads(payload)
        except ValueError:
            return []
        if not isinstance(data, dict) or data.get("state") not in ("ON", "OFF"):
            return []
        self.state["state"] = data["state"]
        if isinstance(data.get("brightness"), int):
            self.state["brightness"] = data["brightness"]
        if isinstance(data.get("color_temp"), int):
            self.state.update(color_mode="color_temp", color_temp=data["color_temp"])
            self.state.pop("color", None)
        if isinstance(data.get("color"), dict):
            self.state.update(color_mode="rgb", color=data["color"])
            self.state.pop("color_temp", None)
        return self._now()


class SimSwitch(VirtualDevice):
    """Switch with full keys, a node id, and JSON state read by a value template."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "switch",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "command_topic": f"{base}/set",
                "state_topic": f"{base}/state",
                "value_template": "{{ value_json.state }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "availability": [
                    {"topic": BRIDGE_TOPIC},
                    {"topic": f"{base}/availability", "payload_available": "online"},
                ],
                "availability_mode": "all",
                "device": {
                    "identifiers": [f"sim-{object_id}"],
                    "name": name,
                    "manufacturer": "Edge Sim",
                    "suggested_area": area,
                },
            },
            node_id="sim",
            state={"state": "OFF", "power": 0.0},
        )

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", json.dumps(self.state))]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        if payload not in ("ON", "OFF"):
            return []
        self.state = {"state": payload, "power": 40.5 if payload == "ON" else 0.0}
        return self._now()


class SimFan(VirtualDevice):
    """Fan with speeds 1..10, preset modes and oscillation (abbreviated keys)."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "fan",
            object_id,
            {
                "name": None,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                "pct_cmd_t": f"{base}/speed/set",
                "pct_stat_t": f"{base}/speed",
                "spd_rng_min": 1,
                "spd_rng_max": 10,
                "pr_mode_cmd_t": f"{base}/preset/set",
                "pr_mode_stat_t": f"{base}/preset",
                "pr_modes": ["auto", "sleep", "breeze"],
                "osc_cmd_t": f"{base}/oscillate/set",
                "osc_stat_t": f"{base}/oscillate",
                **_avty(base),
                "dev": _dev(f"sim-{object_id}", name, area, "Tower fan"),
            },
            node_id="sim",
            state={"state": "OFF", "speed": 3, "preset": "auto", "osc": "oscillate_off"},
        )

    def command_topics(self) -> set[str]:
        b = self.base
        return {f"{b}/set", f"{b}/speed/set", f"{b}/preset/set", f"{b}/oscillate/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        b, s = self.base, self.state
        return [
            (f"{b}/state", s["state"]),
            (f"{b}/speed", str(s["speed"])),
            (f"{b}/preset", s["preset"]),
            (f"{b}/oscillate", s["osc"]),
        ]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        b = self.base
        if topic == f"{b}/set" and payload in ("ON", "OFF"):
            self.state["state"] = payload
        elif topic == f"{b}/speed/set" and (v := _int(payload)) is not None and 1 <= v <= 10:
            self.state.update(state="ON", speed=v)
        elif topic == f"{b}/preset/set" and payload in ("auto", "sleep", "breeze"):
            self.state.update(state="ON", preset=payload)
        elif topic == f"{b}/oscillate/set" and payload in ("oscillate_on", "oscillate_off"):
            self.state["osc"] = payload
        else:
            return []
        return self._now()


class SimGarageDoor(VirtualDevice):
    """Garage door: OPEN/CLOSE/STOP, reports opening/closing, then open/closed."""

    def __init__(self, object_id: str, name: str, area: str, *, travel: float = 0.2) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "cover",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "device_class": "garage",
                "command_topic": f"{base}/set",
                "state_topic": f"{base}/state",
                **_avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
            state={"state": "closed"},
        )
        self.travel = travel

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        t = f"{self.base}/state"
        if payload == "OPEN":
            self.state["state"] = "open"
            return [(0.0, t, "opening"), (self.travel, t, "open")]
        if payload == "CLOSE":
            self.state["state"] = "closed"
            return [(0.0, t, "closing"), (self.travel, t, "closed")]
        if payload == "STOP":
            self.state["state"] = "stopped"
            return self._now()
        return []


class SimBlinds(VirtualDevice):
    """Blinds with a position (0 closed .. 100 open) and open/close/stop."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "cover",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "dev_cla": "blind",
                "cmd_t": f"{base}/set",
                "set_pos_t": f"{base}/position/set",
                "pos_t": f"{base}/position",
                "pos_open": 100,
                "pos_clsd": 0,
                **_avty(base),
                "dev": _dev(f"sim-{object_id}", name, area, "Roller blind"),
            },
            state={"position": 0},
        )

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set", f"{self.base}/position/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/position", str(self.state["position"]))]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        if topic == f"{self.base}/position/set":
            v = _int(payload)
            if v is None or not 0 <= v <= 100:
                return []
            self.state["position"] = v
        elif payload in ("OPEN", "CLOSE"):
            self.state["position"] = 100 if payload == "OPEN" else 0
        elif payload != "STOP":
            return []
        return self._now()


class SimLock(VirtualDevice):
    """Lock with custom payloads and state words (abbreviated keys).

    With `open_payload` it can also unlatch the door (Home Assistant's `open`): it
    reports "open" while the door is held open, then "unlocked".
    """

    def __init__(
        self,
        object_id: str,
        name: str,
        area: str,
        *,
        open_payload: str | None = None,
        hold_open: float = 0.2,
    ) -> None:
        base = f"sim/{object_id}"
        opening: dict[str, Any] = (
            {"pl_open": open_payload, "stat_open": "open"} if open_payload else {}
        )
        super().__init__(
            "lock",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                "pl_lock": "lock_door",
                "pl_unlk": "unlock_door",
                "stat_locked": "locked",
                "stat_unlocked": "unlocked",
                **opening,
                **_avty(base),
                "dev": _dev(f"sim-{object_id}", name, area, "Smart lock"),
            },
            state={"state": "locked"},
        )
        self.open_payload = open_payload
        self.hold_open = hold_open
        self.openings = 0

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        if self.open_payload is not None and payload == self.open_payload:
            self.openings += 1
            self.state["state"] = "unlocked"
            t = f"{self.base}/state"
            return [(0.0, t, "open"), (self.hold_open, t, "unlocked")]
        words = {"lock_door": "locked", "unlock_door": "unlocked"}
        if payload not in words:
            return []
        self.state["state"] = words[payload]
        return self._now()


class SimAlarmPanel(VirtualDevice):
    """Alarm panel (Home Assistant's alarm_control_panel), abbreviated keys.

    Arming goes through "arming" (the exit delay) to "armed_<mode>"; DISARM disarms.
    With `remote_code` the panel wants the user's code with a disarm (REMOTE_CODE,
    which the daemon never has): a bare DISARM is refused, arming needs none.
    """

    PAYLOADS = {
        "ARM_HOME": "armed_home",
        "ARM_AWAY": "armed_away",
        "ARM_NIGHT": "armed_night",
        "ARM_VACATION": "armed_vacation",
    }

    def __init__(
        self,
        object_id: str,
        name: str,
        area: str,
        *,
        features: Sequence[str] = ("arm_home", "arm_away", "arm_night"),
        remote_code: bool = False,
        exit_delay: float = 0.1,
    ) -> None:
        base = f"sim/{object_id}"
        code: dict[str, Any] = {"code": "REMOTE_CODE", "cod_arm_req": False} if remote_code else {}
        super().__init__(
            "alarm_control_panel",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                "sup_feat": list(features),
                "pl_arm_nite": "ARM_NIGHT",
                **code,
                **_avty(base),
                "dev": _dev(f"sim-{object_id}", name, area, "Alarm panel"),
            },
            state={"state": "disarmed"},
        )
        self.features = tuple(features)
        self.remote_code = remote_code
        self.exit_delay = exit_delay
        self.refused = 0

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        t = f"{self.base}/state"
        armed = self.PAYLOADS.get(payload)
        if armed is not None and armed.replace("armed_", "arm_") in self.features:
            self.state["state"] = armed
            return [(0.0, t, "arming"), (self.exit_delay, t, armed)]
        if payload == "DISARM" and not self.remote_code:
            self.state["state"] = "disarmed"
            return self._now()
        self.refused += 1
        return []


class SimThermostat(VirtualDevice):
    """Thermostat: modes off/heat/cool/auto, target 10..30 °C in 0.5 steps."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "climate",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "mode_command_topic": f"{base}/mode/set",
                "mode_state_topic": f"{base}/mode",
                "modes": ["off", "heat", "cool", "auto"],
                "temperature_command_topic": f"{base}/target/set",
                "temperature_state_topic": f"{base}/target",
                "current_temperature_topic": f"{base}/current",
                "min_temp": 10,
                "max_temp": 30,
                "temp_step": 0.5,
                "temperature_unit": "C",
                **_avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
            state={"mode": "heat", "target": 20.0, "current": 19.5},
        )

    def command_topics(self) -> set[str]:
        return {f"{self.base}/mode/set", f"{self.base}/target/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        b, s = self.base, self.state
        return [
            (f"{b}/mode", s["mode"]),
            (f"{b}/target", f"{s['target']:.1f}"),
            (f"{b}/current", f"{s['current']:.1f}"),
        ]

    def on_command(self, topic: str, payload: str) -> list[Step]:
        if topic == f"{self.base}/mode/set" and payload in ("off", "heat", "cool", "auto"):
            self.state["mode"] = payload
        elif topic == f"{self.base}/target/set":
            try:
                value = float(payload)
            except ValueError:
                return []
            if not 10 <= value <= 30 or (value * 2) % 1:
                return []
            self.state["target"] = value
        else:
            return []
        return self._now()


class SimScene(VirtualDevice):
    """A scene: activations are recorded in `activations`."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "scene",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/activate",
                "pl_on": "ACTIVATE",
                **_avty(base),
                "dev": _dev(f"sim-{object_id}", name, area, "Scene"),
            },
        )
        self.activations = 0

    def command_topics(self) -> set[str]:
        return {f"{self.base}/activate"}

    def on_command(self, topic: str, payload: str) -> list[Step]:
        if payload == "ACTIVATE":
            self.activations += 1
        return []


class SimButton(VirtualDevice):
    """A button: presses are recorded in `presses`."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "button",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "command_topic": f"{base}/press",
                "payload_press": "PRESS",
                **_avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
        )
        self.presses = 0

    def command_topics(self) -> set[str]:
        return {f"{self.base}/press"}

    def on_command(self, topic: str, payload: str) -> list[Step]:
        if payload == "PRESS":
            self.presses += 1
        return []


class SimTemperatureSensor(VirtualDevice):
    """Temperature sensor reporting JSON read through a value template."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "sensor",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "stat_t": f"{base}/state",
                "val_tpl": "{{ value_json.temperature }}",
                "unit_of_meas": "°C",
                "dev_cla": "temperature",
                "stat_cla": "measurement",
                **_avty(base),
                "dev": _dev(f"sim-{object_id}", name, area, "Climate sensor"),
            },
            state={"temperature": 21.5, "humidity": 45},
        )

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", json.dumps(self.state))]


class SimDoorContact(VirtualDevice):
    """Door contact (binary_sensor) with custom on/off payloads."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "binary_sensor",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "state_topic": f"{base}/state",
                "payload_on": "open",
                "payload_off": "closed",
                "device_class": "door",
                **_avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
            state={"contact": "closed"},
        )

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["contact"])]


def default_devices() -> list[VirtualDevice]:
    """The demo home: one device of each kind."""
    return [
        SimLight("kitchen_light", "Kitchen light", "Kitchen"),
        SimSwitch("living_room_switch", "Living room switch", "Living room"),
        SimFan("bedroom_fan", "Bedroom fan", "Bedroom"),
        SimGarageDoor("garage_door", "Garage door", "Garage"),
        SimLock("front_door_lock", "Front door lock", "Hallway"),
        SimThermostat("thermostat", "Thermostat", "Hallway"),
        SimScene("movie_night", "Movie night", "Living room"),
        SimButton("doorbell_chime", "Doorbell chime", "Hallway"),
        SimTemperatureSensor("living_room_temperature", "Living room temperature", "Living room"),
        SimDoorContact("front_door_contact", "Front door contact", "Hallway"),
    ]


def extra_devices() -> list[VirtualDevice]:
    """More shapes for tests: a JSON schema RGB lamp and positionable blinds."""
    return [
        SimJsonLight("desk_lamp", "Desk lamp", "Office"),
        SimBlinds("bedroom_blinds", "Bedroom blinds", "Bedroom"),
    ]


def security_devices() -> list[VirtualDevice]:
    """Entry points: an alarm panel, one that wants the user's code to disarm, and a
    lock that can unlatch (open) the door."""
    return [
        SimAlarmPanel("house_alarm", "House alarm", "Hallway"),
        SimAlarmPanel("shed_alarm", "Shed alarm", "Garden", remote_code=True),
        SimLock("back_door_lock", "Back door lock", "Kitchen", open_payload="open_door"),
    ]


class VirtualHome:
    """Runs a set of virtual devices on a broker until the context exits."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[VirtualDevice] | None = None,
        *,
        prefix: str = "homeassistant",
        client_id: str = "edge-sim-home",
        latency: float = 0.0,
        retain_discovery: bool = True,
    ) -> None:
        self.devices = {d.object_id: d for d in (devices or default_devices())}
        self.prefix = prefix
        self.latency = latency
        self.retain_discovery = retain_discovery
        self.received: list[tuple[str, str]] = []
        self.announcements = 0
        self._by_topic = {t: d for d in self.devices.values() for t in d.command_topics()}
        self.conn = MqttConnection(
            MqttSettings(host=host, port=port, client_id=client_id),
            availability_topic=BRIDGE_TOPIC,
            backoff_initial=0.05,
            backoff_max=1.0,
            stable_after=1.0,
        )
        self._locks = {d: asyncio.Lock() for d in self.devices}
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        try:
            self._tg = await stack.enter_async_context(asyncio.TaskGroup())
            await stack.enter_async_context(self.conn)
            subs: list[Subscription] = [
                self.conn.subscribe(t, self._on_command) for t in sorted(self._by_topic)
            ]
            subs.append(self.conn.subscribe(f"{self.prefix}/status", self._on_ha_status))
            if not await self.conn.wait_subscribed(*subs, timeout=10):
                raise ConnectionError("virtual home could not reach the MQTT broker")
            await self.announce()
            for dev in self.devices.values():
                await self._publish(dev.availability_topic, "online" if dev.online else "offline")
                for topic, payload in dev.state_messages():
                    await self._publish(topic, payload)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        for task in list(self._tasks):  # pending replies die with the home
            task.cancel()
        if stack is not None:
            await stack.__aexit__(None, None, None)  # keep the caller's exception unwrapped

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tg is None:
            coro.close()
            return
        task = self._tg.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except NotPublished as exc:  # broker gone: the device's reply is lost, as in life
            log.warning("virtual home could not publish: %s", exc)

    async def _publish(self, topic: str, payload: str, *, retain: bool = True) -> None:
        await self.conn.publish(topic, payload, qos=1, retain=retain, timeout=10)

    async def announce(self) -> None:
        """(Re)publish every discovery config, except those of withdrawn devices."""
        self.announcements += 1
        for dev in self.devices.values():
            if dev.withdrawn:
                continue
            await self._publish(
                dev.discovery_topic(self.prefix),
                json.dumps(dev.config),
                retain=self.retain_discovery,
            )

    async def remove(self, object_id: str) -> None:
        """Withdraw a device: empty retained discovery payload, and no more announcements."""
        dev = self.devices[object_id]
        dev.withdrawn = True
        await self._publish(dev.discovery_topic(self.prefix), "")

    async def set_online(self, object_id: str, online: bool) -> None:
        """Report the device (un)available; offline devices also ignore commands."""
        dev = self.devices[object_id]
        dev.online = online
        await self._publish(dev.availability_topic, "online" if online else "offline")

    def set_ignore_commands(self, object_id: str, ignore: bool = True) -> None:
        self.devices[object_id].ignore_commands = ignore

    def _on_ha_status(self, msg: MqttMessage) -> None:
        if msg.text() == "online":
            self._spawn(self.announce())

    def _on_command(self, msg: MqttMessage) -> None:
        dev = self._by_topic.get(msg.topic)
        if dev is None:
            return
        payload = msg.text()
        self.received.append((msg.topic, payload))
        dev.received.append((msg.topic, payload))
        if dev.ignore_commands or not dev.online:
            return
        self._spawn(self._respond(dev, msg.topic, payload))

    async def _respond(self, dev: VirtualDevice, topic: str, payload: str) -> None:
        async with self._locks[dev.object_id]:
            latency = self.latency if dev.latency is None else dev.latency
            if latency > 0:
                await asyncio.sleep(latency)
            for delay, state_topic, state_payload in dev.on_command(topic, payload):
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._publish(state_topic, state_payload)


@contextlib.asynccontextmanager
async def demo_home(mqtt: MqttSettings, *, latency: float = 0.0) -> AsyncIterator[MqttSettings]:
    """For `edge-agent demo`: the MQTT settings the daemon should use, with a home on them.

    With no broker configured (`mqtt.host` empty) this starts a private mosquitto on a
    free loopback port and the default virtual home on it, and yields `mqtt` pointing
    there. With a broker configured it yields `mqtt` unchanged and starts nothing: the
    demo never puts simulated devices on a real Home Assistant's broker.
    """
    if mqtt.host:
        yield mqtt
        return
    async with (
        PrivateBroker() as broker,
        VirtualHome(
            broker.host,
            broker.port,
            default_devices(),
            prefix=mqtt.discovery_prefix,
            latency=latency,
        ),
    ):
        yield mqtt.model_copy(update={"host": broker.host, "port": broker.port, "tls": False})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent sim home",
        description="Virtual smart-home devices (Home Assistant MQTT discovery).",
    )
    p.add_argument("--host", default="127.0.0.1", help="MQTT broker host")
    p.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    p.add_argument("--prefix", default="homeassistant", help="discovery prefix")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before devices answer")
    p.add_argument("--client-id", default="edge-sim-home")
    p.add_argument(
        "--extra",
        action="store_true",
        help="add the JSON lamp, the blinds, two alarm panels and a lock that opens",
    )
    p.add_argument(
        "--offline",
        action="append",
        default=[],
        metavar="ID",
        help="start this device unavailable (it also ignores commands); repeatable",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="ID",
        help="this device takes commands but never acts or reports; repeatable",
    )
    return p


def _apply_faults(devices: Sequence[VirtualDevice], offline: list[str], ignore: list[str]) -> str:
    """Mark devices offline or ignoring by object id (`kitchen_light` or `sim-kitchen_light`).

    Returns an error naming the unknown ids and the known ones, or "" if all were found.
    """
    by_id = {d.object_id: d for d in devices}
    unknown = [i for i in offline + ignore if i.removeprefix("sim-") not in by_id]
    if unknown:
        return f"unknown device {', '.join(unknown)}; known: {', '.join(sorted(by_id))}"
    for ident in offline:
        by_id[ident.removeprefix("sim-")].online = False
    for ident in ignore:
        by_id[ident.removeprefix("sim-")].ignore_commands = True
    return ""


async def _serve(args: argparse.Namespace, devices: Sequence[VirtualDevice]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with VirtualHome(
            args.host,
            args.port,
            devices,
            prefix=args.prefix,
            client_id=args.client_id,
            latency=args.latency,
        ) as home:
            faults = "".join(
                f", {label}: {', '.join(ids)}"
                for label, ids in (("offline", args.offline), ("ignoring", args.ignore))
                if ids
            )
            print(
                f"virtual home: {len(home.devices)} devices on {args.host}:{args.port}{faults}",
                flush=True,
            )
            await stop.wait()
    except ConnectionError as exc:
        print(f"edge-agent sim home: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`edge-agent sim home`: run the virtual home until SIGINT/SIGTERM."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 2
    if not 0 < args.port < 65536 or args.latency < 0:
        print("edge-agent sim home: --port must be 1..65535, --latency >= 0", file=sys.stderr)
        return 2
    devices = default_devices() + (extra_devices() + security_devices() if args.extra else [])
    problem = _apply_faults(devices, args.offline, args.ignore)
    if problem:
        print(f"edge-agent sim home: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args, devices))

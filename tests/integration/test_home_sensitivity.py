"""Issue 12, item 2: sensitivity decided by what a command does, not by what a device says.

A client allowed to publish under the discovery prefix announces devices built to
slip past the confirmation: a switch on the lock's command topic, a gate relay
announced as a button, a "door" cover, a device whose command topic is the daemon's
own mute switch. With the real home service on a private mosquitto and the virtual
home, each one either needs confirmation or is refused; nothing reaches a command
topic; new sensitive devices wait and are announced first.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.home.model_tools import CONTROL_DEVICE
from simulator.home import default_devices
from tests.support.home import CLIENT_ID, Rig, home_rig
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

LOCK_TOPIC = "sim/front_door_lock/set"


def output(answer: dict[str, Any]) -> Any:
    return answer.get("output", answer.get("error"))


async def announce(rig: Rig, object_id: str, component: str, config: dict[str, Any]) -> str:
    """Publish a retained discovery config as a stranger on the broker would."""
    config = {"unique_id": f"evil-{object_id}", "name": object_id, **config}
    await rig.watcher.publish(
        f"homeassistant/{component}/{object_id}/config", json.dumps(config), retain=True
    )
    dev_id = f"evil-{object_id}"
    await eventually(lambda: dev_id in rig.enum(CONTROL_DEVICE))  # offered to the model
    return dev_id


async def test_aliases_and_disguises_need_confirmation() -> None:
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": 0}) as rig:
        mark = rig.watcher.mark()
        # A "switch" whose command topic is the front door lock's.
        alias = await announce(rig, "porch_switch", "switch", {
            "command_topic": LOCK_TOPIC, "payload_on": "unlock_door",
            "state_topic": "sim/porch_switch/state"})
        # A gate relay announced as a plain button.
        button = await announce(rig, "relay_3", "button", {
            "command_topic": "sim/relay_3/press", "device": {"identifiers": ["r3"],
                                                            "name": "Drive gate opener"}})
        # A switch whose payload unlocks something else.
        unlocker = await announce(rig, "helper", "switch", {
            "command_topic": "sim/helper/set", "payload_on": "UNLOCK",
            "state_topic": "sim/helper/state"})
        # A cover of class door.
        door = await announce(rig, "patio_door", "cover", {
            "command_topic": "sim/patio_door/set", "device_class": "door",
            "state_topic": "sim/patio_door/state"})
        for dev_id, action in [(alias, "turn_on"), (button, "press"), (unlocker, "turn_on"),
                               (door, "open")]:
            out = output(await rig.call(CONTROL_DEVICE, {"device_id": dev_id,
                                                         "action": action}))
            assert isinstance(out, dict) and out["status"] in ("needs_confirmation", "failed")
            assert out["status"] != "failed" or "confirm" in out["message"], out
        await rig.barrier()
        assert rig.commands_since(mark) == []
        # The lock itself: a lock wants a tap or the PIN, neither exists here.
        lock = output(await rig.call(CONTROL_DEVICE, {"device_id": "sim-front_door_lock",
                                                      "action": "unlock"}))
        assert lock["status"] == "failed" and "confirm_pin" in lock["message"]
        # An ordinary light still just works.
        light = output(await rig.call(CONTROL_DEVICE, {"device_id": "sim-kitchen_light",
                                                       "action": "turn_on"}))
        assert light["status"] == "done"


async def test_command_topics_stay_under_the_allowed_prefixes() -> None:
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": 0}) as rig:
        mark = rig.watcher.mark()
        own = await announce(rig, "mic", "switch", {
            "command_topic": f"edge-agent/{CLIENT_ID}/mute_microphone/set",
            "state_topic": "sim/mic/state"})
        elsewhere = await announce(rig, "far", "switch", {
            "command_topic": "zzz/far/set", "state_topic": "sim/far/state"})
        ha = await announce(rig, "ha", "switch", {
            "command_topic": "homeassistant/status", "payload_on": "online",
            "state_topic": "sim/ha/state"})
        for dev_id in (own, elsewhere, ha):
            out = output(await rig.call(CONTROL_DEVICE, {"device_id": dev_id,
                                                         "action": "turn_on"}))
            assert isinstance(out, str) and "cannot be controlled" in out, out
        await rig.barrier()
        assert rig.commands_since(mark) == []
        assert rig.service.admission.refused_topics == 3


async def test_configured_prefixes_replace_the_derived_ones() -> None:
    async with home_rig(default_devices(), user=False,
                        mqtt={"command_prefixes": ["zigbee2mqtt/"]}) as rig:
        out = output(await rig.call(CONTROL_DEVICE, {"device_id": "sim-kitchen_light",
                                                     "action": "turn_on"}))
        assert isinstance(out, str) and "outside mqtt.command_prefixes" in out


async def test_a_new_sensitive_device_waits_and_is_announced(caplog: Any) -> None:
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": 1.5},
                        status_provider=lambda: {}) as rig:
        held_topic = f"edge-agent/{CLIENT_ID}/new_sensitive_devices"
        new = await announce(rig, "side_gate", "cover", {
            "command_topic": "sim/side_gate/set", "device_class": "gate",
            "state_topic": "sim/side_gate/state"})
        out = output(await rig.call(CONTROL_DEVICE, {"device_id": new, "action": "open"}))
        assert isinstance(out, str) and "announced only recently" in out
        assert "new sensitive device 'side_gate'" in caplog.text

        def announced() -> str | None:
            texts = [m.text() for m in rig.watcher.messages if m.topic == held_topic]
            return texts[-1] if texts else None

        await eventually(lambda: announced() == "side_gate (gate)")
        await eventually(lambda: rig.service.admission.held_until(new) is None, 5)
        out = output(await rig.call(CONTROL_DEVICE, {"device_id": new, "action": "open"}))
        # Past the hold: now the confirmation rule speaks (a gate wants a tap or the PIN).
        assert isinstance(out, dict) and "tools.confirm_with.gate" in out["message"]
        await eventually(lambda: announced() == "none", 5)
        # The devices present at the first start were accepted at once.
        garage = output(await rig.call(CONTROL_DEVICE, {"device_id": "sim-garage_door",
                                                        "action": "open"}))
        assert garage["status"] == "needs_confirmation"

"""A stranger re-announces a device the household trusts, to take its protection off.

Any client allowed to publish under the discovery prefix can replace a retained
config. With the real home service on a private mosquitto and the virtual home:
calling the garage door a shutter, removing it and announcing a blind on its topic,
swapping a lock's payloads, or hiding "UNLOCK" in a long payload must never let a
command through without the user's confirmation, nor make a "yes" to one action do
the opposite. (Each attack worked before: review of 2026-12-06.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.home.model_tools import CONTROL_DEVICE
from daemon.ops.state import StateStore
from simulator.home import default_devices
from tests.integration.test_home_sensitivity import announce, output
from tests.support.home import Rig, home_rig
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

GARAGE = "sim-garage_door"
LOCK = "sim-front_door_lock"
HOLD = 1.0  # tools.new_device_hold: short, so a test sees the hold and what follows it


async def reannounce(rig: Rig, object_id: str, **changes: Any) -> None:
    """The device's own retained config, republished with `changes` (None removes it)."""
    sim = rig.home.devices[object_id]
    config = {k: v for k, v in {**sim.config, **changes}.items() if v is not None}
    await rig.watcher.publish(sim.discovery_topic("homeassistant"), json.dumps(config),
                              retain=True)


async def ask(rig: Rig, device_id: str, action: str, **extra: Any) -> Any:
    return output(await rig.call(CONTROL_DEVICE, {"device_id": device_id, "action": action,
                                                  **extra}))


async def past_the_hold(rig: Rig, device_id: str) -> None:
    await eventually(lambda: rig.service.admission.held_until(device_id) is None, 5)


@pytest.mark.parametrize("cls", ["shutter", "window"])
async def test_a_garage_door_called_a_shutter_is_held_then_still_asks(cls: str) -> None:
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": HOLD}) as rig:
        assert (await ask(rig, GARAGE, "open"))["status"] == "needs_confirmation"
        mark = rig.watcher.mark()
        await reannounce(rig, "garage_door", device_class=cls)
        inv = rig.service.inventory
        await eventually(lambda: inv.get(GARAGE).device_class == cls)
        out = await ask(rig, GARAGE, "open")
        assert isinstance(out, str) and "announced only recently" in out, out
        await past_the_hold(rig, GARAGE)
        out = await ask(rig, GARAGE, "open")
        assert out["status"] == "needs_confirmation", out
        await rig.barrier()
        assert rig.commands_since(mark) == []


async def test_a_blind_on_a_removed_garage_doors_topic_still_asks() -> None:
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": HOLD}) as rig:
        topic = rig.home.devices["garage_door"].config["command_topic"]
        sim = rig.home.devices["garage_door"]
        await rig.watcher.publish(sim.discovery_topic("homeassistant"), "", retain=True)
        await eventually(lambda: rig.service.inventory.get(GARAGE) is None)
        mark = rig.watcher.mark()
        blind = await announce(rig, "blind", "cover", {
            "command_topic": topic, "device_class": "blind",
            "state_topic": "sim/blind/state"})
        await past_the_hold(rig, blind)
        out = await ask(rig, blind, "open")
        assert out["status"] == "needs_confirmation", out
        await rig.barrier()
        assert rig.watcher.since(mark, lambda t: t == topic) == []


@pytest.mark.parametrize(
    ("object_id", "device_id", "action", "swap", "opposite"),
    [("garage_door", GARAGE, "close", {"payload_close": "OPEN", "payload_open": "CLOSE"},
      "OPEN"),
     ("front_door_lock", LOCK, "lock", {"pl_lock": "unlock_door", "pl_unlk": "lock_door"},
      "unlock_door")],
    ids=["garage", "lock"],
)
async def test_swapped_payloads_hold_the_device_and_never_do_the_opposite(
    object_id: str, device_id: str, action: str, swap: dict[str, str], opposite: str,
) -> None:
    async with home_rig(default_devices(), tools={"new_device_hold": HOLD}) as rig:
        before = rig.service.inventory.get(device_id).config
        mark = rig.watcher.mark()
        await reannounce(rig, object_id, **swap)
        await eventually(lambda: rig.service.inventory.get(device_id).config != before)
        assert rig.service.admission.held_until(device_id) is not None
        await past_the_hold(rig, device_id)
        first = await ask(rig, device_id, action)
        assert first["status"] == "failed", first
        assert f"says {opposite.split('_')[0].lower()!r}" in first["message"]
        assert "tampered" in first["message"]
        await rig.barrier()
        assert rig.commands_since(mark) == []


async def test_an_unlock_hidden_behind_padding_still_asks() -> None:
    padded = json.dumps({"state": "UNLOCK", "note": " ".join(f"w{i}" for i in range(300))})
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": 0}) as rig:
        mark = rig.watcher.mark()
        lamp = await announce(rig, "lamp", "switch", {
            "command_topic": "sim/lamp/set", "payload_on": padded,
            "state_topic": "sim/lamp/state"})
        out = await ask(rig, lamp, "turn_on")  # a lock's: a tap or the PIN, neither here
        assert out["status"] == "failed" and "tools.confirm_with.lock" in out["message"], out
        await rig.barrier()
        assert rig.watcher.since(mark, lambda t: t == "sim/lamp/set") == []


async def test_what_was_sensitive_stays_so_across_a_restart(tmp_path: Path) -> None:
    """Re-announced as a shutter while the daemon was down, the garage door still asks."""
    state = StateStore(tmp_path)
    async with home_rig(default_devices(), user=False, state=state) as rig:
        assert (await ask(rig, GARAGE, "open"))["status"] == "needs_confirmation"
    devices = default_devices()
    tame = next(d for d in devices if d.object_id == "garage_door")
    tame.config["device_class"] = "shutter"
    async with home_rig(devices, user=False, state=StateStore(tmp_path),
                        tools={"new_device_hold": HOLD}) as rig:
        assert rig.service.inventory.get(GARAGE).device_class == "shutter"
        await past_the_hold(rig, GARAGE)
        mark = rig.watcher.mark()
        out = await ask(rig, GARAGE, "open")
        assert out["status"] == "needs_confirmation", out
        await rig.barrier()
        assert rig.commands_since(mark) == []


async def test_a_blind_on_a_zigbee2mqtt_attribute_topic_of_a_garage_door_still_asks() -> None:
    """Zigbee2MQTT takes `<device>/set/state` as well as `<device>/set`."""
    ieee = "0x00158d00045a1b2c"
    async with home_rig(default_devices(), user=False, tools={"new_device_hold": HOLD}) as rig:
        garage = await announce(rig, "z2m_garage", "cover", {
            "command_topic": f"zigbee2mqtt/{ieee}/set", "device_class": "garage",
            "state_topic": f"zigbee2mqtt/{ieee}", "value_template": "{{ value_json.state }}"})
        await past_the_hold(rig, garage)
        mark = rig.watcher.mark()
        blind = await announce(rig, "kitchen_blind", "cover", {
            "command_topic": f"zigbee2mqtt/{ieee}/set/state", "device_class": "blind"})
        await past_the_hold(rig, blind)
        out = await ask(rig, blind, "open")
        assert out["status"] == "needs_confirmation", out
        await rig.barrier()
        assert rig.watcher.since(mark, lambda t: t.startswith(f"zigbee2mqtt/{ieee}/set")) == []


async def test_a_yes_to_the_garage_does_not_carry_over_to_what_its_config_became() -> None:
    """Re-announced onto the lock's topic between the question and the confirmed call,
    with a hold shorter than the token's life: the yes was for the garage door."""
    async with home_rig(default_devices(), tools={"new_device_hold": HOLD}) as rig:
        lock = rig.home.devices["front_door_lock"].config
        lock_topic = lock.get("command_topic", lock.get("cmd_t"))
        first = await ask(rig, GARAGE, "open")
        assert first["status"] == "needs_confirmation"
        rig.user.says(True)
        mark = rig.watcher.mark()
        await reannounce(rig, "garage_door", command_topic=lock_topic, payload_open="unlock_door",
                         set_position_topic=None, position_topic=None)
        await eventually(lambda: lock_topic in rig.service.inventory.get(GARAGE).command_topics)
        await past_the_hold(rig, GARAGE)
        out = await ask(rig, GARAGE, "open", confirmation_token=first["confirmation_token"])
        assert out["status"] in ("needs_confirmation", "failed"), out
        await rig.barrier()
        assert rig.watcher.since(mark, lambda t: t == lock_topic) == []

"""Home Assistant discovery: the inventory against real mosquitto and the virtual home.

Parsing (pure): tests/unit/test_home_discovery.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from daemon.config import MqttSettings
from daemon.home.inventory import (
    AvailabilityChanged,
    DeviceAdded,
    DeviceRemoved,
    Inventory,
    InventoryEvent,
)
from daemon.home.mqtt import MqttConnection
from simulator.broker import PrivateBroker
from simulator.home import VirtualHome, default_devices, extra_devices
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------ with mosquitto


def agent(broker: PrivateBroker, client_id: str = "agent") -> MqttConnection:
    return MqttConnection(
        MqttSettings(host=broker.host, port=broker.port, client_id=client_id),
        backoff_initial=0.05,
        backoff_max=0.5,
    )


@pytest.mark.timeout(30)
async def test_discovers_every_component_from_the_virtual_home(broker: PrivateBroker) -> None:
    devices = default_devices() + extra_devices()
    async with VirtualHome(broker.host, broker.port, devices), agent(broker) as conn:
        inv = Inventory()
        events: list[InventoryEvent] = []
        inv.add_listener(events.append)
        inv.attach(conn)
        await eventually(
            lambda: (
                len(inv.devices()) == len(devices)
                and all(inv.available(d.id) for d in inv.devices())
            )
        )
        kinds = {d.component for d in inv.devices()}
        assert kinds == {
            "light",
            "switch",
            "fan",
            "cover",
            "lock",
            "climate",
            "scene",
            "button",
            "sensor",
            "binary_sensor",
        }
        kitchen = inv.get("sim-kitchen_light")
        assert kitchen is not None and kitchen.area == "Kitchen"
        assert kitchen.command_topics == {
            "sim/kitchen_light/set",
            "sim/kitchen_light/brightness/set",
            "sim/kitchen_light/color_temp/set",
        }
        await eventually(lambda: inv.state("sim-living_room_temperature").get("value") == 21.5)
        await eventually(lambda: inv.state("sim-front_door_contact").get("state") == "off")
        await eventually(lambda: inv.state("sim-thermostat").get("temperature") == 20)
        added = [e.device.id for e in events if isinstance(e, DeviceAdded)]
        assert sorted(added) == sorted(d.id for d in inv.devices())
        assert inv.problems() == []


@pytest.mark.timeout(30)
async def test_removal_availability_and_bridge_will(broker: PrivateBroker) -> None:
    inv = Inventory()
    events: list[InventoryEvent] = []
    inv.add_listener(events.append)
    async with agent(broker) as conn:
        inv.attach(conn)
        async with VirtualHome(broker.host, broker.port) as home:
            await eventually(lambda: inv.available("sim-garage_door") is True)
            await home.set_online("sim-garage_door".removeprefix("sim-"), False)
            await eventually(lambda: inv.available("sim-garage_door") is False)
            assert AvailabilityChanged(inv.get("sim-garage_door"), False) in events  # type: ignore[arg-type]
            await home.remove("movie_night")
            await eventually(lambda: inv.get("sim-movie_night") is None)
            assert any(
                isinstance(e, DeviceRemoved) and e.device.id == "sim-movie_night" for e in events
            )
            assert inv.available("sim-kitchen_light") is True
        # The virtual home's connection said "offline" on its bridge topic: all unavailable.
        await eventually(lambda: inv.available("sim-kitchen_light") is False)
        assert inv.available("sim-thermostat") is False


@pytest.mark.timeout(30)
async def test_a_shared_topic_whose_payload_was_not_kept_is_asked_for_again(
    broker: PrivateBroker,
) -> None:
    """Two devices on one state topic, the second announced later: its retained state
    comes from the broker again when the inventory did not keep it (too big here)."""
    inv = Inventory(replay_item=10)
    async with agent(broker) as conn, agent(broker, "publisher") as pub:
        inv.attach(conn)
        await pub.publish("bridge/state", json.dumps({"temperature": 21.5, "pad": "x" * 50}),
                          retain=True)
        for name in ("a", "b"):
            config = {"stat_t": "bridge/state", "val_tpl": "{{ value_json.temperature }}"}
            await pub.publish(f"homeassistant/sensor/{name}/config", json.dumps(config),
                              retain=True)
            await eventually(lambda n=name: inv.state(f"sensor.{n}").get("value") == 21.5)
        assert inv.stats.replay_resubscribed == 1


@pytest.mark.timeout(30)
async def test_reannounce_when_home_assistant_status_goes_online(broker: PrivateBroker) -> None:
    async with (
        VirtualHome(broker.host, broker.port, retain_discovery=False) as home,
        agent(broker) as conn,
    ):
        inv = Inventory()
        subs = [conn.subscribe(f, lambda m: None) for f in inv.discovery_filters]
        inv.attach(conn)
        await conn.wait_subscribed(*subs, timeout=5)
        await asyncio.sleep(0.2)
        assert inv.devices() == []  # configs were not retained: nothing to see yet
        await conn.publish("homeassistant/status", "online", retain=False)
        await eventually(lambda: len(inv.devices()) == len(home.devices))
        assert home.announcements == 2


@pytest.mark.timeout(30)
async def test_changed_and_broken_configs(broker: PrivateBroker) -> None:
    inv = Inventory()
    events: list[InventoryEvent] = []
    inv.add_listener(events.append)
    async with agent(broker) as conn, agent(broker, "publisher") as pub:
        inv.attach(conn)
        topic = "homeassistant/switch/pump/config"
        await pub.publish(topic, json.dumps({"uniq_id": "pump", "cmd_t": "p/set"}), retain=True)
        await eventually(lambda: inv.get("pump") is not None)
        await pub.publish(topic, json.dumps({"uniq_id": "pump", "cmd_t": "p/set"}), retain=True)
        await pub.publish(topic, json.dumps({"uniq_id": "pump", "cmd_t": "p/set2"}), retain=True)
        await eventually(lambda: "p/set2" in inv.get("pump").command_topics)  # type: ignore[union-attr]
        assert inv.stats.discovery_unchanged == 1
        await pub.publish(topic, "{broken", retain=True)
        await eventually(lambda: len(inv.problems()) == 1)
        assert inv.get("pump") is not None  # a broken update keeps the last good config
        await pub.publish(topic, "", retain=True)
        await eventually(lambda: inv.get("pump") is None)
        assert inv.problems() == []
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["DeviceAdded", "DeviceUpdated", "DeviceRemoved"]


@pytest.mark.timeout(30)
async def test_sim_home_command_line(broker: PrivateBroker) -> None:
    from simulator.home import main

    assert main(["--help"]) == 0
    assert main(["--port", "0"]) == 2
    assert main(["--bogus"]) == 2
    assert main(["--offline", "front_door", "--port", str(broker.port)]) == 2  # no such id
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from simulator.home import main; sys.exit(main(sys.argv[1:]))",
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--latency",
        "0.01",
        "--offline",
        "garage_door",
        "--ignore",
        "sim-kitchen_light",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert b"10 devices" in line
        assert b"offline: garage_door, ignoring: sim-kitchen_light" in line
        async with agent(broker) as conn:
            inv = Inventory()
            inv.attach(conn)
            await eventually(
                lambda: len(inv.devices()) == 10
                and inv.available("sim-thermostat") is True
                and inv.state("sim-living_room_switch").get("state") == "off"
                and inv.state("sim-kitchen_light").get("state") == "off"
            )
            assert inv.available("sim-garage_door") is False
            await conn.publish("sim/kitchen_light/set", "ON")
            await conn.publish("sim/living_room_switch/set", "ON")  # answered: after the light
            await eventually(lambda: inv.state("sim-living_room_switch").get("state") == "on")
            assert inv.state("sim-kitchen_light")["state"] == "off"  # ignored
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0

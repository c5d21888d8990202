"""The model's device tools end to end: ToolRegistry + ToolDispatcher → HomeService →
real mosquitto → the virtual home, and back. No Live link: calls go in as the link
would hand them over, and every publish is checked from the broker's side.

Without a socket or a process: tests/unit/test_home_tools.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from google.genai import types

from daemon.home.model_tools import (
    CONTROL_DEVICE,
    GEMINI_SCHEMA_KEYWORDS,
    GET_DEVICE_STATE,
    LIST_DEVICES,
    schema_keywords,
)
from simulator.home import SimSwitch, VirtualDevice, default_devices
from tests.support.home import Rig, home_rig
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)


def output(answer: dict[str, Any]) -> dict[str, Any]:
    assert "output" in answer, answer
    out = answer["output"]
    assert isinstance(out, dict)
    return out


@pytest.mark.timeout(60)
async def test_schemas_name_devices_and_actions_within_gemini_subset() -> None:
    async with home_rig() as rig:
        assert {LIST_DEVICES, GET_DEVICE_STATE, CONTROL_DEVICE} <= set(rig.registry.names())
        control = rig.declaration(CONTROL_DEVICE)
        assert control is not None and control["blocking"] is True
        props = control["parameters"]["properties"]
        # Only devices with actions can be controlled; sensors can be read.
        assert "sim-kitchen_light" in props["device_id"]["enum"]
        assert "sim-living_room_temperature" not in props["device_id"]["enum"]
        assert "sim-living_room_temperature" in rig.enum(GET_DEVICE_STATE)
        assert {"turn_on", "set_brightness", "unlock", "set_temperature", "press"} <= set(
            props["action"]["enum"]
        )
        args = props["args"]["properties"]
        assert args["brightness"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": args["brightness"]["description"],
        }
        assert args["preset_mode"]["enum"] == ["auto", "sleep", "breeze"]
        assert args["rgb"]["minItems"] == args["rgb"]["maxItems"] == 3
        # The description names each device with its own actions and ranges.
        desc = control["description"]
        assert "- sim-kitchen_light: Kitchen light (Kitchen): turn_on, turn_off, " in desc
        assert "set_temperature(temperature 10..30 °C step 0.5)" in desc
        assert "sim-front_door_lock: Front door lock (Hallway) [needs confirmation]" in desc
        assert "sim-garage_door: Garage door (Garage) [needs confirmation]" in desc
        assert "ask the user out loud" in desc and "confirmation_token" in desc
        for decl in rig.registry.declarations():
            assert schema_keywords(decl["parameters"]) <= GEMINI_SCHEMA_KEYWORDS, decl["name"]
            # The SDK takes it as it is (this is what the Live link sends).
            fd = types.FunctionDeclaration(
                name=decl["name"],
                description=decl["description"],
                parameters_json_schema=decl["parameters"],
            )
            assert fd.parameters_json_schema == decl["parameters"]


# (device id, action, args, expected state fields, expected status)
ROUND_TRIPS: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    ("sim-kitchen_light", "turn_on", {}, {"state": "on"}, "done"),
    ("sim-kitchen_light", "set_brightness", {"brightness": 40}, {"brightness": 40}, "done"),
    ("sim-kitchen_light", "set_color_temp", {"kelvin": 4000}, {"color_temp": 4000}, "done"),
    ("sim-desk_lamp", "set_color", {"rgb": [255, 128, 0]}, {"rgb": [255, 128, 0]}, "done"),
    ("sim-living_room_switch", "turn_on", {}, {"state": "on"}, "done"),
    ("sim-bedroom_fan", "set_percentage", {"percentage": 70}, {"percentage": 70}, "done"),
    ("sim-bedroom_fan", "set_preset_mode", {"preset_mode": "sleep"}, {"preset_mode": "sleep"},
     "done"),
    ("sim-bedroom_blinds", "set_position", {"position": 35}, {"position": 35}, "done"),
    ("sim-thermostat", "set_temperature", {"temperature": 22.5}, {"temperature": 22.5}, "done"),
    ("sim-thermostat", "set_mode", {"mode": "cool"}, {"mode": "cool"}, "done"),
    ("sim-movie_night", "activate", {}, {}, "sent"),  # scenes report nothing back
    ("sim-doorbell_chime", "press", {}, {}, "sent"),
]


@pytest.mark.timeout(60)
async def test_every_component_through_the_tools() -> None:
    async with home_rig() as rig:
        assert rig.home is not None
        for device_id, action, args, want, status in ROUND_TRIPS:
            mark = rig.watcher.mark()
            call: dict[str, Any] = {"device_id": device_id, "action": action}
            if args:
                call["args"] = args
            out = output(await rig.call(CONTROL_DEVICE, call))
            assert out["status"] == status, (device_id, action, out)
            for key, value in want.items():
                assert out["state"][key] == value, (device_id, out)
            await rig.barrier()
            sent = rig.commands_since(mark)
            assert len(sent) == 1, (device_id, action, sent)  # published exactly once
            dev = rig.service.inventory.get(device_id)
            assert dev is not None and sent[0][0] in dev.command_topics
        sim = rig.home.devices
        assert sim["movie_night"].activations == 1  # type: ignore[attr-defined]
        assert sim["doorbell_chime"].presses == 1  # type: ignore[attr-defined]

        # Sensitive ones (lock, garage door) go through the two-call rule.
        for device_id, action, word in [
            ("sim-front_door_lock", "unlock", "unlocked"),
            ("sim-garage_door", "open", "opening"),
        ]:
            first = output(await rig.call(CONTROL_DEVICE, {"device_id": device_id,
                                                           "action": action}))
            assert first["status"] == "needs_confirmation"
            assert rig.user is not None
            rig.user.says(True)
            second = output(
                await rig.call(
                    CONTROL_DEVICE,
                    {"device_id": device_id, "action": action,
                     "confirmation_token": first["confirmation_token"]},
                )
            )
            assert second["status"] == "done" and second["state"]["state"] in (word, "open")

        # Reading: every kind, sensors included.
        temp = output(await rig.call(GET_DEVICE_STATE, {"device_id":
                                                         "sim-living_room_temperature"}))
        assert temp["state"] == {"value": 21.5, "unit": "°C"} and temp["available"] is True
        contact = output(await rig.call(GET_DEVICE_STATE, {"device_id":
                                                            "sim-front_door_contact"}))
        assert contact["state"] == {"state": "off"}
        lock = output(await rig.call(GET_DEVICE_STATE, {"device_id": "sim-front_door_lock"}))
        assert lock["state"]["state"] == "unlocked" and lock["needs_confirmation"] is True


@pytest.mark.timeout(60)
async def test_list_devices_by_area_kind_and_words() -> None:
    async with home_rig() as rig:
        hall = output(await rig.call(LIST_DEVICES, {"area": "hallway"}))
        assert {d["id"] for d in hall["devices"]} == {
            "sim-front_door_lock", "sim-thermostat", "sim-doorbell_chime",
            "sim-front_door_contact",
        }
        lock = next(d for d in hall["devices"] if d["id"] == "sim-front_door_lock")
        assert lock["needs_confirmation"] is True and lock["online"] is True
        assert lock["actions"] == ["lock", "unlock"]
        lights = output(await rig.call(LIST_DEVICES, {"kind": "light"}))
        assert {d["id"] for d in lights["devices"]} == {"sim-kitchen_light", "sim-desk_lamp"}
        lamp = output(await rig.call(LIST_DEVICES, {"query": "desk lamp"}))
        assert lamp["devices"][0]["id"] == "sim-desk_lamp"
        everything = output(await rig.call(LIST_DEVICES, {}))
        assert everything["count"] == 12 and "more" not in everything
        rig.service.tools.list_limit = 5
        capped = output(await rig.call(LIST_DEVICES, {}))
        assert len(capped["devices"]) == 5 and capped["more"] == 7


@pytest.mark.timeout(60)
async def test_invalid_arguments_and_unknown_devices_publish_nothing() -> None:
    async with home_rig() as rig:
        mark = rig.watcher.mark()
        bad: list[tuple[str, dict[str, Any], str]] = [
            (CONTROL_DEVICE, {"device_id": "sim-nope", "action": "turn_on"}, "is not one of"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light"}, "'action' is a required"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "explode"},
             "is not one of"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "unlock"},
             "has no action 'unlock'; allowed: turn_on, turn_off"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "set_brightness"},
             "set_brightness needs brightness"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "set_brightness",
                              "args": {"brightness": 101}}, "101 is greater than the maximum"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "set_color_temp",
                              "args": {"kelvin": 2100}}, "kelvin 2100 is out of range"),
            (CONTROL_DEVICE, {"device_id": "sim-thermostat", "action": "set_temperature",
                              "args": {"temperature": 21.3}}, "not a multiple of 0.5"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "turn_on",
                              "args": {"topic": "evil/topic"}}, "Additional properties"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "turn_on",
                              "topic": "x", "payload": "y"}, "Additional properties"),
            (CONTROL_DEVICE, {"device_id": "sim-kitchen_light", "action": "turn_on",
                              "args": {"brightness": 50}}, "turn_on does not take 'brightness'"),
            (CONTROL_DEVICE, {"device_id": "sim-bedroom_fan", "action": "set_preset_mode",
                              "args": {"preset_mode": "turbo"}}, "is not one of"),
            (CONTROL_DEVICE, {"device_id": "sim-desk_lamp", "action": "set_color",
                              "args": {"rgb": [1, 2]}}, "is too short"),
            (GET_DEVICE_STATE, {"device_id": "sim-ghost"}, "is not one of"),
            (LIST_DEVICES, {"kind": "toaster"}, "is not one of"),
            ("no_such_tool", {}, "unknown tool"),
        ]
        for name, args, fragment in bad:
            answer = await rig.call(name, args)
            assert "error" in answer, (args, answer)
            assert fragment in answer["error"], (args, answer["error"])
        await rig.barrier()
        assert rig.commands_since(mark) == []
        assert rig.metrics.value("edge_tool_calls_total", tool=CONTROL_DEVICE,
                                 outcome="invalid") == 8
        assert rig.metrics.value("edge_tool_calls_total", tool=CONTROL_DEVICE,
                                 outcome="error") == 5


@pytest.mark.timeout(60)
async def test_schema_follows_the_inventory_debounced() -> None:
    async with home_rig() as rig:
        assert rig.home is not None
        fired: list[int] = []
        rig.registry.add_listener(lambda: fired.append(1))
        refreshes = rig.service.tools.stats.refreshes

        # A device appears: announced on the broker like any Zigbee2MQTT device.
        porch = SimSwitch("porch_switch", "Porch switch", "Porch")
        await rig.watcher.publish(porch.availability_topic, "online", retain=True)
        await rig.watcher.publish(
            porch.discovery_topic("homeassistant"), json.dumps(porch.config), retain=True
        )
        await eventually(lambda: "sim-porch_switch" in rig.enum(CONTROL_DEVICE), 3)
        assert fired and rig.service.tools.stats.refreshes == refreshes + 1
        control, listing = rig.declaration(CONTROL_DEVICE), rig.declaration(LIST_DEVICES)
        assert control is not None and listing is not None
        assert "sim-porch_switch: Porch switch (Porch)" in control["description"]
        assert "Porch" in listing["description"]

        # A device disappears (empty retained config).
        await rig.home.remove("movie_night")
        await eventually(lambda: rig.service.inventory.get("sim-movie_night") is None, 3)
        # Before the debounce ran the old schema still names it: the handler refuses it.
        mark = rig.watcher.mark()
        early = await rig.call(CONTROL_DEVICE, {"device_id": "sim-movie_night",
                                                "action": "activate"})
        assert "error" in early and "sim-movie_night" in early["error"]
        await eventually(lambda: "sim-movie_night" not in rig.enum(CONTROL_DEVICE), 3)
        late = await rig.call(CONTROL_DEVICE, {"device_id": "sim-movie_night",
                                               "action": "activate"})
        assert "error" in late and "is not one of" in late["error"]
        await rig.barrier()
        assert rig.commands_since(mark) == []
        assert rig.home.devices["movie_night"].received == []

        # A burst of 20 announcements is one refresh, one context update.
        before = rig.service.tools.stats.refreshes
        fired.clear()
        for i in range(20):
            sw = SimSwitch(f"burst_{i}", f"Burst {i}", "Attic")
            await rig.watcher.publish(
                sw.discovery_topic("homeassistant"), json.dumps(sw.config), retain=True
            )
        await eventually(lambda: "sim-burst_19" in rig.enum(CONTROL_DEVICE), 5)
        await asyncio.sleep(0.7)  # longer than the debounce: nothing else is coming
        assert rig.service.tools.stats.refreshes == before + 1
        assert len(fired) == 3  # each tool once (list_devices names the new area)
        assert rig.metrics.value("edge_home_tool_refreshes_total") >= 3


@pytest.mark.timeout(60)
async def test_tools_appear_with_the_first_device_and_go_with_the_last() -> None:
    async with home_rig(with_home=False) as rig:
        assert rig.registry.names() == [LIST_DEVICES]
        empty = output(await rig.call(LIST_DEVICES, {}))
        assert empty == {"count": 0, "devices": []}
        sw = SimSwitch("lonely", "Lonely switch", "Cellar")
        await rig.watcher.publish(sw.discovery_topic("homeassistant"), json.dumps(sw.config),
                                  retain=True)
        await eventually(lambda: CONTROL_DEVICE in rig.registry.names(), 3)
        assert rig.enum(CONTROL_DEVICE) == ["sim-lonely"]
        await rig.watcher.publish(sw.discovery_topic("homeassistant"), "", retain=True)
        await eventually(lambda: rig.registry.names() == [LIST_DEVICES], 3)


@pytest.mark.timeout(60)
async def test_declared_devices_are_tools_too() -> None:
    declared = [
        {"component": "switch", "id": "garden_pump", "name": "Garden pump", "area": "Garden",
         "command_topic": "garden/pump/set"},
    ]
    async with home_rig(mqtt={"devices": declared}) as rig:
        assert "garden_pump" in rig.enum(CONTROL_DEVICE)
        mark = rig.watcher.mark()
        out = output(await rig.call(CONTROL_DEVICE, {"device_id": "garden_pump",
                                                     "action": "turn_on"}))
        assert out["status"] == "sent"  # no state topic: nothing can confirm it
        await rig.barrier()
        assert [(m.topic, m.text(), m.qos, m.retain) for m in rig.watcher.since(mark)] == [
            ("garden/pump/set", "ON", 1, False)
        ]


async def confirm_flow(rig: Rig) -> None:
    lock = {"device_id": "sim-front_door_lock", "action": "unlock"}
    garage = {"device_id": "sim-garage_door", "action": "open"}
    mark = rig.watcher.mark()

    async def refused(args: dict[str, Any]) -> dict[str, Any]:
        out = output(await rig.call(CONTROL_DEVICE, args))
        assert out["status"] == "needs_confirmation", (args, out)
        assert "Nothing was done" in out["message"]
        return out

    await refused({**lock, "confirmation_token": "zzzzzz"})  # never issued
    t1 = (await refused(lock))["confirmation_token"]
    await refused({**garage, "confirmation_token": t1})  # issued for another device
    await refused({**lock, "confirmation_token": t1})  # a refused attempt used it up
    t2 = (await refused(lock))["confirmation_token"]
    await refused({"device_id": "sim-front_door_lock", "action": "lock",
                   "confirmation_token": t2})  # issued for another action
    t3 = (await refused(lock))["confirmation_token"]
    assert rig.user is not None
    rig.user.says(True)
    await asyncio.sleep(rig.settings.tools.confirm_ttl + 0.1)
    await refused({**lock, "confirmation_token": t3})  # confirmed, but expired
    await rig.barrier()
    assert rig.commands_since(mark) == []
    assert rig.service.inventory.state("sim-front_door_lock")["state"] == "locked"

    t4 = (await refused(lock))["confirmation_token"]
    early = await refused({**lock, "confirmation_token": t4})  # the user has not answered
    assert early["confirmation_token"] == t4 and "not confirmed yet" in early["message"]
    rig.user.says(True)
    done = output(await rig.call(CONTROL_DEVICE, {**lock, "confirmation_token": t4}))
    assert done["status"] == "done" and done["state"]["state"] == "unlocked"
    await refused({**lock, "confirmation_token": t4})  # reused after it worked
    await rig.barrier()
    assert rig.commands_since(mark) == [("sim/front_door_lock/set", "unlock_door")]
    stats = rig.service.gate.book.stats
    assert (stats.unknown, stats.mismatched, stats.redeemed, stats.unconfirmed) == (3, 2, 1, 1)
    assert stats.expired >= 1  # t3, and the fresh tokens the refusals issued meanwhile


@pytest.mark.timeout(60)
async def test_confirmation_is_single_use_short_lived_and_bound() -> None:
    async with home_rig(tools={"confirm_ttl": 1.0}) as rig:
        await confirm_flow(rig)
        rig.service.sync_metrics()
        assert rig.metrics.value("edge_home_confirmations_total", result="redeemed") == 1
        assert rig.metrics.value("edge_home_confirmations_total", result="expired") >= 1


@pytest.mark.timeout(60)
async def test_without_an_agent_nothing_sensitive_ever_acts() -> None:
    """HomeService on its own (bench, tests) has no one to hear a yes: the safe default."""
    async with home_rig(default_devices(), user=False) as rig:
        lock = {"device_id": "sim-front_door_lock", "action": "unlock"}
        mark = rig.watcher.mark()
        refused = output(await rig.call(CONTROL_DEVICE, lock))
        assert refused["status"] == "failed" and "confirm_pin" in refused["message"]
        garage = {"device_id": "sim-garage_door", "action": "open"}
        token = output(await rig.call(CONTROL_DEVICE, garage))["confirmation_token"]
        for _ in range(3):
            out = output(await rig.call(CONTROL_DEVICE, {**garage, "confirmation_token": token}))
            assert out["status"] == "needs_confirmation"
            assert out["confirmation_token"] == token
        light = output(await rig.call(CONTROL_DEVICE, {"device_id": "sim-kitchen_light",
                                                       "action": "turn_on"}))
        assert light["status"] == "done"  # ordinary devices are not affected
        await rig.barrier()
        assert rig.commands_since(mark) == [("sim/kitchen_light/set", "ON")]


class Plug(VirtualDevice):
    """A plug without availability topics: the daemon takes it as always there."""

    def __init__(self, object_id: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "switch",
            object_id,
            {"name": object_id, "uniq_id": f"sim-{object_id}", "cmd_t": f"{base}/set",
             "stat_t": f"{base}/state"},
            state={"state": "OFF"},
        )

    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    def on_command(self, topic: str, payload: str) -> list[tuple[float, str, str]]:
        if payload not in ("ON", "OFF"):
            return []
        self.state["state"] = payload
        return self._now()


async def reconnected(rig: Rig) -> None:
    conn, home = rig.service.conn, rig.home
    assert conn is not None and home is not None
    await eventually(
        lambda: conn.connected
        and home.conn.connected
        and bool(rig.service.inventory.available("sim-kitchen_light")),
        10,
    )


@pytest.mark.timeout(60)
async def test_broker_restart_mid_conversation_no_duplicates() -> None:
    plug, spare = Plug("plug"), Plug("spare_plug")
    async with home_rig([*default_devices(), plug, spare]) as rig:
        assert rig.home is not None
        light = rig.home.devices["kitchen_light"]
        on = {"device_id": "sim-kitchen_light", "action": "turn_on"}
        off = {"device_id": "sim-kitchen_light", "action": "turn_off"}
        assert output(await rig.call(CONTROL_DEVICE, on))["status"] == "done"

        # The broker restarts between two turns of the conversation.
        await rig.broker.restart()
        await reconnected(rig)
        assert output(await rig.call(CONTROL_DEVICE, off))["status"] == "done"
        assert [p for _, p in light.received] == ["ON", "OFF"]

        # And in the middle of a call: it waits for the connection, then sends once.
        await rig.broker.stop()
        pending = rig.submit(CONTROL_DEVICE, {"device_id": "sim-plug", "action": "turn_on"})
        await asyncio.sleep(0.3)
        assert pending not in rig.outcomes, rig.answers.get(pending)
        await rig.broker.start()
        result = output(await rig.answer(pending))
        assert result["status"] in ("done", "sent"), result

        # A call cancelled while nothing could be sent publishes nothing, ever.
        await rig.broker.stop()
        cancelled = rig.submit(CONTROL_DEVICE, {"device_id": "sim-spare_plug",
                                                "action": "turn_on"})
        await asyncio.sleep(0.2)
        rig.dispatcher.cancel([cancelled])
        await eventually(lambda: rig.outcomes.get(cancelled) == "cancelled")
        assert cancelled not in rig.answers  # the model cancelled it: no answer goes back
        await rig.broker.start()
        await reconnected(rig)
        await asyncio.sleep(0.5)  # anything queued anywhere would have arrived by now
        assert plug.received == [("sim/plug/set", "ON")]
        assert spare.received == []
        assert [p for _, p in light.received] == ["ON", "OFF"]
        assert rig.service.conn is not None and rig.service.conn.stats.connects >= 3

"""Commands: plan, publish once, confirm from state — against real mosquitto and the sim.

Without a socket or a process: tests/unit/test_home_commands.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from daemon.config import MqttSettings
from daemon.home.commands import Command, CommandError, plan_command
from daemon.home.confirm import ConfirmationBook, ConfirmationGate
from daemon.home.device import Device
from daemon.home.discovery import Discovered
from daemon.home.executor import CommandExecutor, HomeControl
from daemon.home.inventory import Inventory, StateReported
from daemon.home.mqtt import MqttConnection
from daemon.home.sensitivity import SensitivityPolicy
from simulator.broker import PrivateBroker
from simulator.home import SimButton, SimScene, VirtualHome, default_devices, extra_devices
from tests.support.home import FakeUser
from tests.support.mqtt import SpyPublisher
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(30)


@dataclass
class Rig:
    broker: PrivateBroker
    home: VirtualHome
    conn: MqttConnection
    inventory: Inventory
    spy: SpyPublisher
    executor: CommandExecutor
    control: HomeControl
    user: FakeUser

    def device(self, device_id: str) -> Device:
        dev = self.inventory.get(device_id)
        assert dev is not None, device_id
        return dev

    async def barrier(self) -> None:
        """Let in-flight commands reach the home: a round trip through the broker."""
        got: list[str] = []
        sub = self.conn.subscribe("test/barrier", lambda m: got.append(m.text()))
        await self.conn.wait_subscribed(sub, timeout=5)
        await self.conn.publish("test/barrier", "x")
        await eventually(lambda: bool(got))
        sub.cancel()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    devices = default_devices() + extra_devices()
    async with PrivateBroker() as broker, VirtualHome(broker.host, broker.port, devices) as home:
        conn = MqttConnection(
            MqttSettings(host=broker.host, port=broker.port, client_id="agent"),
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        async with conn:
            inventory = Inventory()
            inventory.attach(conn)
            await eventually(
                lambda: (
                    len(inventory.devices()) == len(devices)
                    and all(inventory.available(d.id) for d in inventory.devices())
                    and bool(inventory.state("sim-kitchen_light"))
                )
            )
            spy = SpyPublisher(conn)
            executor = CommandExecutor(spy, inventory, deadline=3.0)
            user = FakeUser()
            gate = ConfirmationGate(
                ConfirmationBook(), SensitivityPolicy(), user.tracker,
                confirm_with={"lock": frozenset({"tap", "pin"})}, taps_possible=lambda: True,
            )
            control = HomeControl(inventory, executor, gate)
            yield Rig(broker, home, conn, inventory, spy, executor, control, user)


ROUND_TRIPS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("sim-kitchen_light", "turn_on", {}, {"state": "on"}),
    ("sim-kitchen_light", "set_brightness", {"brightness": 40}, {"brightness": 40, "state": "on"}),
    ("sim-kitchen_light", "set_color_temp", {"kelvin": 4000}, {"color_temp": 4000}),
    ("sim-kitchen_light", "turn_off", {}, {"state": "off"}),
    ("sim-desk_lamp", "set_brightness", {"brightness": 50}, {"brightness": 50}),
    ("sim-desk_lamp", "set_color", {"rgb": [255, 128, 0]}, {"rgb": (255, 128, 0)}),
    ("sim-desk_lamp", "set_color_temp", {"kelvin": 2500}, {"color_temp": 2500}),
    ("sim-living_room_switch", "turn_on", {}, {"state": "on"}),
    ("sim-bedroom_fan", "set_percentage", {"percentage": 70}, {"percentage": 70}),
    ("sim-bedroom_fan", "set_preset_mode", {"preset_mode": "breeze"}, {"preset_mode": "breeze"}),
    ("sim-bedroom_fan", "set_oscillation", {"oscillating": "on"}, {"oscillating": True}),
    ("sim-bedroom_fan", "turn_off", {}, {"state": "off"}),
    ("sim-garage_door", "open", {}, {"state": "opening"}),
    ("sim-bedroom_blinds", "set_position", {"position": 35}, {"position": 35}),
    ("sim-bedroom_blinds", "close", {}, {"state": "closed", "position": 0}),
    ("sim-front_door_lock", "unlock", {}, {"state": "unlocked"}),
    ("sim-thermostat", "set_mode", {"mode": "cool"}, {"mode": "cool"}),
    ("sim-thermostat", "set_temperature", {"temperature": 22.5}, {"temperature": 22.5}),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("device_id", "action", "args", "want"), ROUND_TRIPS)
async def test_round_trip_is_confirmed(
    rig: Rig, device_id: str, action: str, args: dict[str, Any], want: dict[str, Any]
) -> None:
    plan = plan_command(rig.device(device_id), action, args)
    assert isinstance(plan, Command), plan
    assert (plan.qos, plan.retain) == (1, False)
    result = await rig.executor.execute(plan)
    assert result.status == "done", str(result)
    assert result.published
    for key, value in want.items():
        got = result.state[key]
        if isinstance(value, int) and not isinstance(value, bool):
            assert isinstance(got, int | float) and abs(got - value) <= 1, (key, got)
        else:
            assert got == value, (key, got)
    assert rig.spy.calls == [(plan.topic, plan.payload)]
    sim = rig.home.devices[device_id.removeprefix("sim-")]
    assert sim.received == [(plan.topic, plan.payload)]


@pytest.mark.timeout(30)
async def test_scene_and_button_are_sent_without_state(rig: Rig) -> None:
    for device_id, action in (("sim-movie_night", "activate"), ("sim-doorbell_chime", "press")):
        plan = plan_command(rig.device(device_id), action, {})
        assert isinstance(plan, Command)
        result = await rig.executor.execute(plan)
        assert result.status == "sent" and "does not report" in result.detail
    await rig.barrier()
    scene = rig.home.devices["movie_night"]
    button = rig.home.devices["doorbell_chime"]
    assert isinstance(scene, SimScene) and scene.activations == 1
    assert isinstance(button, SimButton) and button.presses == 1


@pytest.mark.timeout(30)
async def test_sensors_have_no_actions(rig: Rig) -> None:
    for device_id in ("sim-living_room_temperature", "sim-front_door_contact"):
        err = plan_command(rig.device(device_id), "turn_on", {})
        assert isinstance(err, CommandError) and "only reports" in err.message
    assert rig.inventory.state("sim-living_room_temperature") == {"value": 21.5, "unit": "°C"}


@pytest.mark.timeout(30)
async def test_unavailable_device_fails_without_publishing(rig: Rig) -> None:
    await rig.home.set_online("kitchen_light", False)
    await eventually(lambda: rig.inventory.available("sim-kitchen_light") is False)
    plan = plan_command(rig.device("sim-kitchen_light"), "turn_on", {})
    assert isinstance(plan, Command)
    result = await rig.executor.execute(plan)
    assert result.status == "failed" and "offline" in result.detail and not result.published
    assert rig.spy.calls == []
    await rig.barrier()
    assert rig.home.received == []


@pytest.mark.timeout(30)
async def test_device_that_ignores_commands_is_sent_but_not_confirmed(rig: Rig) -> None:
    rig.home.set_ignore_commands("living_room_switch")
    plan = plan_command(rig.device("sim-living_room_switch"), "turn_on", {})
    assert isinstance(plan, Command)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await rig.executor.execute(plan, deadline=0.5)
    assert 0.45 <= loop.time() - started < 2.0
    assert result.status == "sent", str(result)
    assert str(result).startswith("sent but not confirmed")
    assert "state in on" in result.detail
    assert rig.home.received == [(plan.topic, plan.payload)]  # it got there, exactly once


@pytest.mark.timeout(30)
async def test_retained_state_after_a_broker_restart_is_no_confirmation(rig: Rig) -> None:
    """The broker re-sends the retained "OFF" on resubscribe: it updates the state, but a
    device that ignored "turn off" is not reported done because of it."""
    rig.home.set_ignore_commands("living_room_switch")
    assert rig.inventory.state("sim-living_room_switch")["state"] == "off"
    plan = plan_command(rig.device("sim-living_room_switch"), "turn_off", {})
    assert isinstance(plan, Command)
    reports: list[bool] = []
    remove = rig.inventory.add_listener(
        lambda e: reports.append(e.retained)
        if isinstance(e, StateReported) and e.device.id == "sim-living_room_switch"
        else None
    )
    connects = rig.conn.stats.connects
    task = asyncio.create_task(rig.executor.execute(plan, deadline=4.0))
    await eventually(lambda: rig.home.received == [(plan.topic, plan.payload)])
    await rig.broker.restart()
    await eventually(lambda: rig.conn.stats.connects > connects and reports == [True], 3.5)
    result = await task
    remove()
    assert result.status == "sent", str(result)  # not "done"
    assert rig.inventory.state("sim-living_room_switch")["state"] == "off"


@pytest.mark.timeout(30)
async def test_slow_device_confirms_within_deadline(rig: Rig) -> None:
    rig.home.devices["living_room_switch"].latency = 0.3
    plan = plan_command(rig.device("sim-living_room_switch"), "turn_on", {})
    assert isinstance(plan, Command)
    result = await rig.executor.execute(plan, deadline=2.0)
    assert result.status == "done"


@pytest.mark.timeout(30)
async def test_invalid_requests_are_clear_errors_and_publish_nothing(rig: Rig) -> None:
    light = rig.device("sim-kitchen_light")
    err = plan_command(light, "set_brightness", {"brightness": 150})
    assert isinstance(err, CommandError) and err.code == "out_of_range"
    assert "1..100" in err.message
    err = plan_command(light, "set_color_temp", {"kelvin": 9000})
    assert isinstance(err, CommandError) and "2203..6535" in err.message
    err = plan_command(light, "explode", {})
    assert isinstance(err, CommandError) and err.code == "unknown_action"
    assert "turn_on" in err.message and "set_color_temp" in err.message
    err = plan_command(light, "set_brightness", {})
    assert isinstance(err, CommandError) and err.code == "missing_argument"
    err = plan_command(light, "turn_on", {"topic": "evil/topic"})
    assert isinstance(err, CommandError) and err.code == "unexpected_argument"
    err = plan_command(light, "set_brightness", {"brightness": "50"})
    assert isinstance(err, CommandError) and err.code == "bad_argument"
    err = plan_command(light, "set_brightness", {"brightness": True})
    assert isinstance(err, CommandError)
    err = plan_command(rig.device("sim-thermostat"), "set_mode", {"mode": "turbo"})
    assert isinstance(err, CommandError) and "off, heat, cool, auto" in err.message
    err = plan_command(rig.device("sim-thermostat"), "set_temperature", {"temperature": 21.3})
    assert isinstance(err, CommandError) and "multiple of 0.5" in err.message
    err = plan_command(rig.device("sim-thermostat"), "set_temperature", {"temperature": 35})
    assert isinstance(err, CommandError) and "10..30" in err.message
    err = plan_command(rig.device("sim-bedroom_fan"), "set_preset_mode", {"preset_mode": "x"})
    assert isinstance(err, CommandError) and "auto, sleep, breeze" in err.message

    outcome = await rig.control.act("kitchen light", "set_brightness", {"brightness": 0})
    assert outcome.status == "error" and "1..100" in outcome.message
    outcome = await rig.control.act("toaster", "turn_on")
    assert outcome.status == "error" and "no device matches" in outcome.message
    assert rig.spy.calls == []
    await rig.barrier()
    assert rig.home.received == []


@pytest.mark.timeout(30)
async def test_executor_refuses_unknown_devices_and_foreign_topics(rig: Rig) -> None:
    ghost = Command("sim-ghost", "turn_on", {}, "sim/kitchen_light/set", "ON")
    result = await rig.executor.execute(ghost)
    assert result.status == "failed" and "unknown device" in result.detail
    forged = Command("sim-kitchen_light", "turn_on", {}, "sim/front_door_lock/set", "unlock_door")
    result = await rig.executor.execute(forged)
    assert result.status == "failed" and not result.published
    assert rig.spy.calls == []


@pytest.mark.timeout(30)
async def test_sensitive_device_needs_a_confirmed_second_call(rig: Rig) -> None:
    first = await rig.control.act("front door lock", "unlock")
    assert first.status == "needs_confirmation" and first.confirmation_token
    assert rig.spy.calls == []
    wrong = await rig.control.act("front door lock", "lock", confirmation=first.confirmation_token)
    assert wrong.status == "needs_confirmation" and "Nothing was done" in wrong.message
    assert rig.spy.calls == []
    again = await rig.control.act("front door lock", "unlock")
    assert again.confirmation_token
    early = await rig.control.act("front door lock", "unlock", confirmation=again.confirmation_token)
    assert early.status == "needs_confirmation" and "not confirmed yet" in early.message
    assert early.confirmation_token == again.confirmation_token and rig.spy.calls == []
    rig.user.says(True)
    done = await rig.control.act("front door lock", "unlock", confirmation=again.confirmation_token)
    assert done.status == "done", done.message
    assert rig.inventory.state("sim-front_door_lock")["state"] == "unlocked"
    reused = await rig.control.act(
        "front door lock", "unlock", confirmation=again.confirmation_token
    )
    assert reused.status == "needs_confirmation"
    assert len(rig.spy.calls) == 1
    garage = await rig.control.act("garage door", "open")
    assert garage.status == "needs_confirmation"
    light = await rig.control.act("kitchen light", "turn_on")
    assert light.status == "done" and light.as_dict()["state"]["state"] == "on"


@pytest.mark.timeout(30)
async def test_cancel_before_publishing_publishes_nothing(rig: Rig) -> None:
    plan = plan_command(rig.device("sim-kitchen_light"), "turn_on", {})
    assert isinstance(plan, Command)
    # SIGKILL: a broker that stops cleanly first delivers the home's last will, and
    # the executor would (rightly) refuse an offline device without waiting.
    await rig.broker.kill()
    await eventually(lambda: not rig.conn.connected)
    task = asyncio.create_task(rig.executor.execute(plan, deadline=10))
    await asyncio.sleep(0.2)  # waiting for a connection, nothing handed over
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rig.broker.start()
    assert await rig.conn.wait_connected(10)
    await eventually(lambda: rig.home.conn.connected)
    await rig.barrier()
    await asyncio.sleep(0.2)
    assert rig.home.received == []
    # And with no broker for the whole deadline: a clear failure, nothing sent later.
    await rig.broker.kill()
    await eventually(lambda: not rig.conn.connected)
    result = await rig.executor.execute(plan, deadline=0.3)
    assert result.status == "failed" and "nothing was sent" in result.detail
    await rig.broker.start()
    assert await rig.conn.wait_connected(10)
    await eventually(lambda: rig.home.conn.connected)
    await rig.barrier()
    await asyncio.sleep(0.2)
    assert rig.home.received == []


@pytest.mark.timeout(30)
async def test_json_light_payloads(rig: Rig) -> None:
    lamp = rig.device("sim-desk_lamp")
    plan = plan_command(lamp, "set_brightness", {"brightness": 100})
    assert isinstance(plan, Command)
    assert json.loads(plan.payload) == {"state": "ON", "brightness": 255}
    plan = plan_command(lamp, "set_color", {"rgb": "#00ff80"})
    assert isinstance(plan, Command)
    assert json.loads(plan.payload) == {"state": "ON", "color": {"r": 0, "g": 255, "b": 128}}
    declared = Inventory()
    errors = declared.load_declared(
        [
            {
                "component": "light",
                "name": "Hue",
                "schema": "json",
                "cmd_t": "h/set",
                "sup_clrm": ["xy"],
            }
        ]
    )
    assert errors == []
    hue = declared.get("hue")
    assert hue is not None
    plan = plan_command(hue, "set_color", {"rgb": [255, 0, 0]})
    assert isinstance(plan, Command)
    xy = json.loads(plan.payload)["color"]
    assert xy == pytest.approx({"x": 0.64, "y": 0.33}, abs=1e-3)  # sRGB red primary
    assert isinstance(
        declared.handle_discovery("homeassistant/light/x/config", '{"cmd_t": "a"}'), Discovered
    )

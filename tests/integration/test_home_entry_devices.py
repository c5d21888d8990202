"""Alarm panels, a lock that opens, per-device QoS and debounced commands (issue 12).

Real mosquitto and the virtual home: the executor publishes the planned command and
the simulated device answers with its own state machine. Confirmation policy is
not tested here (daemon.home.confirm and its tests own it): these tests drive the
executor the gate would call after a confirmed yes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from daemon.config import MqttSettings
from daemon.home.commands import Command, CommandError, plan_command
from daemon.home.device import Device
from daemon.home.executor import CommandExecutor
from daemon.home.inventory import Inventory
from simulator.broker import PrivateBroker
from simulator.home import (
    SimAlarmPanel,
    SimButton,
    SimLock,
    SimScene,
    SimSwitch,
    VirtualDevice,
    VirtualHome,
    security_devices,
)
from tests.support.mqtt import SpyPublisher, Watcher, fast_connection
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(30)


def devices() -> list[VirtualDevice]:
    chime = SimButton("chime", "Chime", "Hallway")
    chime.config["qos"] = 2  # a press must arrive exactly once
    mood = SimScene("mood", "Mood", "Living room")
    mood.config["qos"] = 0
    return [*security_devices(), chime, mood, SimSwitch("plug", "Plug", "Office")]


@dataclass
class Rig:
    home: VirtualHome
    inventory: Inventory
    executor: CommandExecutor
    spy: SpyPublisher
    watcher: Watcher

    def device(self, device_id: str) -> Device:
        dev = self.inventory.get(device_id)
        assert dev is not None, device_id
        return dev

    def plan(self, device_id: str, action: str) -> Command:
        plan = plan_command(self.device(device_id), action, {})
        assert isinstance(plan, Command), plan
        return plan


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    devs = devices()
    async with (
        PrivateBroker() as broker,
        VirtualHome(broker.host, broker.port, devs) as home,
        Watcher(broker) as watcher,
        fast_connection(MqttSettings(host=broker.host, port=broker.port,
                                     client_id="agent")) as conn,
    ):
        inventory = Inventory()
        inventory.attach(conn)
        await eventually(lambda: len(inventory.devices()) == len(devs)
                         and all(inventory.available(d.id) for d in inventory.devices())
                         and bool(inventory.state("sim-house_alarm")))
        spy = SpyPublisher(conn)
        executor = CommandExecutor(spy, inventory, deadline=3.0, debounce=0.5)
        yield Rig(home, inventory, executor, spy, watcher)


async def test_alarm_panel_arms_and_disarms(rig: Rig) -> None:
    panel = rig.device("sim-house_alarm")
    assert panel.component == "alarm_control_panel"
    assert [a.name for a in panel.capabilities] == ["arm_home", "arm_away", "arm_night",
                                                    "disarm"]
    assert rig.inventory.state(panel.id) == {"state": "disarmed"}
    for action, payload, state in (("arm_night", "ARM_NIGHT", "armed_night"),
                                   ("disarm", "DISARM", "disarmed"),
                                   ("arm_away", "ARM_AWAY", "armed_away")):
        plan = rig.plan(panel.id, action)
        assert (plan.topic, plan.payload) == ("sim/house_alarm/set", payload)
        result = await rig.executor.execute(plan)
        assert result.status == "done", str(result)
        await eventually(lambda s=state: rig.inventory.state(panel.id) == {"state": s})
    err = plan_command(panel, "arm_vacation", {})  # not among its supported_features
    assert isinstance(err, CommandError) and err.code == "unknown_action"
    sim = rig.home.devices["house_alarm"]
    assert isinstance(sim, SimAlarmPanel) and sim.refused == 0


async def test_a_panel_that_needs_the_users_code_is_offered_without_those_actions(
    rig: Rig,
) -> None:
    shed = rig.device("sim-shed_alarm")
    names = [a.name for a in shed.capabilities]
    assert "disarm" not in names and names == ["arm_home", "arm_away", "arm_night"]
    assert "needs the user's code" in shed.describe()["note"]
    err = plan_command(shed, "disarm", {})
    assert isinstance(err, CommandError) and err.code == "unknown_action"
    result = await rig.executor.execute(rig.plan(shed.id, "arm_home"))
    assert result.status == "done", str(result)  # "arming" confirms it
    await eventually(lambda: rig.inventory.state(shed.id) == {"state": "armed_home"})
    sim = rig.home.devices["shed_alarm"]
    assert isinstance(sim, SimAlarmPanel) and sim.refused == 0


async def test_a_lock_opens_the_door_end_to_end(rig: Rig) -> None:
    lock = rig.device("sim-back_door_lock")
    assert [a.name for a in lock.capabilities] == ["lock", "unlock", "open"]
    plan = rig.plan(lock.id, "open")
    assert (plan.topic, plan.payload) == ("sim/back_door_lock/set", "open_door")
    result = await rig.executor.execute(plan)
    assert result.status == "done", str(result)
    assert result.state["state"] in ("open", "unlocked")
    sim = rig.home.devices["back_door_lock"]
    assert isinstance(sim, SimLock) and sim.openings == 1
    await eventually(lambda: rig.inventory.state(lock.id) == {"state": "unlocked"})


async def test_commands_go_at_the_qos_the_device_asks_for(rig: Rig) -> None:
    mark = rig.watcher.mark()
    for device_id, action, qos in (("sim-chime", "press", 2), ("sim-mood", "activate", 0),
                                   ("sim-plug", "turn_on", 1)):
        plan = rig.plan(device_id, action)
        assert plan.qos == qos
        result = await rig.executor.execute(plan)
        assert result.published, str(result)
    await rig.watcher.barrier()
    seen = {m.topic: m.qos for m in rig.watcher.since(mark) if not m.topic.endswith("state")}
    assert seen == {"sim/chime/press": 2, "sim/mood/activate": 0, "sim/plug/set": 1}


async def test_the_same_command_twice_in_a_moment_is_published_once(rig: Rig) -> None:
    chime = rig.plan("sim-chime", "press")
    first, second = await asyncio.gather(rig.executor.execute(chime),
                                         rig.executor.execute(chime))
    third = await rig.executor.execute(chime)
    assert first.published and not second.published and not third.published
    assert second.status == third.status == first.status
    assert "not sent again" in third.detail
    assert rig.executor.stats.debounced == 2
    await asyncio.sleep(0.6)  # the window has passed: a new press is a new press
    assert (await rig.executor.execute(chime)).published
    # Only the same command right after: on, off, on are three commands.
    on, off = rig.plan("sim-plug", "turn_on"), rig.plan("sim-plug", "turn_off")
    for plan in (on, off, on):
        assert (await rig.executor.execute(plan)).published
    await rig.watcher.barrier()
    sim = rig.home.devices["chime"]
    assert isinstance(sim, SimButton)
    await eventually(lambda: sim.presses == 2)
    assert [p for _t, p in rig.home.devices["plug"].received] == ["ON", "OFF", "ON"]
    assert rig.spy.calls.count(("sim/chime/press", "PRESS")) == 2

"""A state record damaged while the daemon was down (truncated on a failing SD card)
fails closed, end to end: the real home service on a private mosquitto with the
virtual home, and the real BLE stack on the virtual radio.

- `sensitive_devices.json` truncated: no "first start"; a rogue lock announced while
  the daemon was down is held (it used to be accepted, and written into the record);
- `ble-glasses.json` truncated: a look-alike is refused (it used to be pinned);
- `sensitive_memory.json` truncated: a blind announced on a removed garage door's
  command topic still asks (the memory used to read as empty, then be overwritten).

Each time the damaged file is kept aside as `<name>.corrupt`, with its bytes.
Pure code: tests/unit/test_state_damage.py and tests/unit/test_ops_state.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.home.admission import RECORD as ADMISSION
from daemon.home.service import MEMORY
from daemon.ops.state import StateStore
from daemon.peripherals.ble.pinning import RECORD as PIN
from simulator import glasses as sim_glasses
from simulator import radio as sim_radio
from simulator.home import default_devices
from simulator.home.cover import SimGarageDoor
from simulator.home.lock import SimLock
from tests.integration.test_home_sensitivity import announce
from tests.integration.test_home_tamper import ask
from tests.support.ble import Sink, make_ble, running, tone
from tests.support.home import home_rig
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

LOCK = "sim-front_door_lock"
ROGUE = "sim-rogue_lock"
A = "C0:00:00:00:00:0A"  # the user's glasses
B = "C0:00:00:00:00:0B"  # a look-alike: the same name and service UUID


def truncate(path: Path, keep: int = 10) -> bytes:
    """Cut the record short, as a power cut on a failing card would; the bytes left."""
    left = path.read_bytes()[:keep]
    path.write_bytes(left)
    return left


async def test_a_truncated_admission_record_holds_a_rogue_lock(tmp_path: Path) -> None:
    async with home_rig(default_devices(), user=False, state=StateStore(tmp_path)) as rig:
        assert rig.service.admission.held_until(LOCK) is None  # first start: accepted
    left = truncate(tmp_path / f"{ADMISSION}.json")
    devices = [*default_devices(), SimLock("rogue_lock", "Rogue lock", "Hallway")]
    async with home_rig(devices, user=False, state=StateStore(tmp_path)) as rig:
        admission = rig.service.admission
        assert admission.damaged
        assert admission.held_until(ROGUE) is not None
        assert admission.held_until(LOCK) is not None  # not provably the known one
        mark = rig.watcher.mark()
        out = await ask(rig, ROGUE, "unlock")
        assert isinstance(out, str) and "announced only recently" in out, out
        await rig.barrier()
        assert rig.commands_since(mark) == []
        assert rig.metrics.value("edge_state_stat", key="damaged_records") == 1
        assert rig.metrics.value("edge_state_stat", key="admission_damaged") == 1
    assert (tmp_path / f"{ADMISSION}.corrupt").read_bytes() == left  # kept, never overwritten
    assert ROGUE not in (StateStore(tmp_path).load(ADMISSION) or {}).get("devices", {})


async def test_a_truncated_sensitivity_memory_keeps_a_once_sensitive_topic_asking(
    tmp_path: Path,
) -> None:
    # A garage door whose name and topic say nothing: only the memory knows its topic.
    shed = SimGarageDoor("cover_1", "Cover 1", "Shed")
    topic = shed.config["command_topic"]
    async with home_rig([*default_devices(), shed], user=False, state=StateStore(tmp_path)):
        pass
    left = truncate(tmp_path / f"{MEMORY}.json")
    # The garage door is gone while the daemon was down; a blind takes its topic.
    async with home_rig(default_devices(), user=False, state=StateStore(tmp_path)) as rig:
        assert rig.service.policy.distrusted
        mark = rig.watcher.mark()
        blind = await announce(rig, "blind", "cover", {
            "command_topic": topic, "device_class": "blind", "state_topic": "sim/blind/state"})
        out = await ask(rig, blind, "open")
        assert isinstance(out, dict) and out["status"] == "needs_confirmation", out
        await rig.barrier()
        assert rig.watcher.since(mark, lambda t: t == topic) == []
        assert rig.metrics.value("edge_state_stat", key="sensitivity_distrusted") == 1
    assert (tmp_path / f"{MEMORY}.corrupt").read_bytes() == left
    async with home_rig(default_devices(), user=False, state=StateStore(tmp_path)) as rig:
        assert rig.service.policy.distrusted  # until the kept copy is deleted


async def test_a_truncated_pin_record_refuses_a_look_alike(tmp_path: Path) -> None:
    state = tmp_path / "state"
    said = tone(1.0, 16_000)
    async with sim_radio.VirtualRadio(3, supervision_timeout=0.5) as hub:
        ble = make_ble("omi", hub.transport(2), state=StateStore(state), scan_timeout=0.5)
        sink = Sink()
        async with running(ble, sink), sim_glasses.VirtualGlasses(
            "omi", hub.transport(0), address=A, pcm=said, loop=True
        ):
            await sink.until(lambda: sink.seconds >= 0.3)
            assert ble.input_trusted
        left = truncate(state / f"{PIN}.json", keep=7)
        async with sim_glasses.VirtualGlasses(
            "omi", hub.transport(1), address=B, pcm=said, loop=True
        ) as impostor:
            ble = make_ble("omi", hub.transport(2), state=StateStore(state), scan_timeout=0.5)
            sink = Sink()
            async with running(ble, sink):
                await eventually(lambda: ble.pinning.stats.refused_devices >= 2, within=5)
                assert impostor.stats.connections == 0 and not sink.chunks
            status = ble.status()["pin"]
            assert status["blocked"] and status["damaged_record"] and not status["pinned"]
    assert (state / f"{PIN}.corrupt").read_bytes() == left
    assert not (state / f"{PIN}.json").exists()  # nothing pinned over it

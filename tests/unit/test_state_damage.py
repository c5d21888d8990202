"""What guards something fails closed on a damaged state record (see daemon/ops/state.py):
admission holds every sensitive device, the pin refuses every look-alike, a lost
sensitivity memory makes every command ask; `doctor` warns about the kept-aside copy
and about a state directory others may write. End to end: tests/integration/
test_state_damage.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daemon.doctor.host import state_dir_check
from daemon.home.admission import RECORD, Admission, fingerprint
from daemon.home.sensitivity import Entity, SensitivityPolicy
from daemon.ops.state import StateStore
from daemon.peripherals.ble.pinning import RECORD as PIN
from daemon.peripherals.ble.pinning import Pinning, describe, unpair

A, B = "AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"
DOOR = ("Front door", "lock", fingerprint("lock", ["fd/set"]), "")


def _admission(store: StateStore, now: list[float] | None = None) -> Admission:
    clock = now if now is not None else [1000.0]
    return Admission(discovery_prefix="homeassistant", hold_seconds=60.0, state=store,
                     clock=lambda: clock[0])


@pytest.mark.parametrize("damage", [b'{"devices": {"fro', b"", b'{"devices": []}'],
                         ids=["truncated", "empty", "no-device-list"])
def test_a_damaged_admission_record_holds_every_sensitive_device(
    tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    _admission(StateStore(tmp_path)).settle_initial({"front_door": DOOR})
    (tmp_path / f"{RECORD}.json").write_bytes(damage)
    with caplog.at_level(logging.ERROR):
        damaged = _admission(StateStore(tmp_path))
        damaged.settle_initial({"front_door": DOOR})
    assert damaged.damaged and damaged.held_until("front_door") == 1060.0
    assert any("every sensitive device is held" in r.getMessage() for r in caplog.records)
    # A restart before the hold ends holds it again: never a "first start".
    now = [1000.0]
    again = _admission(StateStore(tmp_path), now)
    again.settle_initial({"front_door": DOOR})
    assert again.held_until("front_door") == 1060.0
    now[0] = 1060.0  # the hold ends: accepted and saved
    assert again.held_until("front_door") is None and again.accepted_ids() == ["front_door"]
    final = _admission(StateStore(tmp_path))
    final.settle_initial({"front_door": DOOR})
    assert final.held_until("front_door") is None and not final.damaged


def test_a_truncated_pin_record_refuses_every_device_until_unpaired(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    Pinning("omi", store).confirm(A, "Omi", bonded=False)
    path = tmp_path / f"{PIN}.json"
    path.write_bytes(path.read_bytes()[:7])
    pinning = Pinning("omi", StateStore(tmp_path))
    assert pinning.blocked and pinning.decide(B, True) == "refuse"
    assert pinning.decide(A, True) == "refuse"  # not provably the pinned one either
    assert pinning.status()["damaged_record"] and not pinning.confirm(B, "Omi", bonded=False)
    restarted = Pinning("omi", StateStore(tmp_path))  # the record is aside now
    assert restarted.blocked and restarted.decide(B, True) == "refuse"
    ok, line = describe(StateStore(tmp_path), "omi")
    assert not ok and "damaged" in line and "--unpair" in line
    assert unpair(StateStore(tmp_path)) == (True, None)
    fresh = Pinning("omi", StateStore(tmp_path))
    assert not fresh.blocked and fresh.decide(B, True) == "take"
    assert not fresh.status()["damaged_record"]


def test_a_distrusted_policy_asks_for_every_command_and_learns_nothing_from_it() -> None:
    blind = Entity("c2", "Cover 2", "cover", "blind", frozenset({"z/0x01/set"}))
    light = Entity("l1", "Lamp", "light", None, frozenset({"z/lamp/set"}))
    policy = SensitivityPolicy()
    assert policy.of_command(blind, "open", "z/0x01/set", "OPEN") is None
    policy.distrust("the memory of sensitive devices is damaged")
    for e, action, topic in ((blind, "open", "z/0x01/set"), (light, "turn_on", "z/lamp/set")):
        sens = policy.of_command(e, action, topic, "ON")
        assert sens is not None and sens.category == "other" and "damaged" in sens.why
    assert policy.flags(light, ["turn_on"]) is None  # what admission holds is unchanged
    assert policy.learn(light) is None and policy.memory() == ({}, {})


def test_doctor_warns_about_a_loose_directory_and_a_kept_aside_record(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert state_dir_check(state, {}).status == "ok"
    (state / f"{RECORD}.json").write_bytes(b"\x00")
    StateStore(state).load_status(RECORD)
    check = state_dir_check(state, {})
    assert check.status == "warn" and f"{RECORD}.corrupt" in check.detail
    state.chmod(0o770)
    loose = state_dir_check(state, {})
    assert loose.status == "warn" and "may be written by group" in loose.detail
    assert loose.advice == f"chmod 700 {state}"

"""Pinned glasses: the decisions (`Pinning`), as pure code with a fake clock.

Only the user's own device is connected, heard and believed: before a pin any
look-alike is taken, after it only the pinned address; the pin survives a restart
through a state directory, and what cannot be read or saved refuses rather than
guesses. End to end on the virtual radio: tests/integration/test_ble_pinning.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import BlePeripheralSettings, PeripheralSettings
from daemon.ops.state import StateStore
from daemon.peripherals import PeripheralUnavailable, make_peripheral
from daemon.peripherals.ble.pinning import (
    RECORD,
    WARN_INTERVAL,
    Pin,
    PinError,
    Pinning,
    clean_name,
    describe,
    normalize_address,
    unpair,
)
from tests.support.logs import warnings_about

pytestmark = pytest.mark.timeout(60)
A = "C0:00:00:00:00:0A"  # the user's glasses (static random addresses)
B = "C0:00:00:00:00:0B"  # an impostor advertising the same name and service UUID


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ============================================================ decisions (pure)
def test_before_a_pin_any_look_alike_is_taken_after_it_only_the_pinned_one() -> None:
    pinning = Pinning("omi")
    assert pinning.decide(A, True) == "take"
    assert pinning.decide(B, False) == "ignore"  # not an omi at all
    assert not pinning.trusted(A)  # nothing is the user's before the pin
    assert pinning.confirm(A.lower(), "Omi", bonded=False)
    assert pinning.decide(A, True) == "take" and pinning.decide(A, False) == "take"
    assert pinning.decide(B, True) == "refuse"  # same name and UUID, other address
    assert pinning.decide(B, False) == "ignore"
    assert pinning.trusted(A) and not pinning.trusted(B)
    assert pinning.allows(A) and not pinning.allows(B)
    assert not pinning.confirm(B, "Omi", bonded=False)  # a pin is never moved
    assert pinning.pin is not None and pinning.pin.address == A
    assert not pinning.must_keep_bond(A)  # omi does not bond


def test_the_pin_is_saved_once_and_survives_a_restart(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    first = Pinning("omi", store)
    assert first.pin is None and store.load(RECORD) is None
    first.confirm(A, "Omi\x1b[2J\n", bonded=False)
    first.confirm(A, "Omi", bonded=False)  # every later connection: nothing to write
    assert first.stats.pins_saved == 1
    record = store.load(RECORD)
    assert record is not None and record["address"] == A and record["name"] == "Omi[2J"
    assert (tmp_path / f"{RECORD}.json").stat().st_mode & 0o777 == 0o600
    again = Pinning("omi", StateStore(tmp_path))  # the daemon restarted
    assert again.pin == first.pin and again.decide(B, True) == "refuse"
    assert again.status()["saved"] and again.status()["source"] == "state"


def test_a_bonding_profile_pins_the_bond_too(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    pinning = Pinning("frame", store)
    pinning.confirm(A, "Frame", bonded=True)
    assert pinning.must_keep_bond(A) and not pinning.must_keep_bond(B)
    assert Pinning("frame", store).must_keep_bond(A)


def test_a_configured_address_is_an_explicit_pin(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(RECORD, Pin(B, "frame", bonded=True).to_record())  # an older pin: ignored
    pinning = Pinning("frame", store, configured=A.lower())
    assert pinning.decide(A, False) == "take" and pinning.decide(B, True) == "refuse"
    assert pinning.trusted(A) and not pinning.must_keep_bond(A)  # not bonded with A yet
    pinning.confirm(A, "Frame", bonded=True)  # the record now holds A and its bond
    assert Pinning("frame", store, configured=A).must_keep_bond(A)
    with pytest.raises(PinError, match="not a Bluetooth address"):
        Pinning("omi", configured="glasses")
    with pytest.raises(PeripheralUnavailable, match=r"^peripheral\.ble\.address: not a"):
        make_peripheral(PeripheralSettings(
            kind="ble", ble=BlePeripheralSettings(profile="omi", address="AA:BB:CC")))


@pytest.mark.parametrize(
    "record",
    [
        {"version": 1, "address": "nonsense", "profile": "omi"},
        {"version": 1, "address": A, "profile": "omi", "bonded": "yes"},
        {"version": 2, "address": A, "profile": "omi"},
        {"version": 1, "profile": "omi"},
        {"version": 1, "address": A, "profile": ""},
    ],
)
def test_an_unusable_record_refuses_everything_until_unpaired(
    tmp_path: Path, record: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path)
    store.save(RECORD, record)
    pinning = Pinning("omi", store)
    assert pinning.blocked and pinning.decide(A, True) == "refuse"
    assert not pinning.confirm(A, "Omi", bonded=False) and not pinning.trusted(A)
    assert warnings_about(caplog, "every device is refused")
    ok, line = describe(store, "omi")
    assert not ok and "unusable" in line and "--unpair" in line
    assert unpair(store) == (True, None)
    assert not Pinning("omi", store).blocked


def test_a_pin_for_another_profile_refuses_everything(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    Pinning("omi", store).confirm(A, "Omi", bonded=False)
    frame = Pinning("frame", store)
    assert frame.blocked and frame.decide(B, True) == "refuse"
    assert not describe(store, "frame")[0]


def test_refusals_are_all_counted_but_warned_about_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    pinning = Pinning("omi", clock=clock)
    pinning.confirm(A, "Omi", bonded=False)
    for i in range(100):
        clock.now += 0.1
        pinning.refuse(B if i % 2 else "C0:00:00:00:00:0C", "device")
    pinning.refuse(A, "bond", "no bond")
    assert pinning.stats.refused_devices == 100 and pinning.stats.refused_bond == 1
    assert len(warnings_about(caplog, "BLE: refused")) == 1
    assert pinning.stats.warnings_suppressed == 100
    clock.now += WARN_INTERVAL
    pinning.refuse(B, "device")
    lines = warnings_about(caplog, "BLE: refused")
    assert len(lines) == 2 and B in lines[1] and "not the pinned glasses " + A in lines[1]


def test_a_pin_that_cannot_be_saved_still_holds_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    pinning = Pinning("omi", StateStore(blocker))
    assert pinning.confirm(A, "Omi", bonded=False)
    assert pinning.stats.save_failures == 1 and pinning.decide(B, True) == "refuse"
    assert not pinning.status()["saved"]


def test_describe_for_doctor(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    ok, line = describe(store, "omi")
    assert not ok and line.startswith("nothing pinned")
    assert not describe(StateStore(None), "omi")[0]
    assert describe(store, "omi", configured=A) == (True, f"{A} (peripheral.ble.address)")
    Pinning("omi", store).confirm(A, "Omi", bonded=False)
    ok, line = describe(store, "omi")
    assert ok and line.startswith(f"{A} (Omi, pinned 20")


def test_pin_counters_are_in_metrics() -> None:
    from daemon.ops.metrics import Metrics
    from daemon.peripherals.ble.peripheral import BlePeripheral
    from daemon.peripherals.ble.profile import load_profile

    ble = BlePeripheral(load_profile("omi"), "bluez")
    ble.pinning.confirm(A, "Omi", bonded=False)
    ble.pinning.refuse(B, "device")
    metrics = Metrics()
    metrics.add_status_source("peripheral", ble.status)
    assert metrics.value("edge_peripheral_stat", key="pin.refused_devices") == 1
    assert metrics.value("edge_peripheral_stat", key="pin.pinned") == 1
    assert metrics.value("edge_peripheral_stat", key="pin.trusted") == 0  # not connected
    assert metrics.value("edge_peripheral_stat", key="pin.untrusted_taps") == 0
    assert metrics.value("edge_peripheral_stat", key="pin.rebonds") == 0
    assert not ble.input_trusted and ble.can_tap


def test_addresses_and_names_from_devices_are_cleaned() -> None:
    assert normalize_address(" c0:00:00:00:00:0a ") == A
    for bad in ("", "C0:00:00:00:00", "C0-00-00-00-00-0A", "C0:00:00:00:00:0G", "x" * 10_000):
        with pytest.raises(PinError):
            normalize_address(bad)
    assert clean_name("Omi\x00\x07\u009b") == "Omi" and len(clean_name("x" * 1000)) == 64
    assert clean_name(None) == ""


def test_a_host_bond_that_was_lost_is_renewed_once_per_run_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path)
    Pinning("frame", store).confirm(A, "Frame", bonded=True)
    pinning = Pinning("frame", store)  # the daemon restarted; its host lost the bond
    assert pinning.may_rebond(A) and not pinning.may_rebond(B)
    assert not pinning.may_rebond("")
    pinning.rebonded(A)
    assert pinning.stats.rebonds == 1 and pinning.trusted(A)
    assert not pinning.may_rebond(A)  # lost again in the same run: refused, not renewed
    lines = warnings_about(caplog, "lost its bond")
    assert len(lines) == 1 and A in lines[0] and "--unpair" in lines[0]
    record = store.load(RECORD)
    assert record is not None and record["bonded"] and record["address"] == A
    assert str(record["rebonded_at"]).startswith("20") and pinning.status()["saved"]
    again = Pinning("frame", store)
    assert again.pin is not None and again.pin.rebonded_at == record["rebonded_at"]
    assert again.may_rebond(A)  # the next run may renew it once more
    ok, line = describe(store, "frame")
    assert ok and "re-bonded" in line
    omi = Pinning("omi")
    omi.confirm(A, "Omi", bonded=False)
    assert not omi.may_rebond(A)  # nothing bonds, nothing to renew
    assert not Pinning("frame").may_rebond(A)  # nothing pinned: an ordinary first pairing
    blocked = StateStore(tmp_path / "blocked")
    blocked.save(RECORD, {"version": 1, "address": A, "profile": "frame", "bonded": "yes"})
    assert not Pinning("frame", blocked).may_rebond(A)


def test_the_virtual_host_keeps_its_address_for_a_state_directory(tmp_path: Path) -> None:
    from daemon.peripherals.ble.backends import open_backend, virtual_host_address
    from daemon.peripherals.ble.peripheral import BlePeripheral
    from daemon.peripherals.ble.profile import load_profile

    one = open_backend("virtual:tcp-client:127.0.0.1:1", state_dir=tmp_path / "a")
    again = open_backend("virtual:tcp-client:127.0.0.1:2", state_dir=tmp_path / "x/../a")
    other = open_backend("virtual:tcp-client:127.0.0.1:1", state_dir=tmp_path / "b")
    memory = open_backend("virtual:tcp-client:127.0.0.1:1")  # no state dir: any address
    assert one.host_address == again.host_address == virtual_host_address(tmp_path / "a")
    assert other.host_address != one.host_address and memory.host_address
    for backend in (one, other, memory):
        address = normalize_address(backend.host_address)
        assert int(address[:2], 16) >= 0xC0  # static random: the two top bits set
    assert open_backend("bluez", state_dir=tmp_path).host_address == ""
    assert not any(tmp_path.iterdir())  # derived, never stored
    ble = BlePeripheral(load_profile("frame"), "virtual:tcp-client:127.0.0.1:1",
                        state=StateStore(tmp_path / "a"))
    assert ble.backend.host_address == one.host_address


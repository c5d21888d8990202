"""Pinned glasses: only the user's own device is connected, heard and believed.

The decisions (`Pinning`) are tested as pure code with a fake clock; the behaviour end
to end with the real Bumble stack on the virtual radio, in this process: the daemon's
`BlePeripheral` pins glasses A, an impostor B advertising the same name and UUID is
refused (never connected, never heard, never tapped), A comes back, the pin survives a
restart through a state directory, and `edge-agent devices --unpair` lets B in. On a
bonding profile (Frame) an impostor that copies A's address fails the bond check while
the host holds the bond; a host that lost it (the virtual host after a daemon restart)
pairs anew with the pinned address, once, with a warning and `pin.rebonds`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
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
from simulator import glasses as sim_glasses
from simulator import radio as sim_radio
from tests.test_ble_integration import Sink, eventually, make_ble, running, tone

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
A = "C0:00:00:00:00:0A"  # the user's glasses (static random addresses)
B = "C0:00:00:00:00:0B"  # an impostor advertising the same name and service UUID
SAID = tone(1.0, 16_000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and text in r.getMessage()]


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

# ======================================================= on the virtual radio
async def tap_when_listened(glasses: sim_glasses.VirtualGlasses, within: float = 5.0) -> None:
    """Tap once the daemon listens to the button (a tap before that is not sent)."""
    async with asyncio.timeout(within):
        while not await glasses.tap():
            await asyncio.sleep(0.05)


async def test_an_impostor_is_never_connected_heard_or_believed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    async with sim_radio.VirtualRadio(3, supervision_timeout=0.5) as hub:
        ble = make_ble("omi", hub.transport(2), state=StateStore(state), scan_timeout=0.5)
        sink = Sink()
        async with running(ble, sink):
            async with sim_glasses.VirtualGlasses(
                "omi", hub.transport(0), address=A, pcm=SAID, loop=True
            ):
                await sink.until(lambda: sink.seconds >= 0.3)
                assert ble.input_trusted
                record = StateStore(state).load(RECORD)
                assert record is not None and record["address"] == A
            await eventually(lambda: not ble.status()["connected"])  # A went away
            heard = sink.seconds
            async with sim_glasses.VirtualGlasses(
                "omi", hub.transport(1), address=B, pcm=SAID, loop=True
            ) as impostor:
                await eventually(lambda: ble.pinning.stats.refused_devices >= 3, within=5)
                assert impostor.stats.connections == 0 and sink.seconds == heard
                assert not await impostor.tap() and sink.taps == 0
                # A comes back while B still advertises: A, and only A, is used again
                async with sim_glasses.VirtualGlasses(
                    "omi", hub.transport(0), address=A, pcm=SAID, loop=True
                ) as back:
                    await sink.until(lambda: sink.seconds >= heard + 0.3)
                    assert ble.input_trusted and back.stats.connections == 1
                    await tap_when_listened(back)
                    await sink.until(lambda: sink.taps == 1)
                assert impostor.stats.connections == 0
        st = ble.status()["pin"]
        assert st["refused_devices"] >= 3 and st["untrusted_taps"] == 0
        assert st["address"] == A and st["pins_saved"] == 1
        refusals = warnings_about(caplog, "BLE: refused")
        assert len(refusals) == 1 and B in refusals[0]  # rate-limited, names the address

        # the daemon restarts: the pin comes back from the state directory
        async with sim_glasses.VirtualGlasses(
            "omi", hub.transport(1), address=B, pcm=SAID, loop=True
        ) as impostor:
            ble = make_ble("omi", hub.transport(2), state=StateStore(state), scan_timeout=0.5)
            sink = Sink()
            async with running(ble, sink):
                await eventually(lambda: ble.pinning.stats.refused_devices >= 2, within=5)
                assert impostor.stats.connections == 0 and not sink.chunks

            # unpaired: the next daemon pins the glasses it finds
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon", "devices", "--unpair",
                env=_cli_env(tmp_path, state), cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            assert f"forgot the pinned glasses {A} (Omi, profile omi)" in out.decode()
            assert "restart the daemon" in out.decode()
            ble = make_ble("omi", hub.transport(2), state=StateStore(state), scan_timeout=0.5)
            sink = Sink()
            async with running(ble, sink):
                await sink.until(lambda: sink.seconds >= 0.3)
                assert ble.input_trusted and impostor.stats.connections == 1
            record = StateStore(state).load(RECORD)
            assert record is not None and record["address"] == B


async def test_taps_before_the_pin_confirm_nothing_and_a_connect_alone_pins_nothing(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path)
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses("omi", hub.transport(0), pcm=SAID, loop=True) as glasses,
    ):
        glasses.go_silent()  # connected, services found, but no audio yet
        ble = make_ble("omi", hub.transport(1), state=store, silence_timeout=30.0)
        sink = Sink()
        async with running(ble, sink):
            await tap_when_listened(glasses)
            await eventually(lambda: ble.pinning.stats.untrusted_taps == 1)
            assert sink.taps == 0 and ble.status()["media"]["taps"] == 0
            assert store.load(RECORD) is None and not ble.input_trusted
            glasses.go_silent(0)  # the microphone starts: the first audio pins the glasses
            await sink.until(lambda: sink.seconds >= 0.2)
            record = store.load(RECORD)
            assert record is not None and record["address"] == glasses.address
            assert ble.input_trusted and ble.can_tap
            await tap_when_listened(glasses)
            await sink.until(lambda: sink.taps == 1)


async def test_an_impostor_copying_a_bonded_address_fails_the_bond_check(tmp_path: Path) -> None:
    bonds = tmp_path / "frame-flash.json"  # the real glasses keep their bond
    async with sim_radio.VirtualRadio(2, supervision_timeout=0.5) as hub:
        ble = make_ble("frame", hub.transport(1), state=StateStore(tmp_path / "state"),
                       scan_timeout=0.5)
        sink = Sink()
        async with running(ble, sink):
            async with sim_glasses.VirtualGlasses(
                "frame", hub.transport(0), address=A, pcm=SAID, loop=True, bond_store=bonds
            ):
                await sink.until(lambda: sink.seconds >= 0.3)
                assert ble.input_trusted and ble.status()["pin"]["bonded"]
            await eventually(lambda: not ble.status()["connected"])
            heard = sink.seconds
            # same profile, name, UUID and address; only the bond is missing
            async with sim_glasses.VirtualGlasses(
                "frame", hub.transport(0), address=A, pcm=SAID, loop=True,
                faults=sim_glasses.Faults.parse(["tap-at=0"]),
            ) as impostor:
                await eventually(lambda: ble.pinning.stats.refused_bond >= 2, within=10)
                assert impostor.stats.audio_notifications == 0 and impostor.stats.taps == 0
                assert sink.seconds == heard and sink.taps == 0 and not ble.input_trusted
                assert ble.status()["link"]["connect_failures"]["pin_bond"] >= 2
            async with sim_glasses.VirtualGlasses(
                "frame", hub.transport(0), address=A, pcm=SAID, loop=True, bond_store=bonds
            ):
                await sink.until(lambda: sink.seconds >= heard + 0.3, within=10)
                assert ble.input_trusted



def _peers(flash: Path, glasses: str) -> dict[str, dict[str, object]]:
    """The bonds the glasses keep in their flash (Bumble's JSON key store), by host."""
    data = json.loads(flash.read_text())
    peers: dict[str, dict[str, object]] = data.get(glasses, {})
    return peers


async def test_a_restarted_daemon_rebonds_pinned_frame_glasses_its_host_forgot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The virtual host keeps its bonds in memory only (like a host whose BlueZ bond
    store was lost): after a restart it pairs anew with the pinned address, once, says
    so and counts it - instead of refusing the user's own glasses forever."""
    state, flash = tmp_path / "state", tmp_path / "frame-flash.json"
    async with (
        sim_radio.VirtualRadio(2, supervision_timeout=0.5) as hub,
        sim_glasses.VirtualGlasses(
            "frame", hub.transport(0), address=A, pcm=SAID, loop=True, bond_store=flash
        ) as glasses,
    ):
        ble = make_ble("frame", hub.transport(1), state=StateStore(state), scan_timeout=0.5)
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.3)
            assert ble.input_trusted and ble.status()["pin"]["bonded"]
            assert ble.status()["pin"]["rebonds"] == 0
        before = _peers(flash, A)
        assert len(before) == 1  # the glasses bonded with this host
        assert not warnings_about(caplog, "lost its bond")

        # the daemon restarts with the same state directory: a fresh virtual host whose
        # key store is empty, while the glasses (still up) hold their bond in flash
        ble = make_ble("frame", hub.transport(1), state=StateStore(state), scan_timeout=0.5)
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.3, within=15)
            assert ble.input_trusted
            st = ble.status()
            assert st["pin"]["rebonds"] == 1 and st["pin"]["refused_bond"] == 0
            assert "pin_bond" not in st["link"]["connect_failures"]
            lost = warnings_about(caplog, "lost its bond")
            assert len(lost) == 1 and A in lost[0] and "paired anew" in lost[0]
            record = StateStore(state).load(RECORD)
            assert record is not None and record["address"] == A and record["bonded"]
            assert str(record["rebonded_at"]).startswith("20")
            # the host kept its address across the restart: the glasses recognised it
            # and replaced their old bond instead of keeping one per restart
            after = _peers(flash, A)
            assert list(after) == list(before) and after != before
            keys = [str(v["value"]).lower() for peer in after.values()
                    for v in peer.values() if isinstance(v, dict) and "value" in v]
            assert keys  # the LTK at least
            for path in state.iterdir():  # no key ever reaches the state directory
                text = path.read_text().lower()
                assert not any(key in text for key in keys)
            # the glasses restart; the same daemon uses the new bond, never renews it
            heard = sink.seconds
            glasses.stop()
            await eventually(lambda: not ble.status()["connected"])
            async with sim_glasses.VirtualGlasses(
                "frame", hub.transport(0), address=A, pcm=SAID, loop=True, bond_store=flash
            ):
                await sink.until(lambda: sink.seconds >= heard + 0.3, within=15)
                assert ble.input_trusted and ble.status()["link"]["reconnects"] >= 1
            assert ble.status()["pin"]["rebonds"] == 1 and _peers(flash, A) == after
        assert len(warnings_about(caplog, "lost its bond")) == 1

# ================================================================ the CLI
def _cli_env(tmp_path: Path, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    (tmp_path / "empty.toml").write_text("")
    env.update(EDGE_AGENT_CONFIG=str(tmp_path / "empty.toml"), STATE_DIRECTORY=str(state),
               EDGE_AGENT_PERIPHERAL__KIND="ble", PYTHONPATH=str(ROOT))
    return env


async def _doctor(tmp_path: Path, state: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "doctor", env=_cli_env(tmp_path, state), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_doctor_warns_when_nothing_is_pinned_without_changing_its_verdict(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    code, out = await _doctor(tmp_path, state)
    assert "WARN  pinned glasses: nothing pinned" in out
    Pinning("omi", StateStore(state)).confirm(A, "Omi", bonded=False)
    pinned_code, pinned_out = await _doctor(tmp_path, state)
    assert f"ok   pinned glasses: {A} (Omi, pinned " in pinned_out
    assert "WARN" not in pinned_out and pinned_code == code


async def test_unpair_without_a_pin_or_a_state_directory_says_so(tmp_path: Path) -> None:
    env = _cli_env(tmp_path, tmp_path / "state")
    for drop_state, expected in ((False, "no glasses were pinned"),
                                 (True, "no state directory")):
        if drop_state:
            env.pop("STATE_DIRECTORY")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "devices", "--unpair", env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert expected in out.decode()

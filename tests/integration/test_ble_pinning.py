"""Pinned glasses: only the user's own device is connected, heard and believed.

The decisions (`Pinning`) are tested as pure code with a fake clock; the behaviour end
to end with the real Bumble stack on the virtual radio, in this process: the daemon's
`BlePeripheral` pins glasses A, an impostor B advertising the same name and UUID is
refused (never connected, never heard, never tapped), A comes back, the pin survives a
restart through a state directory, and `edge-agent devices --unpair` lets B in. On a
bonding profile (Frame) an impostor that copies A's address fails the bond check while
the host holds the bond; a host that lost it (the virtual host after a daemon restart)
pairs anew with the pinned address, once, with a warning and `pin.rebonds`.

Without a socket or a process: tests/unit/test_ble_pinning.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from bumble import hci
from bumble.keys import PairingKeys

from daemon.ops.state import StateStore
from daemon.peripherals.ble.bumble_backend import BumbleAdapter
from daemon.peripherals.ble.pinning import (
    RECORD,
    Pinning,
)
from simulator import glasses as sim_glasses
from simulator import radio as sim_radio
from tests.support.ble import Sink, make_ble, running, tone
from tests.support.logs import warnings_about
from tests.support.paths import REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

ROOT = REPO
A = "C0:00:00:00:00:0A"  # the user's glasses (static random addresses)
B = "C0:00:00:00:00:0B"  # an impostor advertising the same name and service UUID
SAID = tone(1.0, 16_000)


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
                # the refusal is counted as it is decided, the failed connect once the link
                # is torn down after it: wait for both
                await eventually(
                    lambda: ble.pinning.stats.refused_bond >= 2
                    and ble.status()["link"]["connect_failures"].get("pin_bond", 0) >= 2,
                    within=10)
                assert impostor.stats.audio_notifications == 0 and impostor.stats.taps == 0
                assert sink.seconds == heard and sink.taps == 0 and not ble.input_trusted
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


class _Impostor:
    """A connected client as the adapter registers it: its address and its link."""

    def __init__(self, address: str, peer: object) -> None:
        self.address = address
        self.connection = SimpleNamespace(peer_address=peer)


async def test_a_copy_of_a_bonded_address_under_the_other_type_meets_the_held_bond() -> None:
    """The pinned glasses bonded at a static random address; an impostor connects with
    the same six bytes as a public address. The host holds the bond, so renewing it (a
    fresh Just Works pairing, then trusted) must not be on offer (review of 2026-12-06)."""
    address = "F0:EA:00:00:00:01"
    adapter = BumbleAdapter("tcp-client:127.0.0.1:1")  # never opened: its key store only
    await adapter.keystore.update(
        str(hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)), PairingKeys())
    impostor = _Impostor(address, hci.Address(address, hci.Address.PUBLIC_DEVICE_ADDRESS))
    adapter.register(impostor)  # type: ignore[arg-type]
    assert await adapter.has_bond(address)
    adapter.unregister(impostor)  # type: ignore[arg-type]
    assert not await adapter.has_bond("F0:EA:00:00:00:02")

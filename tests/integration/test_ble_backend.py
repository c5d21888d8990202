"""The bleak backend over Bumble, driven through bleak's public API on a virtual radio.

Everything runs in this process: `VirtualRadio` (the hub), `VirtualGlasses` (a Bumble
GATT peripheral) and bleak's `BleakScanner` / `BleakClient` with our backend classes.

Without a socket or a process: tests/unit/test_ble_backend.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError, BleakGATTProtocolError

from daemon.peripherals.ble.backends import BleBackend, open_backend
from daemon.peripherals.ble.profile import BATTERY_LEVEL_UUID, load_profile
from simulator.glasses import VirtualGlasses
from simulator.radio import VirtualRadio

pytestmark = pytest.mark.timeout(60)

OMI = load_profile("omi")
FRAME = load_profile("frame")


def tone(seconds: float, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio(3, supervision_timeout=0.5) as hub:
        yield hub


@contextlib.asynccontextmanager
async def backend_on(radio: VirtualRadio, index: int) -> AsyncIterator[BleBackend]:
    backend = open_backend("virtual:" + radio.transport(index))
    try:
        yield backend
    finally:
        await backend.aclose()


async def find(backend: BleBackend, name: str, within: float = 3.0) -> tuple[object, object]:
    found = await BleakScanner.discover(timeout=within, return_adv=True, backend=backend.scanner)
    for device, adv in found.values():
        if adv.local_name == name:
            return device, adv
    raise AssertionError(f"{name!r} not found in {found}")


async def test_scan_reports_name_service_and_rssi(radio: VirtualRadio) -> None:
    async with (
        VirtualGlasses(OMI, radio.transport(0)) as glasses,
        backend_on(radio, 1) as backend,
    ):
        started = time.monotonic()
        found = await BleakScanner.find_device_by_name("Omi", timeout=3, backend=backend.scanner)
        assert found is not None and time.monotonic() - started < 1.5
        assert found.address == glasses.address
        _device, adv = await find(backend, "Omi", within=0.5)
        assert adv.rssi == -50  # Bumble's virtual controller reports a fixed RSSI
        assert adv.service_uuids == [OMI.characteristics.service]
        # the scanner's service filter is honoured
        other = await BleakScanner.discover(
            timeout=0.4, backend=backend.scanner, service_uuids=[FRAME.characteristics.service]
        )
        assert other == []


async def test_connect_mtu_discovery_read_write_notify(radio: VirtualRadio) -> None:
    lost = asyncio.Event()
    async with (
        VirtualGlasses(OMI, radio.transport(0), pcm=tone(1.0), loop=True) as glasses,
        backend_on(radio, 1) as backend,
    ):
        device, _ = await find(backend, "Omi", within=0.5)
        client = BleakClient(device, lambda _c: lost.set(), backend=backend.client, timeout=5)
        started = time.monotonic()
        await client.connect()
        connect_s = time.monotonic() - started
        assert connect_s < 1.0, connect_s
        assert client.is_connected and client.mtu_size == 517
        service = client.services.get_service(OMI.characteristics.service)
        assert service is not None
        uuids = {c.uuid for c in service.characteristics}
        assert {OMI.characteristics.audio_data, OMI.characteristics.codec_id} <= uuids
        audio = service.get_characteristic(OMI.characteristics.audio_data)
        assert audio is not None and "notify" in audio.properties
        assert audio.max_write_without_response_size == 514

        assert await client.read_gatt_char(OMI.characteristics.codec_id) == bytearray([20])
        assert await client.read_gatt_char(BATTERY_LEVEL_UUID) == bytearray([87])

        got: list[bytearray] = []
        await client.start_notify(audio, lambda _c, data: got.append(data))
        cccd = audio.get_descriptor("2902")
        assert cccd is not None
        assert await client.read_gatt_descriptor(cccd.handle) == bytearray(b"\x01\x00")
        await asyncio.sleep(0.3)
        assert len(got) >= 8  # 50 Opus frames per second
        assert all(len(n) > 3 for n in got)
        await client.stop_notify(audio)
        await asyncio.sleep(0.1)
        count = len(got)
        await asyncio.sleep(0.2)
        assert len(got) == count  # unsubscribed: nothing more arrives

        speaker = OMI.characteristics.speaker
        await client.write_gatt_char(speaker, (400).to_bytes(4, "little"), response=True)
        await client.write_gatt_char(speaker, bytes(400), response=False)
        await asyncio.sleep(0.1)
        assert glasses.stats.speaker_utterances == 1
        assert glasses.stats.speaker_bytes == 400
        with pytest.raises(BleakError, match="exceeds"):
            await client.write_gatt_char(speaker, bytes(600), response=False)

        await client.disconnect()
        assert not client.is_connected
        assert lost.is_set()  # like BlueZ: the callback fires on every disconnection
        with pytest.raises(BleakError, match="Not connected"):
            await client.read_gatt_char(OMI.characteristics.codec_id)


async def test_frame_caps_the_mtu_and_disconnect_callback_on_vanish(radio: VirtualRadio) -> None:
    lost = asyncio.Event()
    async with backend_on(radio, 1) as backend:
        glasses = VirtualGlasses(FRAME, radio.transport(0))
        async with glasses:
            device, _ = await find(backend, "Frame", within=0.5)
            async with BleakClient(
                device, lambda _c: lost.set(), backend=backend.client, timeout=5
            ) as client:
                assert client.mtu_size == 256  # Frame's own limit
                started = time.monotonic()
                await glasses.vanish()  # HCI socket gone: the hub times the link out
                await asyncio.wait_for(lost.wait(), 3.0)
                noticed = time.monotonic() - started
                assert 0.4 <= noticed < 2.0, noticed  # supervision timeout 0.5 s
                assert not client.is_connected


async def test_bonding_required_by_frame(radio: VirtualRadio) -> None:
    async with backend_on(radio, 1) as backend:
        async with VirtualGlasses(FRAME, radio.transport(0)) as glasses:
            device, _ = await find(backend, "Frame", within=0.5)
            async with BleakClient(device, backend=backend.client, timeout=5) as client:
                with pytest.raises(BleakGATTProtocolError, match="Encryption"):
                    await client.write_gatt_char(FRAME.characteristics.audio_control, b"\x01\x0d")
                await client.pair()
                await client.write_gatt_char(FRAME.characteristics.audio_control, b"\x01\x0d")
                await asyncio.sleep(0.05)
                assert glasses.stats.commands.get("photo_shot") == 1
            # a second connection encrypts with the stored bond
            async with BleakClient(device, backend=backend.client, timeout=5, pair=True) as client:
                await client.write_gatt_char(FRAME.characteristics.audio_control, b"\x01\x0d")
        # the glasses restart and forget the bond: pairing again must still work
        async with VirtualGlasses(FRAME, radio.transport(0), address=glasses.address) as again:
            device, _ = await find(backend, "Frame", within=0.5)
            async with BleakClient(device, backend=backend.client, timeout=5, pair=True) as client:
                await client.write_gatt_char(FRAME.characteristics.audio_control, b"\x01\x0d")
                await asyncio.sleep(0.05)
                assert again.stats.commands.get("photo_shot") == 1


async def test_connect_timeout_leaves_the_adapter_usable(radio: VirtualRadio) -> None:
    async with (
        VirtualGlasses(OMI, radio.transport(0)) as glasses,
        backend_on(radio, 1) as backend,
    ):
        absent = BleakClient("C0:11:22:33:44:55", backend=backend.client, timeout=0.3)
        with pytest.raises(TimeoutError):
            await absent.connect()
        # a cancelled connect must not leave a pending create behind
        task = asyncio.create_task(
            BleakClient("C0:11:22:33:44:56", backend=backend.client, timeout=5).connect()
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with BleakClient(glasses.address, backend=backend.client, timeout=3) as client:
            assert client.is_connected


async def test_unreachable_radio_is_a_clear_error() -> None:
    backend = open_backend("virtual:tcp-client:127.0.0.1:9")
    try:
        with pytest.raises(BleakError, match="not reachable"):
            await BleakScanner.discover(timeout=0.1, backend=backend.scanner)
    finally:
        await backend.aclose()


async def test_radio_loss_disconnects_clients() -> None:
    lost = asyncio.Event()
    hub = VirtualRadio(2, supervision_timeout=0.5)
    await hub.start()
    backend = open_backend("virtual:" + hub.transport(1))
    try:
        async with VirtualGlasses(OMI, hub.transport(0)) as glasses:
            client = BleakClient(
                glasses.address, lambda _c: lost.set(), backend=backend.client, timeout=3
            )
            await client.connect()
            await hub.close()  # the hub process dies: every HCI socket closes
            await asyncio.wait_for(lost.wait(), 2.0)
            assert not client.is_connected
    finally:
        await backend.aclose()
        await hub.close()

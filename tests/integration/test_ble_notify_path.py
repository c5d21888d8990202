"""Notifications on the virtual radio take the short path past Bumble's host, exactly.

bleak's client over our Bumble backend, subscribed to virtual omi glasses: every audio
notification the glasses send arrives once, in order, byte for byte, and all of them
through the backend's `NotificationRouter`; after `stop_notify` none is delivered.
"""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner

from daemon.peripherals.ble.backends import open_backend
from daemon.peripherals.ble.bumble_backend import BumbleClient
from daemon.peripherals.ble.profile import load_profile
from simulator.glasses import VirtualGlasses
from simulator.radio import VirtualRadio
from tests.support.ble import tone

pytestmark = pytest.mark.timeout(60)

OMI = load_profile("omi")


async def test_notifications_arrive_exactly_once_in_order_past_bumbles_host() -> None:
    sent: list[bytes] = []
    async with (
        VirtualRadio(2, supervision_timeout=0.5) as radio,
        VirtualGlasses(OMI, radio.transport(0), pcm=tone(1.0, 16_000), loop=True,
                       on_audio_notify=lambda value, _t: sent.append(bytes(value))),
    ):
        backend = open_backend("virtual:" + radio.transport(1))
        try:
            device = await BleakScanner.find_device_by_name("Omi", timeout=5,
                                                            backend=backend.scanner)
            assert device is not None
            client = BleakClient(device, backend=backend.client, timeout=5)
            await client.connect()
            got: list[bytes] = []
            await client.start_notify(OMI.characteristics.audio_data,
                                      lambda _c, data: got.append(bytes(data)))
            while len(got) < 25:  # half a second of Opus frames
                await asyncio.sleep(0.05)
            await client.stop_notify(OMI.characteristics.audio_data)
            count = len(got)
            await asyncio.sleep(0.2)
            assert len(got) == count  # unsubscribed: nothing more is delivered

            assert backend.client is not None and issubclass(backend.client, BumbleClient)
            router = backend.client.adapter.router if backend.client.adapter else None
            assert router is not None and router.routed == count  # none took Bumble's path
            first = sent.index(got[0])
            assert sent[first : first + count] == got
            await client.disconnect()
        finally:
            await backend.aclose()

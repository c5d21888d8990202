"""The glasses' early start end to end: the real glasses peripheral on the virtual radio
starts before the Agent exists (as `serve` does while the SDK imports); what it captured
meanwhile reaches the fake Live server first, in order, once, with what follows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from daemon.agent import Agent
from daemon.app import _start_early
from daemon.live.link import LiveLink
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore
from daemon.tools.registry import ToolRegistry
from simulator import glasses as sim_glasses
from simulator import radio as sim_radio
from simulator.live_server import FakeLiveServer
from tests.support.ble import make_ble, tone
from tests.support.live import KEY, live_settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)


async def test_audio_captured_before_the_agent_exists_goes_up_first_in_order(
    tmp_path: Path,
) -> None:
    decoded = bytearray()  # every sample the glasses delivered, in order
    state = StateStore(tmp_path)
    async with (
        FakeLiveServer(api_key=KEY) as server,
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses("omi", hub.transport(0), pcm=tone(1.0, 16_000), loop=True),
    ):
        ble = make_ble("omi", hub.transport(1), state=state,
                       on_native_pcm=lambda pcm, _rate: decoded.extend(pcm))
        early = _start_early(ble, state)
        assert early is not None
        # a second of audio captured while no conversation exists: it is held
        await eventually(lambda: len(decoded) >= 32_000, 15)
        metrics = Metrics()
        registry = ToolRegistry(2.0)
        link = LiveLink(live_settings(server), SecretStr(KEY), metrics,
                        declarations=registry.declarations)
        agent = Agent(link, ble, registry, metrics, state=state, early=early)
        task = asyncio.create_task(agent.run())
        try:
            await eventually(lambda: sum(len(c.pcm) for c in server.audio_chunks) >= 64_000, 15)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    received = b"".join(c.pcm for c in server.audio_chunks)
    # in order, once, nothing missing: the server's audio is a prefix of what was decoded
    assert received == bytes(decoded[: len(received)])
    assert metrics.value("edge_peripheral_dropped_before_start_total", kind="media") == 0
    assert metrics.value("edge_uplink_audio_replayed_chunks_total") == 0  # one socket

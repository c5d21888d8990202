"""What waits to go up while the Live link is down never leaves once the user turns
the camera off or mutes: the real Agent and LiveLink, the real SDK, the fake Live
server over TLS. (Before, the reconnect sent the held frame and audio after the switch.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from pydantic import SecretStr

from daemon.agent import Agent
from daemon.live.link import LiveLink
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry
from simulator.live_server import FakeLiveServer, Fault
from tests.support.agent import Camera
from tests.support.live import KEY, conversation, live_settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(30)

SPEECH = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()  # 20 ms, loud
JPEG = b"\xff\xd8" + b"private-scene" * 10 + b"\xff\xd9"


@pytest.fixture
async def server() -> AsyncIterator[FakeLiveServer]:
    async with FakeLiveServer(api_key=KEY, scenario=conversation()) as srv:
        yield srv


async def _agent_offline(server: FakeLiveServer) -> tuple[Agent, asyncio.Task[None]]:
    # The first connections hang in setup: the link is down for a while (a reconnect).
    await server.inject(Fault.SETUP_HANG, count=4)
    metrics = Metrics()
    link = LiveLink(live_settings(server, connect_timeout=0.3), SecretStr(KEY), metrics)
    agent = Agent(link, Camera(), ToolRegistry(), metrics)
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.05)
    assert not link.connected
    return agent, task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_camera_off_while_link_down_no_earlier_frame_is_sent(
        server: FakeLiveServer) -> None:
    agent, task = await _agent_offline(server)
    try:
        agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))  # the user talks
        agent.video(VideoFrame(JPEG, time.monotonic()))  # a frame goes into the queue
        agent.set_camera_enabled(False)  # the household turns the camera OFF
        assert not agent.link.connected
        await eventually(lambda: agent.link.connected, 10)
        await asyncio.sleep(1.0)
        assert agent.link.connected
    finally:
        await _stop(task)
    assert [f.jpeg for f in server.video_frames] == []
    assert agent.metrics.value("edge_uplink_withheld_total", kind="video") == 1


async def test_mute_while_link_down_no_earlier_audio_is_sent(server: FakeLiveServer) -> None:
    agent, task = await _agent_offline(server)
    try:
        for _ in range(100):  # 2 s of speech while the link is down
            agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
        assert agent.link.replay_seconds == pytest.approx(2.0)
        agent.set_mic_muted(True)  # the household mutes
        assert agent.link.replay_seconds == 0
        await eventually(lambda: agent.link.connected, 10)
        await asyncio.sleep(1.0)
    finally:
        await _stop(task)
    sent = sum(len(c.pcm) for c in server.audio_chunks) / 32_000
    assert sent == 0, f"{sent:.2f} s of audio went up after the mute"
    assert agent.metrics.value("edge_uplink_withheld_total", kind="audio") == 100

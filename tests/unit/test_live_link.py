"""The Live link without a socket: how uplink audio is batched, and an answer the model
cancelled while it waited is purged.

Against the fake Live server with the real SDK over TLS: tests/integration/test_live_link.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.genai import types
from pydantic import SecretStr

from daemon.config import LiveSettings
from daemon.live.calls import ToolResponse
from daemon.live.link import LiveLink
from daemon.live.sender import audio_batch
from daemon.live.socket_life import SocketLife
from daemon.live.uplink import UplinkBuffer
from daemon.media.types import AudioChunk
from daemon.ops.metrics import Metrics
from tests.support.live import (
    KEY,
)

pytestmark = pytest.mark.timeout(45)


async def test_an_answer_queued_when_the_cancellation_arrives_is_purged() -> None:
    # Offline (no socket), so the answers stay queued; the messages are the SDK's own.
    metrics = Metrics()
    link = LiveLink(LiveSettings(), SecretStr(KEY), metrics)
    conn = SocketLife(established_at=0.0, resumed=False)
    receiver = link._receiver  # noqa: SLF001 - white-box: the SDK's messages, no socket
    uplink = link._uplink  # noqa: SLF001 - white-box: what waits to be sent
    calls = [types.FunctionCall(id=i, name="t", args={}) for i in ("c1", "c2")]
    await receiver.on_message(
        types.LiveServerMessage(tool_call=types.LiveServerToolCall(function_calls=calls)), conn
    )
    for i in ("c1", "c2"):
        link.send_tool_response(ToolResponse(i, "t", {"output": i}))
    await receiver.on_message(types.LiveServerMessage(
        tool_call_cancellation=types.LiveServerToolCallCancellation(ids=["c1"])), conn)
    assert [r.id for r in uplink.drain_responses()] == ["c2"]
    assert metrics.value("edge_live_tool_responses_dropped_total", reason="cancelled") == 1
    link.send_tool_response(ToolResponse("c1", "t", {"output": "again"}))  # late: not queued
    assert uplink.peek_response() is None
    assert metrics.value("edge_live_tool_responses_dropped_total", reason="cancelled") == 2


async def test_an_answer_that_outlived_its_session_is_counted_lost_once() -> None:
    metrics = Metrics()
    link = LiveLink(LiveSettings(), SecretStr(KEY), metrics)
    conn = SocketLife(established_at=0.0, resumed=False)
    calls = [types.FunctionCall(id="x", name="t", args={})]
    await link._receiver.on_message(  # noqa: SLF001 - white-box: the SDK's messages, no socket
        types.LiveServerMessage(tool_call=types.LiveServerToolCall(function_calls=calls)), conn)
    link._resumption.start_fresh()  # noqa: SLF001 - the resume was refused; x still runs
    link.send_tool_response(ToolResponse("x", "t", {"output": 1}))  # its answer, too late
    assert metrics.value("edge_tool_responses_lost_total") == 1


def test_large_chunks_go_up_at_once_and_only_short_ones_wait() -> None:
    """Frame's 104 ms PCM notifications once waited for a partner, as if a backlog."""
    now = time.monotonic()

    def batch_of(chunk_ms: int, *durations: float) -> tuple[list[Any], float]:
        settings = LiveSettings(uplink_chunk_ms=chunk_ms)
        uplink = UplinkBuffer(settings.replay_seconds, settings.video_fps)
        for d in durations:
            uplink.push_audio(AudioChunk(bytes(round(d * 32_000) // 2 * 2), 16_000, now),
                              time.monotonic())
        return audio_batch(uplink, chunk_ms / 1000)

    batch, wait = batch_of(20, 0.104)
    assert (len(batch), wait) == (1, 0.0)
    batch, wait = batch_of(40, 0.104)
    assert (len(batch), wait) == (1, 0.0)
    batch, wait = batch_of(40, 0.02)  # pairing: the first waits briefly
    assert len(batch) == 1 and 0 < wait <= 0.04
    batch, wait = batch_of(20, *[0.02] * 30)  # a backlog: 200 ms messages
    assert (len(batch), wait) == (10, 0.0)

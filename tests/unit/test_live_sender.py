"""The sender's one wake-up per message: while its loop is parked with nothing else to
send, a full audio message is written from the caller's turn; anything else keeps the
loop's order, and pings still confirm what went out.

Over a real socket (the SDK's, on the fake Live server): tests/integration/test_socket_door.py
and the Live integration tests, which run on this path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.link import LiveLink
from daemon.live.socket_life import SocketLife
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from tests.support.live import KEY

pytestmark = pytest.mark.timeout(30)


class MemorySocket:
    """A LiveSocket that keeps what is written, and how: at once or by the loop."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.pings: list[asyncio.Future[float]] = []
        self.would_wait = False
        self.is_open = True
        self.close_replied = False

    async def send_text(self, frame: bytes) -> None:
        self.frames.append(("loop", frame))

    def send_text_now(self, frame: bytes) -> bool:
        if self.would_wait:
            return False
        self.frames.append(("now", frame))
        return True

    async def ping(self) -> asyncio.Future[float]:
        self.pings.append(asyncio.get_running_loop().create_future())
        return self.pings[-1]

    async def close(self) -> None:
        self.is_open = False

    def abort(self) -> None:
        self.is_open = False


class MemorySession:
    """What the sender asks of the SDK's session, kept in order."""

    def __init__(self, socket: MemorySocket) -> None:
        self.socket = socket

    async def send_realtime_input(self, **kw: Any) -> None:
        self.socket.frames.append(("sdk", repr(sorted(kw)).encode()))


def chunk(i: int) -> AudioChunk:
    return AudioChunk(bytes([i]) * 640, 16_000, 0.0)  # 20 ms


async def settle() -> None:
    """Let the sender's task run what is due (turns of the loop, no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def serving(link: LiveLink, socket: MemorySocket) -> tuple[asyncio.Task[None], SocketLife]:
    conn = SocketLife(established_at=0.0, resumed=False)
    sender = link._sender  # noqa: SLF001 - white-box: the sender alone, no SDK session
    task = asyncio.create_task(sender.run(MemorySession(socket), socket, conn))  # type: ignore[arg-type]
    await settle()
    return task, conn


async def test_audio_goes_out_in_the_callers_turn_and_a_pong_confirms_it() -> None:
    metrics = Metrics()
    link = LiveLink(LiveSettings(), SecretStr(KEY), metrics)
    socket = MemorySocket()
    task, _ = await serving(link, socket)
    link.send_audio(chunk(1))
    assert socket.frames == [("now", wire.audio_message(chunk(1).pcm))]  # before any yield
    assert metrics.value("edge_live_uplink_audio_chunks_total") == 1
    await settle()  # the first message is due a ping: the loop sends it
    assert len(socket.pings) == 1
    link.send_audio(chunk(2))  # parked again: at once, and no ping yet (one outstanding)
    assert [how for how, _ in socket.frames] == ["now", "now"]
    socket.pings[0].set_result(0.001)
    await settle()
    uplink = link._uplink  # noqa: SLF001 - white-box: what the pong confirmed
    assert uplink.audio_seconds == pytest.approx(0.02)  # chunk 1 confirmed; 2 was after the ping
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_socket_that_would_wait_leaves_audio_to_the_loop_in_order() -> None:
    link = LiveLink(LiveSettings(), SecretStr(KEY), Metrics())
    socket = MemorySocket()
    socket.would_wait = True
    task, _ = await serving(link, socket)
    for i in range(3):
        link.send_audio(chunk(i))
    assert socket.frames == []
    await settle()
    # one message, in order (a backlog goes up in larger messages)
    assert socket.frames == [("loop", wire.audio_message(b"".join(chunk(i).pcm for i in range(3))))]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_whatever_else_waits_keeps_the_loops_order() -> None:
    link = LiveLink(LiveSettings(), SecretStr(KEY), Metrics())
    socket = MemorySocket()
    task, conn = await serving(link, socket)
    link.send_video(VideoFrame(b"\xff\xd8jpeg", 0.0))
    link.send_audio(chunk(1))  # the loop has been woken for the frame: audio waits its turn
    assert socket.frames == []
    await settle()
    assert [how for how, _ in socket.frames] == ["sdk", "loop"]  # the frame first, as before
    conn.finish("goaway")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    link.send_audio(chunk(2))  # no connection: kept for the next one
    assert len(socket.frames) == 2 and link.replay_seconds == pytest.approx(0.02)

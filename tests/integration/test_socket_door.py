"""The door to google-genai's private socket: it opens on the pinned SDK, and an SDK
without what the link needs is reported (warning, metric, doctor line), never
passed over in silence.

Without a socket or a process: tests/unit/test_socket_door.py.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from google import genai
from google.genai import live as genai_live
from google.genai import types

from daemon.live import socket_door, wire
from daemon.live.calls import ToolResponse
from daemon.live.events import LinkStatus, ToolCallRequest, TurnComplete
from daemon.live.socket_door import SdkSocket, SocketDoor
from daemon.ops.metrics import Metrics
from simulator.live_server import FakeLiveServer, Fault
from simulator.probe import read_stamps, stamped_chunk
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn
from tests.support.live import (
    KEY,
    UNAVAILABLE,
    bare_link,
    door_warnings,
    keep_socket_elsewhere,
    next_event_of,
    say,
)

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def sdk_session(server: FakeLiveServer) -> AsyncIterator[genai_live.AsyncSession]:
    """A session of the real SDK on the fake server, over TLS."""
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=server.base_url, api_version="v1beta",
        async_client_args={"ssl": server.client_ssl_context()}))
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
        yield session


async def test_the_door_opens_on_the_pinned_sdk() -> None:
    ok, detail = socket_door.check()
    assert ok, detail
    assert detail.startswith(f"google-genai {importlib.metadata.version('google-genai')}: ")
    metrics = Metrics()
    door = SocketDoor(metrics)
    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=())) as server:
        async with sdk_session(server) as session:
            socket = door.open(session)
            assert isinstance(socket, SdkSocket)
            was_open = socket.is_open
            pcm = stamped_chunk(7, True)
            await socket.send_text(wire.audio_message(pcm))  # the raw audio path
            pcm2 = stamped_chunk(8, True)
            assert socket.send_text_now(wire.audio_message(pcm2))  # no waiting needed: written
            pong = await socket.ping()
            assert await asyncio.wait_for(pong, 5) >= 0  # the pong came: read up to here
            await server.wait_until(lambda: len(server.audio_chunks) == 2)
            assert [c.pcm for c in server.audio_chunks] == [pcm, pcm2]
            await socket.close()
            assert was_open and socket.close_replied and not socket.is_open
            assert not socket.send_text_now(wire.audio_message(pcm))  # closed: not written
        await server.wait_until(lambda: not server.connections[0].open)
        assert server.connections[0].close_received == (1000, "")
        async with sdk_session(server) as session:
            socket = door.open(session)
            assert socket is not None
            socket.abort()  # what the link does to a stalled server
            await server.wait_until(lambda: not server.connections[1].open)
            assert not socket.is_open and not socket.close_replied
        assert server.connections[1].close_received is None  # no close handshake
    assert metrics.value(UNAVAILABLE) == 0


async def test_the_link_says_so_and_talks_on_without_the_door(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keep_socket_elsewhere(monkeypatch, "foreign")
    caplog.set_level(logging.WARNING)
    turn = Turn(user="do it", reply="result: {result}", audio=ReplyAudio(duration_ms=100),
                tool_calls=(ToolCallSpec("lamp"),))
    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=(turn,), loop=True)) as server:
        metrics = Metrics()
        async with bare_link(server, metrics) as link:
            say(link)
            (call,) = (await next_event_of(link, ToolCallRequest)).calls
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": "on"}))
            await next_event_of(link, TurnComplete)
            await server.inject(Fault.CLOSE, code=1011)
            while not (await next_event_of(link, LinkStatus)).resumed:
                pass
            say(link, first=100)  # the SDK's own audio path still works
            await next_event_of(link, ToolCallRequest)
        assert not server.internal_errors
    assert [r.id for r in server.tool_responses] == [call.id]
    heard = [seq for c in server.audio_chunks for seq in read_stamps(c.pcm)]
    assert heard == [*range(55), *range(100, 155)]  # every chunk, once, in order
    assert metrics.value(UNAVAILABLE) == 2  # both connections ran without confirmation
    (warning,) = door_warnings(caplog)
    assert "taken as delivered" in warning

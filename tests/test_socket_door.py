"""The door to google-genai's private socket: it opens on the pinned SDK, and an SDK
without what the link needs is reported (warning, metric, doctor line), never
passed over in silence."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from google import genai
from google.genai import live as genai_live
from google.genai import types

from daemon.cli import main as cli_main
from daemon.live import socket_door, wire
from daemon.live.calls import ToolResponse
from daemon.live.events import LinkStatus, ToolCallRequest, TurnComplete
from daemon.live.socket_door import SdkSocket, SocketDoor
from daemon.ops.metrics import Metrics
from simulator.live_server import FakeLiveServer, Fault
from simulator.probe import read_stamps, stamped_chunk
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn
from tests.live_support import KEY, bare_link, next_event_of, say

pytestmark = pytest.mark.timeout(30)

UNAVAILABLE = "edge_live_sdk_socket_unavailable_total"


@asynccontextmanager
async def sdk_session(server: FakeLiveServer) -> AsyncIterator[genai_live.AsyncSession]:
    """A session of the real SDK on the fake server, over TLS."""
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=server.base_url, api_version="v1beta",
        async_client_args={"ssl": server.client_ssl_context()}))
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
        yield session


class ForeignSocket:
    """What a later SDK might keep at `_ws`: a socket that works, not websockets' own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def keep_socket_elsewhere(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Make the SDK's sessions keep their socket the way a later release might."""
    original = genai_live.AsyncSession.__init__

    def init(self: genai_live.AsyncSession, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if how == "renamed":  # the attribute is gone (the SDK's own methods would fail too)
            vars(self)["_websocket"] = vars(self).pop("_ws")
        else:  # still there, but another library's connection
            vars(self)["_ws"] = ForeignSocket(vars(self)["_ws"])

    monkeypatch.setattr(genai_live.AsyncSession, "__init__", init)


def door_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "daemon.live.socket_door" and r.levelno == logging.WARNING]


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
            pong = await socket.ping()
            assert await asyncio.wait_for(pong, 5) >= 0  # the pong came: read up to here
            await server.wait_until(lambda: len(server.audio_chunks) == 1)
            assert server.audio_chunks[0].pcm == pcm
            await socket.close()
            assert was_open and socket.close_replied and not socket.is_open
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


def test_a_missing_attribute_is_detected_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keep_socket_elsewhere(monkeypatch, "renamed")
    ok, detail = socket_door.check()
    assert not ok
    assert "AsyncSession._ws" in detail and "taken as delivered" in detail
    metrics = Metrics()
    door = SocketDoor(metrics)
    session = genai_live.AsyncSession(api_client=cast(Any, None), websocket=cast(Any, object()))
    caplog.set_level(logging.WARNING)
    assert door.open(session) is None
    assert door.open(session) is None
    assert metrics.value(UNAVAILABLE) == 2  # every connection without it is counted
    (warning,) = door_warnings(caplog)  # and said once, with the version
    assert "AsyncSession._ws" in warning and "google-genai " in warning


def test_doctor_prints_the_door(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "edge-agent.toml"
    config.write_text("")
    for name in ("EDGE_AGENT_CONFIG", "GEMINI_API_KEY", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    cli_main(["doctor", "--config", str(config)])
    assert "ok   Live SDK socket: google-genai " in capsys.readouterr().out
    keep_socket_elsewhere(monkeypatch, "renamed")
    cli_main(["doctor", "--config", str(config)])
    assert "WARN  Live SDK socket: google-genai " in capsys.readouterr().out


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

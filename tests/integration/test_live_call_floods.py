"""A Live server that floods tool calls, or sends absurd call fields: the cost is bounded
and every call the daemon takes is still answered exactly once.

The real SDK against the fake Live server over TLS, calls injected as raw toolCall
messages (as tests/integration/test_live_call_seams.py). Each case failed before
(review of the resource bounds): 20,000 calls in one message made 20,000 tasks, each
answer went up with its own ping (a burst of n answers cost n^2), and a 100 KB call id
made the stored session too big to load, so a restart lost the handle and left another
open call unanswered for ever. Pure parts: tests/unit/test_tool_call_bounds.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from daemon.agent import Agent
from daemon.live.calls import ToolResponse
from daemon.live.events import LinkStatus, ToolCallRequest
from daemon.live.link import LiveLink
from daemon.live.resumption import INTERRUPTED_ANSWER
from daemon.live.session_record import RECORD
from daemon.live.socket_door import LiveSocket
from daemon.live.socket_life import SocketLife
from daemon.live.wire import MAX_CALL_NAME_CHARS
from daemon.ops.metrics import Metrics
from daemon.ops.state import MAX_RECORD_BYTES, StateStore
from daemon.tools.dispatch import BUSY_ANSWER, MAX_IN_FLIGHT
from daemon.tools.registry import Tool, ToolRegistry
from simulator.live_server import FakeLiveServer
from tests.support.live import KEY, Talker, live_settings, next_event_of
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(90)
DROPPED = "edge_live_messages_dropped_total"


@contextlib.asynccontextmanager
async def agent_on(
    server: FakeLiveServer, state: Path, metrics: Metrics, gate: asyncio.Event,
) -> AsyncIterator[Agent]:
    """An Agent whose tool `slow` answers once `gate` is set; no speech."""
    async def slow(_: dict[str, Any]) -> str:
        await gate.wait()
        return "done"

    registry = ToolRegistry(60.0)
    registry.register(Tool("slow", "waits for the test", {"type": "object", "properties": {}},
                           slow))
    link = LiveLink(live_settings(server, resume_save_interval=0.0), SecretStr(KEY), metrics,
                    declarations=registry.declarations, state=StateStore(state))
    agent = Agent(link, Talker([(False, 600.0)], speed=1.0), registry, metrics)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: link.connected and link.handle is not None, 20)
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def answers(server: FakeLiveServer) -> list[Any]:
    """Every answer the server got (raw-injected calls are not awaited by its script)."""
    return [*server.tool_responses, *server.unexpected_tool_responses]


def stored_calls(state: Path) -> list[Any] | None:
    path = state / f"{RECORD}.json"
    return json.loads(path.read_text()).get("open_calls") if path.exists() else None


async def send_calls(server: FakeLiveServer, calls: list[dict[str, Any]]) -> None:
    await server.send_raw({"toolCall": {"functionCalls": calls}})


async def test_a_flood_of_calls_runs_a_few_and_answers_every_one_once(
    server: FakeLiveServer, tmp_path: Path,
) -> None:
    n = 600
    metrics, gate = Metrics(), asyncio.Event()
    async with agent_on(server, tmp_path, metrics, gate) as agent:
        await send_calls(server, [{"id": f"c{i}", "name": "slow", "args": {}}
                                  for i in range(n)])
        busy = n - MAX_IN_FLIGHT
        await eventually(lambda: sum(a.response == BUSY_ANSWER for a in answers(server))
                         == busy, 30)
        assert agent.dispatcher.in_flight == MAX_IN_FLIGHT
        assert metrics.value("edge_tool_calls_total", tool="slow",
                             outcome="refused_busy") == busy
        gate.set()
        await eventually(lambda: len(answers(server)) >= n, 30)
        await eventually(lambda: agent.link._resumption.open_calls() == {}, 10)  # noqa: SLF001
    ids = Counter(a.id for a in answers(server))
    assert ids == Counter({f"c{i}": 1 for i in range(n)}), "a call unanswered or answered twice"
    assert metrics.value("edge_tool_calls_total", tool="slow", outcome="ok") == MAX_IN_FLIGHT
    assert not server.duplicate_tool_responses


async def test_a_burst_of_answers_goes_up_behind_few_pings_and_is_confirmed(
    server: FakeLiveServer, tmp_path: Path,
) -> None:
    """A ping (and, at its pong, a rewrite of the record) per answer made n answers cost
    n^2; one behind the last of a burst confirms them all."""
    n = 300
    link = LiveLink(live_settings(server), SecretStr(KEY), Metrics(), state=StateStore(tmp_path))
    pings = 0
    ping = link._sender.ping  # noqa: SLF001 - counted, and still sent

    async def counted(socket: LiveSocket, conn: SocketLife) -> None:
        nonlocal pings
        pings += 1
        await ping(socket, conn)

    link._sender.ping = counted  # type: ignore[method-assign]  # noqa: SLF001
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: link.connected and link.handle is not None, 20)
        await send_calls(server, [{"id": f"c{i}", "name": "slow"} for i in range(n)])
        request = await next_event_of(link, ToolCallRequest, 20)
        assert len(request.calls) == n
        await eventually(lambda: stored_calls(tmp_path), 10)
        for call in request.calls:
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": "ok"}))
        await eventually(lambda: len(answers(server)) >= n, 30)
        await eventually(lambda: stored_calls(tmp_path) == [], 10)
        assert pings <= 10, f"{pings} pings for {n} answers"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert Counter(a.id for a in answers(server)) == Counter({f"c{i}": 1 for i in range(n)})


async def test_absurd_call_fields_cost_neither_the_record_nor_the_answers(
    server: FakeLiveServer, tmp_path: Path,
) -> None:
    metrics, gate = Metrics(), asyncio.Event()
    record = tmp_path / f"{RECORD}.json"
    async with agent_on(server, tmp_path, metrics, gate):
        # an ordinary open call beside one whose id is 100 KB: that one cannot be stored
        await send_calls(server, [{"id": "ok-1", "name": "slow", "args": {}},
                                  {"id": "i" * 100_000, "name": "slow", "args": {}}])
        # a tool no one has, named with 2 MB
        await send_calls(server, [{"id": "u-1", "name": "n" * 2_000_000, "args": {}}])
        await eventually(lambda: any(a.id == "u-1" for a in answers(server)), 20)
        (unknown,) = [a for a in answers(server) if a.id == "u-1"]
        assert len(unknown.name) <= MAX_CALL_NAME_CHARS
        assert "unknown tool" in unknown.response["error"]
        assert len(json.dumps(unknown.response)) < 1000
        assert metrics.value(DROPPED, reason="call_id_too_long") == 1
        assert metrics.value(DROPPED, reason="call_name_too_long") == 1
        await eventually(lambda: stored_calls(tmp_path) == [{"id": "ok-1", "name": "slow"}], 10)
        # the process dies here, with ok-1 open
    assert record.stat().st_size <= MAX_RECORD_BYTES
    assert not any(len(a.id or "") > 256 for a in answers(server))
    metrics = Metrics()
    link = LiveLink(live_settings(server), SecretStr(KEY), metrics, state=StateStore(tmp_path))
    assert link.handle is not None, "the stored session was refused"
    task = asyncio.create_task(link.run())
    try:
        while (status := await next_event_of(link, LinkStatus, 20)).state != "connected":
            pass
        assert status.resumed
        await eventually(lambda: any(a.id == "ok-1" for a in answers(server)), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [a.response for a in answers(server) if a.id == "ok-1"] == [INTERRUPTED_ANSWER]

"""Tool calls at the seams of a session's life: a call the server sends again after it
was answered (by this process, or as interrupted by the next one after a restart) is
neither run again nor waited on, and the stored record follows cancellations.

The link in this process against the fake Live server (the real SDK over TLS), with a
state directory, as tests/integration/test_live_restart.py. (Each case failed before:
review of 2026-12-06.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from daemon.live.calls import FunctionCall, ToolResponse
from daemon.live.events import LinkStatus, LiveEvent, ToolCallRequest, TurnComplete
from daemon.live.link import LiveLink
from daemon.live.resumption import INTERRUPTED_ANSWER
from daemon.live.session_record import RECORD
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore
from simulator.live_server import FakeLiveServer, Fault
from tests.support.live import KEY, live_settings, next_event_of, say
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)
REPEATED = ("edge_live_messages_dropped_total", {"reason": "call_already_answered"})


@contextlib.asynccontextmanager
async def link_on(server: FakeLiveServer, state: Path, metrics: Metrics) -> AsyncIterator[LiveLink]:
    link = LiveLink(live_settings(server), SecretStr(KEY), metrics, state=StateStore(state))
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def stored_calls(state: Path) -> list[Any] | None:
    path = state / f"{RECORD}.json"
    return json.loads(path.read_text()).get("open_calls") if path.exists() else None


async def send_again(server: FakeLiveServer, call: FunctionCall) -> None:
    await server.send_raw({"toolCall": {"functionCalls": [
        {"id": call.id, "name": call.name, "args": {}}]}})


async def events_until_turn_end(server: FakeLiveServer, link: LiveLink) -> list[LiveEvent]:
    """What the Agent is handed up to a turn end the server sends now, as a marker."""
    await server.send_raw({"serverContent": {"turnComplete": True}})
    seen: list[LiveEvent] = []
    async with asyncio.timeout(10):
        while not isinstance(ev := await link.next_event(), TurnComplete):
            seen.append(ev)
    return seen


async def an_answered_call(server: FakeLiveServer, link: LiveLink, state: Path) -> FunctionCall:
    say(link)
    (call,) = (await next_event_of(link, ToolCallRequest, 20)).calls
    link.send_tool_response(ToolResponse(call.id, call.name, {"output": "ok"}))
    await next_event_of(link, TurnComplete, 20)
    await eventually(lambda: stored_calls(state) == [], 10)  # confirmed by a pong
    return call


async def test_a_call_sent_again_after_its_answer_is_not_run_nor_waited_on(
    server: FakeLiveServer, tmp_path: Path,
) -> None:
    metrics = Metrics()
    async with link_on(server, tmp_path, metrics) as link:
        call = await an_answered_call(server, link, tmp_path)
        await send_again(server, call)
        await eventually(lambda: metrics.value(REPEATED[0], **REPEATED[1]) == 1, 10)
        assert not any(isinstance(ev, ToolCallRequest)
                       for ev in await events_until_turn_end(server, link))
        assert call.id not in link._resumption.open_calls()  # noqa: SLF001 - nothing public says it
        # ... so a GoAway hands over at the next quiet moment, not at its deadline
        t0 = time.monotonic()
        await server.inject(Fault.GOAWAY, time_left=8.0)
        while (await next_event_of(link, LinkStatus, 20)).state != "reconnecting":
            pass
        assert time.monotonic() - t0 < 4.0
    assert stored_calls(tmp_path) == []
    assert [r.id for r in server.tool_responses].count(call.id) == 1


async def test_after_a_restart_a_call_sent_again_is_not_run_a_second_time(
    server: FakeLiveServer, tmp_path: Path,
) -> None:
    async with link_on(server, tmp_path, Metrics()) as link:
        say(link)
        (call,) = (await next_event_of(link, ToolCallRequest, 20)).calls
        await eventually(lambda: bool(stored_calls(tmp_path)), 20)
        # the process dies here, perhaps after its device command went out
    metrics = Metrics()
    async with link_on(server, tmp_path, metrics) as link:
        while (status := await next_event_of(link, LinkStatus, 20)).state != "connected":
            pass
        assert status.resumed
        await eventually(lambda: any(r.id == call.id for r in server.tool_responses), 10)
        await send_again(server, call)
        await eventually(lambda: metrics.value(REPEATED[0], **REPEATED[1]) == 1, 10)
        assert not any(isinstance(ev, ToolCallRequest)
                       for ev in await events_until_turn_end(server, link))
    answers = [r.response for r in server.tool_responses if r.id == call.id]
    assert answers == [INTERRUPTED_ANSWER]


async def test_a_cancelled_call_leaves_the_stored_record_at_once(
    server: FakeLiveServer, tmp_path: Path,
) -> None:
    """Else a restart before the next handle would answer what the model withdrew."""
    async with link_on(server, tmp_path, Metrics()) as link:
        say(link)
        (call,) = (await next_event_of(link, ToolCallRequest, 20)).calls
        await eventually(lambda: bool(stored_calls(tmp_path)), 20)
        await server.send_raw({"toolCallCancellation": {"ids": [call.id]}})
        await eventually(lambda: stored_calls(tmp_path) == [], 10)

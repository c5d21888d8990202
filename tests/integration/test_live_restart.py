"""The conversation survives a restart (issue 11, item 3): the newest resumption handle is
kept in the state directory, and the next start resumes with it.

First the link in this process against the fake Live server (the real SDK over TLS),
then the real daemon, `edge-agent run` with the file peripheral, killed with SIGKILL
and stopped with SIGTERM: the fake's records show the second process's connection
resumed the first one's session with the stored handle, and the talk goes on.

Without a socket: tests/unit/test_live_session_record.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from daemon.live.calls import ToolResponse
from daemon.live.events import LinkStatus, ToolCallRequest, TurnComplete
from daemon.live.link import LiveLink
from daemon.live.resumption import INTERRUPTED_ANSWER
from daemon.live.session_record import RECORD, endpoint_id
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore
from simulator.broker import free_port
from simulator.live_server import FakeLiveServer, Fault
from simulator.probe import stamped_wav
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn
from tests.support.live import KEY, live_settings, next_event_of, say
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def link_on(server: FakeLiveServer, state: Path, metrics: Metrics,
                  **overrides: Any) -> AsyncIterator[LiveLink]:
    """A link whose state directory is `state` (one process's life)."""
    link = LiveLink(live_settings(server, **overrides), SecretStr(KEY), metrics,
                    state=StateStore(state))
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def handles_issued_on(srv: FakeLiveServer, conn: int) -> list[str]:
    out = []
    for m in srv.connections[conn].sent:
        upd = m.message.get("sessionResumptionUpdate")
        if upd and upd.get("newHandle"):
            out.append(upd["newHandle"])
    return out


def stored(state: Path) -> dict[str, Any] | None:
    try:  # the daemon's writer thread may delete it between a check and a read
        return json.loads((state / f"{RECORD}.json").read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


def starts(metrics: Metrics) -> dict[str, float]:
    reasons = ("resumed", "refused", "expired", "changed", "corrupt", "none")
    return {r: v for r in reasons
            if (v := metrics.value("edge_live_start_sessions_total", reason=r))}


async def connected(link: LiveLink) -> LinkStatus:
    while (status := await next_event_of(link, LinkStatus, 20)).state != "connected":
        assert status.state != "failed"
    return status


async def first_turn(link: LiveLink) -> None:
    """The scenario's first turn: a call to agent_status, answered, and the reply."""
    say(link)
    (call,) = (await next_event_of(link, ToolCallRequest, 20)).calls
    link.send_tool_response(ToolResponse(call.id, call.name, {"output": "ok"}))
    await next_event_of(link, TurnComplete, 20)


async def test_a_clean_stop_keeps_the_handle_and_the_next_start_resumes(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    async with link_on(server, tmp_path, Metrics()) as link:
        await first_turn(link)
        await eventually(lambda: link.handle == handles_issued_on(server, 0)[-1], 20)
    record = stored(tmp_path)
    assert record is not None and record["handle"] == handles_issued_on(server, 0)[-1]
    assert record["open_calls"] == [] and KEY not in json.dumps(record)
    assert abs(record["issued_at"] - time.time()) < 60
    metrics = Metrics()
    async with link_on(server, tmp_path, metrics) as link:
        assert (await connected(link)).resumed
        say(link, first=100)
        await next_event_of(link, TurnComplete, 20)  # the session's second turn
    first, second = server.connections
    assert second.requested_handle == record["handle"] and second.resumed
    assert second.session_id == first.session_id
    assert [t.turn_index for t in server.turns] == [0, 1]
    assert starts(metrics) == {"resumed": 1}
    assert metrics.value("edge_live_fresh_sessions_total", reason="resume_refused") == 0


async def test_a_stored_handle_too_old_is_not_tried(server: FakeLiveServer, tmp_path: Path) -> None:
    settings = live_settings(server)
    StateStore(tmp_path).save(RECORD, {
        "version": 1, "handle": "an-old-handle", "issued_at": time.time() - 7300,
        "endpoint": endpoint_id(settings), "open_calls": []})
    metrics = Metrics()
    async with link_on(server, tmp_path, metrics) as link:
        assert not (await connected(link)).resumed
        await eventually(lambda: (stored(tmp_path) or {}).get("handle") == link.handle, 20)
    assert server.connections[0].requested_handle is None
    assert starts(metrics) == {"expired": 1}


async def test_a_refused_stored_handle_gives_a_fresh_session_not_an_exit(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    async with link_on(server, tmp_path, Metrics()) as link:
        await first_turn(link)
    old = stored(tmp_path)
    assert old is not None
    await server.inject(Fault.REJECT_RESUME, count=1)
    metrics = Metrics()
    async with link_on(server, tmp_path, metrics) as link:
        assert not (await connected(link)).resumed  # no LiveFatalError: not the key
        await eventually(lambda: (stored(tmp_path) or {}).get("handle") == link.handle, 20)
        await first_turn(link)  # the fresh session works
    refused, fresh = list(server.connections)[1:]
    assert refused.requested_handle == old["handle"]
    assert refused.close_sent is not None and refused.close_sent[0] == 1007
    assert fresh.requested_handle is None
    assert starts(metrics) == {"refused": 1}
    assert metrics.value("edge_live_fresh_sessions_total", reason="resume_refused") == 1
    assert metrics.value("edge_live_session_writes_total", result="deleted") == 1
    record = stored(tmp_path)
    assert record is not None and record["handle"] in handles_issued_on(server, 2)


async def test_a_call_left_open_by_the_old_process_is_answered_and_the_talk_goes_on(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    async with link_on(server, tmp_path, Metrics()) as link:
        say(link)
        (call,) = (await next_event_of(link, ToolCallRequest, 20)).calls
        # written at once, with the handle from before the turn (none comes during it)
        await eventually(lambda: (stored(tmp_path) or {}).get("open_calls"), 20)
        # ... and the process goes away without an answer
    assert stored(tmp_path)["open_calls"] == [{"id": call.id, "name": call.name}]  # type: ignore[index]
    metrics = Metrics()
    async with link_on(server, tmp_path, metrics) as link:
        assert (await connected(link)).resumed
        await next_event_of(link, TurnComplete, 20)  # the waiting turn finished: not wedged
        say(link, first=100)
        await next_event_of(link, TurnComplete, 20)  # and the next one
    (answer,) = server.tool_responses
    assert (answer.id, answer.connection, answer.response) == (call.id, 1, INTERRUPTED_ANSWER)
    assert answer.scheduling == "WHEN_IDLE"
    assert not server.unexpected_tool_responses
    assert server.turns[0].completed_on == 1
    assert metrics.value("edge_live_interrupted_calls_total", outcome="answered") == 1
    assert starts(metrics) == {"resumed": 1}


# -- the real daemon, killed and restarted ----------------------------------------------
def _utterances_wav(path: Path, n: int) -> Path:
    """n utterances (0.5 s of tone, 1 s of silence) of stamped 20 ms chunks."""
    return stamped_wav(path, [(False, 0.3)] + [(True, 0.5), (False, 1.0)] * n)


class Daemon:
    """One `edge-agent run` process sharing the test's state directory."""

    def __init__(self, server: FakeLiveServer, tmp_path: Path, **extra: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EDGE_AGENT_", "GEMINI", "STATE_DIRECTORY"))}
        (tmp_path / "none.toml").write_text("")
        env.update(
            GEMINI_API_KEY=KEY,
            EDGE_AGENT_CONFIG=str(tmp_path / "none.toml"),
            EDGE_AGENT_LIVE__BASE_URL=server.base_url,
            EDGE_AGENT_LIVE__CA_FILE=str(server.ca_pem_path),
            EDGE_AGENT_PERIPHERAL__FILE__INPUT=str(_utterances_wav(tmp_path / "in.wav", 6)),
            EDGE_AGENT_PERIPHERAL__FILE__OUTPUT=str(tmp_path / "reply.wav"),
            EDGE_AGENT_OPS__HEALTH_PORT=str(self.port),
            STATE_DIRECTORY=str(tmp_path / "state"),
            **extra,
        )
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def stop(self, sig: signal.Signals) -> tuple[int, str]:
        assert self.proc is not None and self.proc.stderr is not None
        self.proc.send_signal(sig)
        err = await asyncio.wait_for(self.proc.stderr.read(), 20)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        return code, err.decode(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def metric(self, name: str, **labels: str) -> float:
        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=5) as r:
                return str(r.read().decode())

        text = await asyncio.to_thread(get)
        want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.mark.slow  # two daemons, real time: about 15 s each
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_the_daemon_comes_back_inside_the_same_conversation(
    server: FakeLiveServer, tmp_path: Path, sig: signal.Signals
) -> None:
    first = Daemon(server, tmp_path)
    second = Daemon(server, tmp_path)
    try:
        await first.start()
        # a turn or two, and the record holds the newest handle the server issued
        await server.wait_until(lambda: sum(t.turn_complete_at is not None
                                            for t in server.turns) >= 2, timeout=40)

        def up_to_date() -> bool:
            record = stored(tmp_path / "state")
            return record is not None and record["handle"] == handles_issued_on(server, 0)[-1]

        await eventually(up_to_date, 20)
        turns_before = len(server.turns)
        if sig is signal.SIGKILL:  # nothing is sent between the check and the kill
            assert first.proc is not None
            first.proc.kill()
            await asyncio.wait_for(first.proc.wait(), 20)
        else:  # a clean stop writes the newest handle it took in
            code, err = await first.stop(sig)
            assert code == 0, err[-2000:]
        stopped_at = time.monotonic()
        handle = stored(tmp_path / "state")["handle"]  # type: ignore[index]
        assert handle in handles_issued_on(server, 0)
        await second.start()
        await server.wait_until(lambda: len(server.connections) >= 2
                                and server.connections[1].setup_completed_at is not None,
                                timeout=40)
        resumed_after = server.connections[1].setup_completed_at - stopped_at  # type: ignore[operator]
        # the talk goes on in the same session: new audio, a new turn with its reply
        await server.wait_until(lambda: any(t.connection == 1 and t.turn_complete_at
                                            and t.audio_bytes_sent for t in server.turns),
                                timeout=40)
        assert await second.metric("edge_live_start_sessions_total", reason="resumed") == 1
        code, err = await second.stop(signal.SIGTERM)
    finally:
        first.kill()
        second.kill()
    assert code == 0, err[-2000:]
    old, new = list(server.connections)[:2]
    assert new.requested_handle == handle and new.resumed
    assert new.session_id == old.session_id
    assert len(server.turns) > turns_before
    assert [t.turn_index for t in server.turns] == list(range(len(server.turns)))
    assert any(a.connection == 1 for a in server.audio_chunks)
    assert KEY not in (tmp_path / "state" / f"{RECORD}.json").read_text()
    print(f"restart ({sig.name}) to resumed session: {resumed_after:.2f} s")


@pytest.mark.slow
async def test_a_refused_stored_handle_at_start_is_a_fresh_session_not_exit_2(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    settings = live_settings(server)
    StateStore(tmp_path / "state").save(RECORD, {
        "version": 1, "handle": "a-handle-from-a-session-that-is-gone",
        "issued_at": time.time() - 60, "endpoint": endpoint_id(settings), "open_calls": []})
    daemon = Daemon(server, tmp_path)
    try:
        await daemon.start()
        await server.wait_until(lambda: len(server.connections) >= 2
                                and server.connections[1].setup_completed_at is not None,
                                timeout=40)
        await eventually(lambda: daemon.proc is not None and daemon.proc.returncode is None, 1)
        assert await daemon.metric("edge_live_start_sessions_total", reason="refused") == 1
        code, err = await daemon.stop(signal.SIGTERM)
    finally:
        daemon.kill()
    assert code == 0, err[-2000:]
    refused, fresh = list(server.connections)[:2]
    assert refused.requested_handle == "a-handle-from-a-session-that-is-gone"
    assert refused.close_sent is not None and refused.close_sent[0] == 1007
    assert fresh.requested_handle is None
    assert "resume refused" in err


@pytest.mark.slow
async def test_a_call_open_when_the_daemon_is_killed_is_answered_by_the_next_one(
    tmp_path: Path,
) -> None:
    # control_device is not registered until the home's inventory is read, and the
    # broker is unreachable: the call waits (tools' readiness wait) while the daemon dies.
    lamp = Turn(user="lamp on", reply="lamp: {result}", audio=ReplyAudio(duration_ms=200),
                tool_calls=(ToolCallSpec("control_device", {"device": "lamp"}),))
    chat = Turn(user="thanks", reply="you're welcome", audio=ReplyAudio(duration_ms=200))
    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=(lamp, chat, chat))) as server:
        closed = free_port()  # nothing listens here
        first = Daemon(server, tmp_path, EDGE_AGENT_MQTT__HOST="127.0.0.1",
                       EDGE_AGENT_MQTT__PORT=str(closed))
        second = Daemon(server, tmp_path, EDGE_AGENT_MQTT__HOST="127.0.0.1",
                        EDGE_AGENT_MQTT__PORT=str(closed))
        try:
            await first.start()
            await server.wait_until(lambda: bool(server.tool_calls), timeout=40)
            (call,) = server.tool_calls
            await eventually(lambda: (stored(tmp_path / "state") or {}).get("open_calls"), 5)
            assert first.proc is not None
            first.proc.kill()
            await asyncio.wait_for(first.proc.wait(), 20)
            assert not server.tool_responses  # it died before answering
            await second.start()
            await server.wait_until(lambda: server.turns[0].turn_complete_at is not None,
                                    timeout=40)
            await server.wait_until(lambda: len(server.turns) >= 2
                                    and server.turns[1].turn_complete_at is not None, timeout=40)
            assert await second.metric("edge_live_interrupted_calls_total",
                                       outcome="answered") == 1
            code, err = await second.stop(signal.SIGTERM)
        finally:
            first.kill()
            second.kill()
        assert not server.internal_errors
    assert code == 0, err[-2000:]
    (answer,) = server.tool_responses
    assert (answer.id, answer.connection, answer.response) == (call.id, 1, INTERRUPTED_ANSWER)
    assert not server.unexpected_tool_responses
    assert server.turns[0].completed_on == 1 and server.turns[1].connection == 1

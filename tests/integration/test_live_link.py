"""The Live link against the fake Live server: real google-genai SDK, TLS, loopback.

Every fault test checks the same three promises afterwards: the conversation
goes on, the server saw the right resumption handle, and every uplink chunk
arrived exactly once and in order (by sequence number, not by count).

Without a socket or a process: tests/unit/test_live_link.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from daemon.backoff import Backoff
from daemon.live.calls import ToolResponse
from daemon.live.events import (
    LinkStatus,
    ModelAudio,
    ToolCallCancelled,
    ToolCallRequest,
    TurnComplete,
)
from daemon.live.link import UNENCODABLE_ANSWER, LiveFatalError, LiveLink
from daemon.media.types import VideoFrame
from daemon.ops.metrics import Metrics
from simulator.live_server import FakeLiveServer, Fault, Trigger, decode_base64
from simulator.probe import read_stamps
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn
from tests.support.live import (
    KEY,
    Run,
    Talker,
    bare_link,
    live_settings,
    next_event_of,
    running,
    say,
    utterances,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(45)


def assert_exactly_once_in_order(run: Run) -> None:
    seqs = run.received_seqs()
    assert None not in seqs
    assert seqs == list(range(run.talker.sent)), _gaps(seqs)
    assert run.dropped() == 0


def _gaps(seqs: list[int | None]) -> str:
    ints = [s for s in seqs if s is not None]
    dup = len(ints) - len(set(ints))
    missing = sorted(set(range(max(ints, default=0) + 1)) - set(ints))
    return f"duplicates={dup} missing={missing[:20]} order_ok={ints == sorted(ints)}"


def assert_no_call_unanswered(run: Run) -> None:
    srv = run.server
    assert not srv.unexpected_tool_responses
    answered = {r.id for r in srv.tool_responses}
    cancelled = {i for c in srv.tool_cancellations for i in c.ids}
    asked = {c.id for c in srv.tool_calls}
    assert asked <= answered | cancelled, asked - answered


def handles_issued_on(srv: FakeLiveServer, conn: int) -> list[str]:
    out = []
    for m in srv.connections[conn].sent:
        upd = m.message.get("sessionResumptionUpdate")
        if upd and upd.get("newHandle"):
            out.append(upd["newHandle"])
    return out


async def test_conversation_with_tool_round_trip(server: FakeLiveServer) -> None:
    talker = Talker(utterances(2))
    async with running(server, talker) as run:
        await run.until(lambda: run.turns_completed() >= 2)
        await run.all_audio_delivered()
    assert len(server.connections) == 1
    setup = server.connections[0].setup
    assert "sessionResumption" in setup or "session_resumption" in setup
    assert "contextWindowCompression" in setup or "context_window_compression" in setup
    (resp,) = server.tool_responses
    assert resp.name == "agent_status"
    assert resp.response["output"]["live_link"] == "connected"
    assert resp.scheduling == "WHEN_IDLE"
    assert len(run.talker.played) >= 2 * 24_000 * 2 * 0.2 * 0.9  # two 200 ms replies
    assert [outcome for _, outcome in run.calls] == ["ok"]
    assert_exactly_once_in_order(run)
    assert_no_call_unanswered(run)
    # the answer went up once, and the pong right behind it confirmed it
    assert [m.kind for m in server.connections[0].messages].count("tool_response") == 1
    assert run.link._uplink.unconfirmed_responses == 0  # noqa: SLF001 - white-box: confirmed
    assert run.metrics.value("edge_live_tool_responses_resent_total") == 0
    assert run.metrics.value("edge_live_connects_total", result="fresh") == 1
    # by default each 20 ms chunk is its own message, sent the moment it is handed over
    assert {len(c.pcm) for c in server.audio_chunks} == {640}


async def test_uplink_pairs_chunks_when_asked(server: FakeLiveServer) -> None:
    talker = Talker(utterances(1))
    async with running(server, talker, uplink_chunk_ms=40) as run:
        await run.until(lambda: run.turns_completed() >= 1)
        await run.all_audio_delivered()
    sizes = [len(c.pcm) for c in server.audio_chunks]
    assert max(sizes) == 1280
    assert sizes.count(1280) >= 0.9 * len(sizes)
    assert_exactly_once_in_order(run)


async def test_goaway_hands_over_to_a_resumed_session(server: FakeLiveServer) -> None:
    armed = server.arm(Fault.GOAWAY, Trigger.TURN_COMPLETE, n=1, time_left=3.0)
    talker = Talker(utterances(3))
    async with running(server, talker) as run:
        await armed.wait()
        await run.until(lambda: run.turns_completed() >= 3)
        await run.all_audio_delivered()
    assert len(server.connections) == 2
    old, new = server.connections
    assert new.resumed
    assert new.requested_handle == handles_issued_on(server, 0)[-1]
    # the client left before the deadline: no 1011 "Deadline expired"
    assert old.close_sent is None or old.close_sent[0] != 1011
    assert run.metrics.value("edge_live_disconnects_total", reason="goaway") == 1
    # we closed, the server replied: everything sent was read, nothing taken on trust
    assert run.metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                             reason="goaway") == 0
    assert_exactly_once_in_order(run)
    assert_no_call_unanswered(run)


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        (Fault.ABORT, None, "closed:1006"),
        (Fault.CLOSE, 1011, "closed:1011"),
        (Fault.CLOSE, 1000, "closed:1000"),
        (Fault.CLOSE, 1008, "closed:1008"),
    ],
)
async def test_unplanned_close_resumes_at_once(
    server: FakeLiveServer, fault: Fault, code: int | None, reason: str
) -> None:
    kwargs = {"code": code} if code else {}
    # chunk 90 is inside the second utterance: the fault splits it across sockets
    armed = server.arm(fault, Trigger.AUDIO_CHUNK, n=90, **kwargs)
    talker = Talker(utterances(3))
    async with running(server, talker) as run:
        await armed.wait()
        await run.until(lambda: run.turns_completed() >= 3)
        await run.all_audio_delivered()
    assert len(server.connections) == 2
    assert server.connections[1].requested_handle == handles_issued_on(server, 0)[-1]
    assert server.connections[1].resumed
    assert run.metrics.value("edge_live_disconnects_total", reason=reason) == 1
    assert run.metrics.value("edge_live_uplink_audio_replayed_chunks_total") >= 1
    assert_exactly_once_in_order(run)
    assert_no_call_unanswered(run)


async def test_tool_call_pending_across_a_drop_is_answered_after_resume(
    server: FakeLiveServer,
) -> None:
    armed = server.arm(Fault.ABORT, Trigger.TOOL_CALL, n=1)
    talker = Talker(utterances(2))
    async with running(server, talker) as run:
        await armed.wait()
        await run.until(lambda: run.turns_completed() >= 2)
        await run.all_audio_delivered()
    (resp,) = server.tool_responses
    assert resp.connection == 1
    assert_no_call_unanswered(run)
    assert_exactly_once_in_order(run)


async def test_resume_refused_starts_a_fresh_session(server: FakeLiveServer) -> None:
    await server.inject(Fault.REJECT_RESUME, count=1)
    armed = server.arm(Fault.ABORT, Trigger.AUDIO_CHUNK, n=45)
    talker = Talker(utterances(3))
    async with running(server, talker) as run:
        await armed.wait()
        await run.until(lambda: len(server.connections) >= 3 and run.turns_completed() >= 2)
        await run.all_audio_delivered()
    assert server.connections[1].requested_handle is not None  # tried to resume
    assert server.connections[1].close_sent is not None
    assert server.connections[1].close_sent[0] == 1007
    assert server.connections[2].requested_handle is None  # then started fresh
    assert run.metrics.value("edge_live_fresh_sessions_total", reason="resume_refused") == 1
    # audio offered on the refused socket was not lost: it went to the fresh session
    assert_exactly_once_in_order(run)
    assert server.tool_calls  # the fresh session's first turn called a tool ...
    assert_no_call_unanswered(run)  # ... and got its answer


async def test_setup_that_never_completes_times_out_and_retries(server: FakeLiveServer) -> None:
    await server.inject(Fault.SETUP_HANG, count=1)
    talker = Talker(utterances(2))
    async with running(server, talker, connect_timeout=0.5) as run:
        await run.until(lambda: run.turns_completed() >= 2)
        await run.all_audio_delivered()
    assert server.connections[0].setup_hung
    assert run.metrics.value("edge_live_connects_total", result="setup_timeout") == 1
    # the audio spoken while setup hung was buffered and replayed
    assert run.metrics.value("edge_live_uplink_audio_replayed_chunks_total") > 0
    assert_exactly_once_in_order(run)
    assert server.tool_calls
    assert_no_call_unanswered(run)


def audio_read_after_going_quiet(srv: FakeLiveServer, conn: int, fault: str = "go_quiet",
                                  ) -> list[int]:
    """Stamps of the audio a quiet (or closing) server read (recorded) but did not act on."""
    rec = srv.connections[conn]
    quiet_at = next(t for t, f in rec.faults if f == fault)
    out: list[int] = []
    for m in rec.messages:
        audio = m.message.get("realtime_input", {}).get("audio") if m.t >= quiet_at else None
        if audio:
            out += [s for s in read_stamps(decode_base64(audio["data"])) if s is not None]
    return out


async def test_a_server_gone_quiet_is_detected_as_a_stall(server: FakeLiveServer) -> None:
    armed = server.arm(Fault.GO_QUIET, Trigger.TURN_COMPLETE, n=1)
    talker = Talker(utterances(4), speed=1.0)
    confirm = 0.1  # a pong confirms the audio before it at most this often
    async with running(server, talker, stall_timeout=0.6, ping_interval=0.2,
                       confirm_interval=confirm) as run:
        await armed.wait()
        await run.until(lambda: len(server.connections) >= 2, limit=5)
        await run.until(lambda: any(t.turn_complete_at and t.connection >= 1
                                    for t in server.turns), limit=15)
        await run.all_audio_delivered()
    assert run.metrics.value("edge_live_disconnects_total", reason="stall") == 1
    assert server.connections[1].resumed
    assert server.connections[1].requested_handle == handles_issued_on(server, 0)[-1]
    assert_no_call_unanswered(run)
    # A wedged server confirms nothing, so everything sent after the last pong is
    # sent again, in order, and nothing is lost. The resend cannot be exact: the
    # server read (and acted on) the chunks between that pong and the moment it
    # went quiet, and nothing tells the client which they were (the Developer
    # API has no lastConsumedClientMessageIndex). So exactly those repeat: one
    # contiguous block at the head of the resend, at most one confirmation
    # window long (confirm / 20 ms chunks, plus one in flight with the ping).
    seqs = [s for s in run.received_seqs() if s is not None]
    assert set(seqs) == set(range(run.talker.sent))
    first_new = next(i for i, (_, conn) in enumerate(run.received()) if conn == 1)
    old, new = seqs[:first_new], seqs[first_new:]
    assert old == list(range(len(old)))
    assert new == list(range(new[0], run.talker.sent))
    duplicates = set(old) & set(new)
    assert duplicates == set(range(new[0], len(old)))
    assert len(duplicates) <= confirm / 0.02 + 1, len(duplicates)
    # The resend (counted) is exactly the unconfirmed tail: the repeated block plus
    # what the quiet server read but ignored (one more if a chunk was still on
    # its way when the client gave up on the socket).
    resent = int(run.metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                                   reason="stall"))
    ignored = audio_read_after_going_quiet(server, 0)
    assert ignored == list(range(len(old), len(old) + len(ignored)))
    assert len(duplicates) + len(ignored) <= resent <= len(duplicates) + len(ignored) + 1


async def test_replay_bound_drops_oldest_and_counts(server: FakeLiveServer) -> None:
    # setup hangs three times (0.3 s each) plus backoff: ~1 s offline at 2x speed
    await server.inject(Fault.SETUP_HANG, count=3)
    talker = Talker(utterances(2))
    async with running(server, talker, connect_timeout=0.3, replay_seconds=0.4) as run:
        await run.until(lambda: run.turns_completed() >= 1, limit=15)
        await run.all_audio_delivered()
    dropped = run.dropped()
    assert dropped > 0
    seqs = [s for s in run.received_seqs() if s is not None]
    # what was dropped is exactly the oldest run of chunks; the rest is whole and in order
    assert seqs == list(range(dropped, run.talker.sent))


async def test_invalid_key_fails_once_without_retry_storm(server: FakeLiveServer) -> None:
    link = LiveLink(live_settings(server), SecretStr("wrong-key-000000"), Metrics())
    with pytest.raises(LiveFatalError, match="GEMINI_API_KEY: rejected"):
        async with asyncio.timeout(5):
            await link.run()
    assert len(server.rejected_handshakes) == 1
    assert link.state == "failed"


async def test_unknown_model_is_a_clear_fatal_error() -> None:
    async with FakeLiveServer(api_key=KEY, models=["gemini-3.8-live"]) as srv:
        link = LiveLink(live_settings(srv, model="gemini-0-nope"), SecretStr(KEY), Metrics())
        with pytest.raises(LiveFatalError, match=r"live\.model"):
            async with asyncio.timeout(5):
                await link.run()
        assert len(srv.connections) == 1


async def test_unreachable_endpoint_backs_off(tmp_path: Path) -> None:
    async with FakeLiveServer(api_key=KEY, cert_dir=tmp_path) as server:
        settings = live_settings(server, backoff_initial=0.1, backoff_max=0.2)
    metrics = Metrics()
    backoff = Backoff(0.1, 0.2, rng=_LongestJitter())
    link = LiveLink(settings, SecretStr(KEY), metrics, backoff=backoff)
    task = asyncio.create_task(link.run())
    # Attempts at 0, 0 (the immediate retry), 0.1, 0.3, 0.5, 0.7, 0.9 s.
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    attempts = metrics.value("edge_live_connects_total", result="unreachable")
    assert 4 <= attempts <= 7, attempts  # retried, but paced
    assert attempts == backoff.failures


async def test_video_is_rate_limited_and_only_the_newest_frame_waits(
    server: FakeLiveServer,
) -> None:
    metrics = Metrics()
    link = LiveLink(live_settings(server, video_fps=1.0), SecretStr(KEY), metrics)
    frames = [b"\xff\xd8" + bytes([i]) * 100 + b"\xff\xd9" for i in range(4)]
    task = asyncio.create_task(link.run())
    try:
        # offline: two frames offered 1 s apart (by the link's clock); only the newest waits
        link.send_video(VideoFrame(frames[0], 0.0))
        link._uplink._next_video_at = -10.0  # noqa: SLF001 - as if a second had passed
        link.send_video(VideoFrame(frames[1], 0.0))
        await server.wait_until(lambda: len(server.video_frames) >= 1, timeout=5)
        link.send_video(VideoFrame(frames[2], 0.0))  # within the same second: skipped
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [f.jpeg for f in server.video_frames] == [frames[1]]
    assert metrics.value("edge_live_uplink_video_skipped_frames_total", reason="superseded") == 1
    assert metrics.value("edge_live_uplink_video_skipped_frames_total", reason="rate") == 1
    assert metrics.value("edge_live_uplink_video_frames_total") == 1


async def test_goaway_during_a_tool_call_waits_for_a_quiet_moment(
    server: FakeLiveServer,
) -> None:
    armed = server.arm(Fault.GOAWAY, Trigger.TOOL_CALL, n=1, time_left=5.0)
    talker = Talker(utterances(2))
    async with running(server, talker) as run:
        await armed.wait()
        await run.until(lambda: run.turns_completed() >= 2)
        await run.all_audio_delivered()
    # the pending call was answered on the old socket and its reply finished there
    (resp,) = server.tool_responses
    assert resp.connection == 0
    first_turn = server.turns[0]
    assert first_turn.completed_on == 0
    assert not first_turn.interrupted
    # then the handover, resuming with the handle issued after that turn
    assert len(server.connections) == 2
    assert server.connections[1].requested_handle == handles_issued_on(server, 0)[-1]
    assert server.connections[0].close_sent is None or server.connections[0].close_sent[0] != 1011
    assert_exactly_once_in_order(run)
    assert_no_call_unanswered(run)


async def test_a_changed_tool_set_reaches_the_model_mid_session(server: FakeLiveServer) -> None:
    from daemon.tools.registry import Tool, ToolRegistry

    registry = ToolRegistry()
    link = LiveLink(live_settings(server), SecretStr(KEY), Metrics(),
                    declarations=registry.declarations)
    registry.add_listener(link.tools_changed)

    async def noop(_: dict[str, object]) -> str:
        return "ok"

    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(5):
            while not link.connected:
                await asyncio.sleep(0.01)
        registry.register(Tool("open_blinds", "Open the blinds", {"type": "object"}, noop))

        def updates() -> list[dict[str, object]]:
            return [m.message for m in server.connections[0].messages
                    if m.kind in ("context_update", "contextUpdate")]

        async with asyncio.timeout(5):
            while not updates():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "open_blinds" in str(updates()[0])
    assert len(server.connections) == 1  # updated in place, no reconnect


async def test_unconfirmed_audio_at_a_server_close_is_counted_as_delivered(
    server: FakeLiveServer,
) -> None:
    # Only the first message is followed by a confirming ping; with pings 60 s and
    # confirmations 10 s apart, every later chunk on the socket stays unconfirmed.
    # No tool calls: a tool answer is followed by a ping of its own.
    server.scenario = Scenario(turns=(Turn(user="hi", reply="hello",
                                           audio=ReplyAudio(duration_ms=200)),), loop=True)
    armed = server.arm(Fault.CLOSE, Trigger.AUDIO_CHUNK, n=90, code=1011)
    talker = Talker(utterances(3))

    def ignored() -> list[int]:  # crossed the close: read by the closing server, not acted on
        return audio_read_after_going_quiet(server, 0, "close")

    async with running(server, talker, ping_interval=60, confirm_interval=10,
                       stall_timeout=60) as run:
        await armed.wait()
        await run.until(lambda: run.turns_completed() >= 3)
        await run.until(lambda: talker.done.is_set() and run.link.replay_seconds == 0
                        and len(run.received()) + len(ignored()) >= talker.sent)
    # 90 messages; a backlog (a slow start, a busy machine) goes up several chunks each
    assert sum(c.connection == 0 for c in server.audio_chunks) == 90
    processed = [seq for seq, conn in run.received() if conn == 0]
    lost = ignored()
    assert lost == list(range(len(processed), len(processed) + len(lost)))
    # taken as delivered (not resent): everything else exactly once, in order
    assert run.received_seqs() == [s for s in range(talker.sent) if s not in lost]
    assert run.dropped() == 0
    # and counted: all of it but the first message, which its ping confirmed
    first_message = len(server.audio_chunks[0].pcm) // 640
    assert run.metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                             reason="closed:1011") == len(processed) + len(lost) - first_message


@pytest.mark.parametrize(
    ("code", "reason", "key"),
    [
        (1007, "API key not valid. Please pass a valid API key.", "GEMINI_API_KEY"),
        (1008, "API key not valid. Please pass a valid API key.", "GEMINI_API_KEY"),
        (1007, "Invalid value at 'setup.generation_config.speech_config.voice_config."
               "prebuilt_voice_config.voice_name' (TYPE_STRING)", "live.voice"),
        (1007, "Request contains an invalid argument.", "live"),
    ],
)
async def test_a_setup_that_can_never_succeed_is_fatal_at_once(
    server: FakeLiveServer, code: int, reason: str, key: str
) -> None:
    await server.inject(Fault.REJECT_SETUP, code=code, reason=reason, count=5)
    link = LiveLink(live_settings(server), SecretStr(KEY), Metrics())
    with pytest.raises(LiveFatalError) as err:
        async with asyncio.timeout(5):
            await link.run()
    msg = str(err.value)
    assert msg.startswith(f"{key}: "), msg
    assert "\n" not in msg and KEY not in msg
    assert len(server.connections) == 1  # no retry storm
    assert link.state == "failed"


async def test_a_key_refused_at_a_resume_later_is_waited_out_not_a_fresh_start(
    server: FakeLiveServer,
) -> None:
    # After a first good connection a refusal is not the configuration: no exit 2.
    metrics = Metrics()
    refused = Backoff(2.0, 2.0, immediate_first=False, rng=_ShortestJitter())
    link = LiveLink(live_settings(server), SecretStr(KEY), metrics, refused_backoff=refused)
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: link.handle is not None and link.connected, 10)
        handle = link.handle
        await server.inject(Fault.REJECT_SETUP, code=1007, count=1,
                            reason="API key not valid. Please pass a valid API key.")
        await server.inject(Fault.CLOSE, code=1011)
        await eventually(lambda: link.problem is not None, 10)
        assert link.state == "backoff" and not task.done()
        assert link.problem.startswith("the Live API refused the connection: GEMINI_API_KEY: ")
        await eventually(lambda: link.connected and len(server.connections) == 3, 10)
        assert link.problem is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert server.connections[1].requested_handle == handle
    assert server.connections[2].requested_handle == handle  # resumed, not started afresh
    assert server.connections[2].resumed
    # the jitter drew 0: still half the ceiling, never a quick retry
    assert server.connections[2].started_at - server.connections[1].started_at >= 1.0
    assert metrics.value("edge_live_refusals_total", reason="key_rejected") == 1
    assert metrics.value("edge_live_fresh_sessions_total", reason="resume_refused") == 0


async def test_a_refusal_later_in_life_backs_off_long_says_why_and_loses_no_audio(
    server: FakeLiveServer,
) -> None:
    talker = Talker(utterances(3))
    refused = Backoff(0.5, 1.0, immediate_first=False, rng=_LongestJitter())
    async with running(server, talker, refused_backoff=refused) as run:
        await run.until(lambda: run.turns_completed() >= 1)
        await server.inject(Fault.REJECT_KEY, count=2)  # Google's passing 403s
        # Closed right after a chunk it read: none crosses the close on the wire (audio
        # that does is taken as delivered, by design: see the counted-as-delivered test).
        closed = server.arm(Fault.CLOSE, Trigger.AUDIO_CHUNK, n=3, code=1011, connection=0)
        await closed.wait()
        await run.until(lambda: run.link.state == "backoff" and run.link.problem)
        healthy, details = run.agent.healthy()
        assert not healthy
        assert "GEMINI_API_KEY: rejected by the Live API (HTTP 403)" in details["live_problem"]
        assert "next attempt in" in details["live_problem"]
        await run.until(lambda: len(server.connections) == 2 and run.link.connected)
        await run.until(lambda: run.turns_completed() >= 3)
        await run.all_audio_delivered()
        healthy, details = run.agent.healthy()
        assert healthy and "live_problem" not in details
    first, second = (h.t for h in server.rejected_handshakes)
    assert second - first >= 0.5 - 0.01  # then doubled
    assert server.connections[1].started_at - second >= 1.0 - 0.01
    assert server.connections[1].resumed
    assert run.metrics.value("edge_live_refusals_total", reason="http_403") == 2
    statuses = [e.state for e in run.events if isinstance(e, LinkStatus)]
    assert statuses.count("refused") == 2 and "failed" not in statuses
    assert_exactly_once_in_order(run)  # what was said while refused went up afterwards
    assert_no_call_unanswered(run)


class _LongestJitter(random.Random):
    """Full jitter that always draws its ceiling: the schedule becomes exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _ShortestJitter(random.Random):
    """Full jitter that always draws its floor."""

    def uniform(self, a: float, b: float) -> float:
        return a


async def test_a_policy_close_during_setup_is_retried_with_backoff(
    server: FakeLiveServer,
) -> None:
    # 1008 is also a passing field problem (FACTS): not fatal unless "not found".
    await server.inject(Fault.REJECT_SETUP, code=1008, reason="Request violates a policy.",
                        count=3)
    metrics = Metrics()
    backoff = Backoff(0.1, 1.0, rng=_LongestJitter())
    async with bare_link(server, metrics, backoff=backoff) as link:
        status = await next_event_of(link, LinkStatus)
        while status.state != "connected":
            status = await next_event_of(link, LinkStatus)
        assert backoff.failures == 3
    assert metrics.value("edge_live_connects_total", result="setup_closed") == 3
    assert metrics.value("edge_live_connects_total", result="fresh") == 1
    starts = [c.started_at for c in server.connections]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # retries at once, then after 0.1 s, then after 0.2 s (plus the time an attempt takes)
    assert len(gaps) == 3 and gaps[1] >= 0.1 - 0.01 and gaps[2] >= 0.2 - 0.01, gaps


async def test_backoff_resets_only_after_a_stable_connection(server: FakeLiveServer) -> None:
    await server.inject(Fault.REJECT_SETUP, code=1008, count=3)  # failures 1, 2, 3
    server.arm(Fault.CLOSE, Trigger.SETUP_COMPLETE, n=1, code=1011, connection=3)
    backoff = Backoff(0.05, 1.0, rng=_LongestJitter())
    stable = 0.4
    async with bare_link(server, backoff=backoff, stable_after=stable) as link:
        # connection 3 closes at once: up for less than stable_after, no reset
        await eventually(lambda: len(server.connections) >= 5 and link.connected, 10)
        assert backoff.failures == 4
        await asyncio.sleep(stable + 0.2)  # connection 4 is now stable
        await server.inject(Fault.CLOSE, code=1011)
        await eventually(lambda: len(server.connections) >= 6 and link.connected, 10)
        # reset, then one failure counted for this loss: the retry was immediate
        assert backoff.failures == 1
    assert server.connections[5].resumed


async def test_goaway_the_client_is_slow_to_act_on_then_1011_still_resumes(
    tmp_path: Path,
) -> None:
    # Replies take 1 s of real time, and the client will not hand over in the
    # middle of one; the server's 1011 "Deadline expired" comes first.
    turn = Turn(user="turn", reply="a long reply", audio=ReplyAudio(duration_ms=1000))
    first = Turn(user="turn one", reply="first: {result}", audio=ReplyAudio(duration_ms=1000),
                 tool_calls=(ToolCallSpec(name="agent_status", args={}),))
    scenario = Scenario(turns=(first, turn), loop=True)
    async with FakeLiveServer(api_key=KEY, scenario=scenario, pace_audio=True) as server:
        goaway = server.arm(Fault.GOAWAY, Trigger.REPLY_CHUNK, n=1, time_left=30.0)
        talker = Talker(utterances(3, gap=3.0))
        async with running(server, talker) as run:
            await goaway.wait()
            # the deadline close, right after a chunk the server read (none in flight)
            closed = server.arm(Fault.CLOSE, Trigger.AUDIO_CHUNK, n=3, code=1011,
                                reason="Deadline expired", connection=0)
            await closed.wait()
            await run.until(lambda: run.turns_completed() >= 2, limit=15)
            await run.all_audio_delivered()
        assert not server.internal_errors
    assert len(server.connections) == 2
    old, new = server.connections
    assert old.close_sent == (1011, "Deadline expired")
    assert run.metrics.value("edge_live_downlink_messages_total", kind="go_away") == 1
    assert run.metrics.value("edge_live_disconnects_total", reason="goaway") == 0
    assert run.metrics.value("edge_live_disconnects_total", reason="closed:1011") == 1
    assert new.resumed
    assert new.requested_handle == handles_issued_on(server, 0)[-1]
    assert_exactly_once_in_order(run)
    assert_no_call_unanswered(run)


def tool_turn(*calls: ToolCallSpec) -> Scenario:
    return Scenario(turns=(Turn(user="do it", reply="result: {result}",
                                cancelled_reply="never mind", audio=ReplyAudio(duration_ms=100),
                                tool_calls=calls),), loop=True)


async def test_an_answer_the_sdk_cannot_encode_is_replaced_by_an_error_answer() -> None:
    async with FakeLiveServer(api_key=KEY, scenario=tool_turn(ToolCallSpec("odd"))) as server:
        metrics = Metrics()
        async with bare_link(server, metrics) as link:
            say(link)
            (call,) = (await next_event_of(link, ToolCallRequest)).calls
            # not via the dispatcher (which checks): the link must not wedge on it
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": {1, 2}},
                                                 "WHEN_IDLE"))
            await next_event_of(link, TurnComplete)
            say(link, first=100)  # and the conversation goes on on the same socket
            await next_event_of(link, ToolCallRequest)
        assert not server.internal_errors
    (resp,) = server.tool_responses
    assert (resp.id, resp.response) == (call.id, UNENCODABLE_ANSWER)
    assert not server.unexpected_tool_responses
    assert len(server.connections) == 1
    assert metrics.value("edge_live_tool_responses_dropped_total", reason="unserialisable") == 1


async def test_an_answer_after_the_model_cancelled_is_not_sent() -> None:
    scenario = tool_turn(ToolCallSpec("slow", cancel_after_ms=50))
    async with FakeLiveServer(api_key=KEY, scenario=scenario) as server:
        metrics = Metrics()
        async with bare_link(server, metrics) as link:
            say(link)
            (call,) = (await next_event_of(link, ToolCallRequest)).calls
            cancelled = await next_event_of(link, ToolCallCancelled)
            assert cancelled.ids == (call.id,)
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": "late"}))
            await next_event_of(link, TurnComplete)
            await asyncio.sleep(0.1)  # time for a wrongly sent answer to arrive
    assert not server.tool_responses and not server.unexpected_tool_responses
    assert metrics.value("edge_live_tool_responses_dropped_total", reason="cancelled") == 1
    assert metrics.value("edge_tool_responses_lost_total") == 0


def answers_on(srv: FakeLiveServer, conn: int) -> list[str]:
    """Ids of the function responses that reached connection `conn`, read or not."""
    out = []
    for m in srv.connections[conn].messages:
        if m.kind == "tool_response":
            body = m.message.get("tool_response") or m.message.get("toolResponse") or {}
            frs = body.get("function_responses") or body.get("functionResponses") or []
            out += [fr.get("id") for fr in frs]
    return out


async def resumed(link: LiveLink) -> None:
    while not (status := await next_event_of(link, LinkStatus)).resumed:
        assert status.state != "failed"


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        (Fault.ABORT, None, "closed:1006"),
        (Fault.CLOSE, 1011, "closed:1011"),
        (Fault.CLOSE, 1000, "closed:1000"),
        (Fault.GO_QUIET, None, "stall"),
    ],
)
async def test_an_answer_lost_with_its_connection_is_sent_again_on_resume(
    fault: Fault, code: int | None, reason: str
) -> None:
    # The server cuts the connection as the answer arrives, before reading it (and
    # before the confirming ping behind it): on the wire, yet never delivered.
    async with FakeLiveServer(api_key=KEY, scenario=tool_turn(ToolCallSpec("lamp"))) as server:
        armed = server.arm(fault, Trigger.TOOL_RESPONSE_UNREAD, **({"code": code} if code else {}))
        metrics = Metrics()
        async with bare_link(server, metrics, stall_timeout=0.6, ping_interval=0.2) as link:
            say(link)
            (call,) = (await next_event_of(link, ToolCallRequest)).calls
            # the audio confirmed first (by the keepalive ping), so only the answer is at stake
            await eventually(lambda: link._uplink.audio_seconds == 0, 10)  # noqa: SLF001 - white-box
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": "on"},
                                                 "WHEN_IDLE"))
            assert await armed.wait() == 0
            await resumed(link)
            await next_event_of(link, TurnComplete)  # the model went on: it got the answer
            say(link, first=100)  # and the conversation after it
            (again,) = (await next_event_of(link, ToolCallRequest)).calls
            link.send_tool_response(ToolResponse(again.id, again.name, {"output": "on"}))
            await next_event_of(link, TurnComplete)
        assert not server.internal_errors
    assert metrics.value("edge_live_disconnects_total", reason=reason) == 1
    assert answers_on(server, 0) == [call.id]  # sent, and lost with the connection
    assert answers_on(server, 1) == [call.id, again.id]  # sent again first, once
    assert [(r.id, r.connection) for r in server.tool_responses] == [(call.id, 1),
                                                                      (again.id, 1)]
    assert not server.unexpected_tool_responses and not server.duplicate_tool_responses
    new = server.connections[1]
    assert new.resumed and new.requested_handle == handles_issued_on(server, 0)[-1]
    assert server.turns[0].completed_on == 1 and server.turns[0].reply_text == "result: on"
    assert len(server.turns) == len(server.tool_calls) == 2
    assert metrics.value("edge_live_tool_responses_resent_total") == 1
    assert metrics.value("edge_tool_responses_lost_total") == 0


async def test_a_confirmed_answer_is_not_sent_again_after_an_unplanned_close() -> None:
    async with FakeLiveServer(api_key=KEY, scenario=tool_turn(ToolCallSpec("lamp"))) as server:
        metrics = Metrics()
        async with bare_link(server, metrics) as link:
            say(link)
            (call,) = (await next_event_of(link, ToolCallRequest)).calls
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": "on"}))
            await next_event_of(link, TurnComplete)
            await eventually(lambda: link._uplink.unconfirmed_responses == 0, 10)  # noqa: SLF001 - the pong came
            await server.inject(Fault.CLOSE, code=1011)
            await resumed(link)
            say(link, first=100)
            (again,) = (await next_event_of(link, ToolCallRequest)).calls
            link.send_tool_response(ToolResponse(again.id, again.name, {"output": "on"}))
            await next_event_of(link, TurnComplete)
    assert answers_on(server, 0) == [call.id]
    assert answers_on(server, 1) == [again.id]
    assert not server.unexpected_tool_responses and not server.duplicate_tool_responses
    assert metrics.value("edge_live_tool_responses_resent_total") == 0


async def test_an_unconfirmed_answer_is_dropped_when_the_session_starts_fresh() -> None:
    async with FakeLiveServer(api_key=KEY, scenario=tool_turn(ToolCallSpec("lamp"))) as server:
        armed = server.arm(Fault.ABORT, Trigger.TOOL_RESPONSE_UNREAD)
        await server.inject(Fault.REJECT_RESUME, count=1)
        metrics = Metrics()
        async with bare_link(server, metrics) as link:
            say(link)
            (call,) = (await next_event_of(link, ToolCallRequest)).calls
            link.send_tool_response(ToolResponse(call.id, call.name, {"output": "on"}))
            await armed.wait()
            while (status := await next_event_of(link, LinkStatus)).state != "connected":
                pass
            assert not status.resumed
            say(link, first=100)  # the fresh session never asked: its own call comes
            (fresh,) = (await next_event_of(link, ToolCallRequest)).calls
            link.send_tool_response(ToolResponse(fresh.id, fresh.name, {"output": "on"}))
            await next_event_of(link, TurnComplete)
    assert server.connections[2].requested_handle is None
    assert answers_on(server, 0) == [call.id]
    assert answers_on(server, 2) == [fresh.id]  # the old answer was not sent there
    assert not server.unexpected_tool_responses
    assert metrics.value("edge_tool_responses_lost_total") == 1
    assert metrics.value("edge_live_tool_responses_resent_total") == 0


# -- one malformed message never ends the conversation (issue 12, item 9) ----------
def _reply_audio(mime: str, pcm: bytes) -> dict[str, object]:
    data = base64.b64encode(pcm).decode("ascii")
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": mime,
                                                                       "data": data}}]}}}


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("audio_rate", _reply_audio("audio/pcm;rate=0", bytes(960))),
        ("audio_rate", _reply_audio("audio/pcm;rate=-24000", bytes(960))),
        ("audio_odd_length", _reply_audio("audio/pcm;rate=24000", bytes(961))),
        ("usage_negative", {"usageMetadata": {"promptTokenCount": -5, "responseTokenCount": 3,
                                              "totalTokenCount": -2}}),
    ],
    ids=["rate-0", "rate-negative", "odd-pcm", "negative-tokens"],
)
async def test_a_malformed_server_message_is_dropped_counted_and_the_talk_goes_on(
    server: FakeLiveServer, reason: str, message: dict[str, object]
) -> None:
    talker = Talker(utterances(2))
    async with running(server, talker) as run:
        await server.wait_until(lambda: server.live_connection is not None)
        for _ in range(2):
            await server.send_raw(message)
        await run.until(lambda: run.turns_completed() >= 2)
        await run.all_audio_delivered()
    assert run.metrics.value("edge_live_messages_dropped_total", reason=reason) == 2
    # the replies that came after it were played in full, on the same socket
    assert len(talker.played) == 2 * 24_000 * 2 * 0.2
    assert len(server.connections) == 1
    assert_exactly_once_in_order(run)
    assert_no_call_unanswered(run)


# -- a rejected setup is retried once with the built-in tools (issue 12, item 10) ---
def _decl(name: str) -> dict[str, Any]:
    return {"name": name, "description": f"the {name} tool",
            "parameters": {"type": "object", "properties": {}}}


BUILT_IN = [_decl("agent_status")]
WITH_HOME = [*BUILT_IN, _decl("control_device"), _decl("list_devices")]


def tool_names(obj: Any) -> list[str]:
    """Names of the function declarations anywhere in a setup or context update."""
    if isinstance(obj, list):
        return [n for item in obj for n in tool_names(item)]
    if not isinstance(obj, dict):
        return []
    out: list[str] = []
    for key, value in obj.items():
        if key in ("functionDeclarations", "function_declarations"):
            out += [d["name"] for d in value]
        else:
            out += tool_names(value)
    return out


def context_updates(srv: FakeLiveServer, conn: int) -> list[dict[str, Any]]:
    return [m.message for m in srv.connections[conn].messages if m.kind == "context_update"]


def chat() -> Scenario:
    return Scenario(turns=(Turn(user="hi", reply="hello", audio=ReplyAudio(duration_ms=100)),),
                    loop=True)


async def test_a_setup_rejected_with_the_home_tools_is_retried_once_with_the_built_in_ones(
) -> None:
    async with FakeLiveServer(api_key=KEY, scenario=chat()) as server:
        await server.inject(Fault.REJECT_SETUP, code=1007, count=1)
        metrics = Metrics()
        tools = list(WITH_HOME)
        async with bare_link(server, metrics, declarations=lambda: tools,
                             fallback_declarations=lambda: BUILT_IN) as link:
            await eventually(lambda: link.connected, 10)
            assert link.problem is not None
            assert "built-in tools only (left out: control_device, list_devices)" in link.problem
            say(link)
            await next_event_of(link, ModelAudio)  # the conversation works without them
            link.tools_changed()  # the same set: still only the built-in tools
            await eventually(lambda: len(context_updates(server, 1)) == 1, 10)
            tools.append(_decl("look"))  # the set changed: all of it is offered again
            link.tools_changed()
            await eventually(lambda: len(context_updates(server, 1)) == 2, 10)
            assert link.problem is None
    assert tool_names(server.connections[0].setup) == [d["name"] for d in WITH_HOME]
    assert server.connections[0].close_sent is not None
    assert server.connections[0].close_sent[0] == 1007
    assert tool_names(server.connections[1].setup) == ["agent_status"]
    first, second = (tool_names(u) for u in context_updates(server, 1))
    assert first == ["agent_status"]
    assert second == [d["name"] for d in tools]
    assert metrics.value("edge_live_tool_fallbacks_total") == 1
    assert metrics.value("edge_live_refusals_total", reason="setup_rejected") == 1
    assert len(server.connections) == 2


async def test_a_setup_rejected_without_the_home_tools_too_is_fatal_on_the_first_connection(
    server: FakeLiveServer,
) -> None:
    await server.inject(Fault.REJECT_SETUP, code=1007, count=2)
    metrics = Metrics()
    link = LiveLink(live_settings(server), SecretStr(KEY), metrics,
                    declarations=lambda: WITH_HOME, fallback_declarations=lambda: BUILT_IN)
    with pytest.raises(LiveFatalError, match=r"^live: the Live API rejected the session setup"):
        async with asyncio.timeout(5):
            await link.run()
    assert link.state == "failed"
    assert [tool_names(c.setup) for c in server.connections] == [
        [d["name"] for d in WITH_HOME], ["agent_status"]]
    assert metrics.value("edge_live_tool_fallbacks_total") == 1
    assert metrics.value("edge_live_refusals_total", reason="setup_rejected") == 2


async def test_a_setup_rejected_twice_later_in_life_is_waited_out_then_offered_whole(
) -> None:
    async with FakeLiveServer(api_key=KEY, scenario=chat()) as server:
        metrics = Metrics()
        async with bare_link(server, metrics, declarations=lambda: WITH_HOME,
                             fallback_declarations=lambda: BUILT_IN,
                             refused_backoff_initial=0.6, refused_backoff_max=1.2) as link:
            await eventually(lambda: link.connected and link.handle is not None, 10)
            # the resume, the fresh setup, and the fresh setup without the home's tools
            await server.inject(Fault.REJECT_SETUP, code=1007, count=3)
            await server.inject(Fault.CLOSE, code=1011)
            await eventually(lambda: link.state == "backoff" and len(server.connections) >= 4, 10)
            assert link.problem is not None
            assert link.problem.startswith("the Live API refused the connection: live: ")
            await eventually(lambda: len(server.connections) == 5 and link.connected, 10)
            assert link.problem is None
            say(link)
            await next_event_of(link, ModelAudio)
    resume, fresh, fallback, later = list(server.connections)[1:]
    assert resume.requested_handle is not None
    assert fresh.requested_handle is None and fallback.requested_handle is None
    assert tool_names(fresh.setup) == [d["name"] for d in WITH_HOME]
    assert tool_names(fallback.setup) == ["agent_status"]
    assert tool_names(later.setup) == [d["name"] for d in WITH_HOME]  # tried whole again
    assert later.started_at - fallback.started_at >= 0.3  # half the first ceiling at least
    assert metrics.value("edge_live_refusals_total", reason="setup_rejected") == 2
    assert metrics.value("edge_live_tool_fallbacks_total") == 1
    assert metrics.value("edge_live_fresh_sessions_total", reason="resume_refused") == 1

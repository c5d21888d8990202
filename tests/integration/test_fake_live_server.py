"""The fake Live server, driven by the real google-genai SDK over TLS.

These tests pin the protocol behaviour other tests rely on: if the fake drifts
from what the SDK sends and expects, every LiveLink test built on it would be
testing fiction.

Without a socket or a process: tests/unit/test_fake_live_server.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import websockets
from google import genai
from google.genai import errors, types
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from daemon.live.socket_door import sdk_websocket
from simulator.live_server import (
    FakeLiveServer,
    Fault,
    Trigger,
)
from simulator.scenario import (
    OUTPUT_SAMPLE_RATE,
    ReplyAudio,
    Scenario,
    ToolCallSpec,
    Turn,
)
from tests.support.live import silence, speech

pytestmark = pytest.mark.timeout(30)

KEY = "test-key"
MODEL = "gemini-3.8-live"
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


# ----------------------------------------------------------------- helpers


def make_client(server: FakeLiveServer, key: str = KEY, **ws_args: Any) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=server.base_url,
            api_version="v1beta",
            async_client_args={"ssl": server.client_ssl_context(), **ws_args},
        ),
    )


def config(handle: str | None = None, **extra: Any) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        session_resumption=types.SessionResumptionConfig(handle=handle),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        **extra,
    )


def connect(
    server: FakeLiveServer, handle: str | None = None, key: str = KEY, **ws_args: Any
) -> AbstractAsyncContextManager[Any]:
    return make_client(server, key, **ws_args).aio.live.connect(
        model=MODEL, config=config(handle)
    )


async def say(session: Any, speech_ms: float = 300, silence_ms: float = 700) -> None:
    """Stream one utterance in 20 ms chunks, faster than real time."""
    pcm = speech(speech_ms) + silence(silence_ms)
    for i in range(0, len(pcm), 640):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[i : i + 640], mime_type="audio/pcm;rate=16000")
        )


async def first_handle(session: Any) -> str:
    async for msg in session.receive():
        update = msg.session_resumption_update
        if update is not None and update.new_handle:
            return str(update.new_handle)
    raise AssertionError("no resumption handle")


async def read_until_closed(session: Any, seen: list[Any] | None = None) -> None:
    """Receive across turns until the SDK raises (the way a close surfaces)."""
    while True:
        async for msg in session.receive():
            if seen is not None:
                seen.append(msg)


class Turned:
    """What the client saw during one model turn."""

    def __init__(self) -> None:
        self.messages: list[types.LiveServerMessage] = []
        self.audio = b""
        self.input_text = ""
        self.output_text = ""
        self.tool_calls: list[types.FunctionCall] = []
        self.cancelled: list[str] = []
        self.usage: types.UsageMetadata | None = None
        self.interrupted = False


async def collect_turn(
    session: Any, answer: dict[str, Any] | None = None, on_audio: Any = None
) -> Turned:
    """Read until turnComplete, answering tool calls with ``answer`` if given."""
    out = Turned()
    async for msg in session.receive():
        out.messages.append(msg)
        sc = msg.server_content
        if sc is not None:
            if sc.input_transcription and sc.input_transcription.text:
                out.input_text += sc.input_transcription.text
            if sc.output_transcription and sc.output_transcription.text:
                out.output_text += sc.output_transcription.text
            if sc.interrupted:
                out.interrupted = True
        if msg.data:
            out.audio += msg.data
            if on_audio is not None:
                await on_audio(msg.data)
        if msg.usage_metadata is not None:
            out.usage = msg.usage_metadata
        if msg.tool_call_cancellation is not None:
            out.cancelled.extend(msg.tool_call_cancellation.ids or [])
        if msg.tool_call is not None:
            calls = msg.tool_call.function_calls or []
            out.tool_calls.extend(calls)
            if answer is not None:
                await session.send_tool_response(
                    function_responses=[
                        types.FunctionResponse(id=c.id, name=c.name, response=answer)
                        for c in calls
                    ]
                )
    return out


@pytest.fixture
async def server() -> AsyncIterator[FakeLiveServer]:
    async with FakeLiveServer(api_key=KEY) as srv:
        yield srv
    assert not srv.internal_errors


async def raw_connect(server: FakeLiveServer, path: str = PATH, key: str | None = KEY) -> Any:
    headers = {"x-goog-api-key": key} if key is not None else {}
    return websockets.connect(
        f"wss://127.0.0.1:{server.port}{path}",
        ssl=server.client_ssl_context(),
        additional_headers=headers,
        open_timeout=5,
        close_timeout=1,
    )


async def raw_recv_json(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout=5)
    assert isinstance(raw, bytes), "server messages travel in binary frames"
    msg = json.loads(raw)
    assert isinstance(msg, dict)
    return msg


# --------------------------------------------------------- conversation path


async def test_setup_and_scripted_turn_with_tool_call(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        await first_handle(session)
        await say(session)
        turn1 = await collect_turn(session, answer={"output": "all systems nominal"})
        await say(session)
        turn2 = await collect_turn(session)

    assert turn1.input_text == "What's the status of the agent?"
    assert [c.name for c in turn1.tool_calls] == ["agent_status"]
    assert turn1.tool_calls[0].args == {}
    assert turn1.output_text == "The agent is running: all systems nominal"
    assert len(turn1.audio) == 2 * OUTPUT_SAMPLE_RATE * 1500 // 1000
    assert turn1.usage is not None and turn1.usage.total_token_count == (
        (turn1.usage.prompt_token_count or 0) + (turn1.usage.response_token_count or 0)
    )
    assert turn2.input_text == "Thank you."
    assert turn2.output_text == "You're welcome."

    rec = server.connections[0]
    assert rec.api_version == "v1beta"
    assert rec.path == PATH
    assert rec.setup is not None and rec.setup["model"] == f"models/{MODEL}"
    assert rec.setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert rec.resumed_handle is None
    assert rec.messages[0].kind == "setup"
    assert len(server.tool_calls) == 1
    assert [r.id for r in server.tool_responses] == [server.tool_calls[0].id]
    assert server.tool_responses[0].response == {"output": "all systems nominal"}
    assert not server.unexpected_tool_responses
    assert all(c.connection == 0 for c in server.audio_chunks)
    assert sum(len(c.pcm) for c in server.audio_chunks) == 2 * len(speech(300) + silence(700))
    assert [t.utterance_reason for t in server.turns] == ["silence", "silence"]
    first = server.turns[0]
    assert first.first_audio_at is not None and first.turn_complete_at is not None
    assert first.utterance_at <= first.first_audio_at <= first.turn_complete_at

    # Resumption updates: resumable while idle, not while generating.
    updates = [m.message["sessionResumptionUpdate"] for m in rec.sent
               if m.kind == "sessionResumptionUpdate"]
    assert updates[0]["resumable"] is True and updates[0]["newHandle"]
    assert {"resumable": False} in updates
    assert updates[-1]["resumable"] is True


async def test_client_content_and_text_input_end_a_turn(server: FakeLiveServer) -> None:
    server.scenario = Scenario(turns=(Turn(user="hi", reply="hello there"),), loop=True)
    async with connect(server) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hi")]), turn_complete=True
        )
        turn = await collect_turn(session)
        assert turn.output_text == "hello there"
        await session.send_realtime_input(text="hi again")
        turn = await collect_turn(session)
        assert turn.output_text == "hello there"
    assert [t.utterance_reason for t in server.turns] == ["client_content", "text"]


async def test_explicit_activity_signals_delimit_speech() -> None:
    async with FakeLiveServer(api_key=KEY) as server:
        cfg = config(
            realtime_input_config=types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
            )
        )
        client = make_client(server)
        async with client.aio.live.connect(model=MODEL, config=cfg) as session:
            await session.send_realtime_input(activity_start=types.ActivityStart())
            await say(session, speech_ms=200, silence_ms=800)  # silence alone ends nothing
            await asyncio.sleep(0.1)
            assert not server.utterances
            await session.send_realtime_input(activity_end=types.ActivityEnd())
            turn = await collect_turn(session, answer={"output": "ok"})
        assert turn.input_text == "What's the status of the agent?"
        assert [u.reason for u in server.utterances] == ["activity_end"]


async def test_audio_stream_end_ends_utterance(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        await say(session, speech_ms=300, silence_ms=100)
        await session.send_realtime_input(audio_stream_end=True)
        turn = await collect_turn(session, answer={"output": "fine"})
    assert turn.output_text == "The agent is running: fine"
    assert [u.reason for u in server.utterances] == ["audio_stream_end"]


# -------------------------------------------------------------- resumption


async def test_resumption_handle_carries_the_session(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        await first_handle(session)
        await say(session)
        await collect_turn(session, answer={"output": "ok"})
        handle = await first_handle(session)  # the one sent after turnComplete
    async with connect(server, handle=handle) as session:
        await say(session)
        turn = await collect_turn(session)
    assert turn.input_text == "Thank you."  # scenario position carried over
    first, second = server.connections[0], server.connections[1]
    assert second.resumed_handle == handle and second.requested_handle == handle
    assert second.session_id == first.session_id
    assert first.resumed_handle is None


async def test_unknown_handle_is_rejected_with_1007(server: FakeLiveServer) -> None:
    with pytest.raises(errors.APIError) as info:
        async with connect(server, handle="no-such-handle"):
            pass
    assert info.value.code == 1007
    assert "resumption handle" in str(info.value.details)
    await server.wait_until(lambda: not server.connections[0].open)
    assert server.connections[0].close_sent is not None
    assert server.connections[0].close_sent[0] == 1007


async def test_pending_tool_call_is_answered_on_the_resumed_connection(
    server: FakeLiveServer,
) -> None:
    armed = server.arm(Fault.ABORT, Trigger.TOOL_CALL)
    seen: list[types.LiveServerMessage] = []
    async with connect(server) as session:
        handle = await first_handle(session)
        await say(session)
        with pytest.raises(errors.APIError) as info:
            await read_until_closed(session, seen)
        assert info.value.code == 1006
    assert await armed.wait() == 0
    calls = [c.id for m in seen if m.tool_call for c in m.tool_call.function_calls or []]
    assert len(calls) == 1
    call_id = calls[0]
    await server.wait_until(lambda: not server.connections[0].open)
    session_state = server.session_for_handle(handle)
    assert session_state is not None and session_state.pending_tool_calls == [call_id]

    async with connect(server, handle=handle) as session:
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call_id, name="agent_status", response={"output": "up"})
            ]
        )
        turn = await collect_turn(session)
    assert turn.output_text == "The agent is running: up"
    assert [r.connection for r in server.tool_responses] == [1]
    assert not server.unexpected_tool_responses
    assert server.turns[0].completed_on == 1


async def test_unexpected_tool_response_is_recorded_not_fatal(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id="bogus", name="x", response={})]
        )
        await say(session)
        turn = await collect_turn(session, answer={"output": "ok"})
    assert turn.output_text == "The agent is running: ok"
    assert [r.id for r in server.unexpected_tool_responses] == ["bogus"]
    assert len(server.tool_responses) == 1


async def read_until_tool_call(session: Any) -> types.FunctionCall:
    async for msg in session.receive():
        if msg.tool_call is not None:
            (call,) = msg.tool_call.function_calls or []
            return call
    raise AssertionError("no tool call")


@pytest.mark.parametrize(("fault", "code"), [(Fault.ABORT, 1006), (Fault.CLOSE, 1011),
                                             (Fault.GO_QUIET, None)])
async def test_a_tool_response_cut_before_it_is_read(
    server: FakeLiveServer, fault: Fault, code: int | None
) -> None:
    armed = server.arm(fault, Trigger.TOOL_RESPONSE_UNREAD)
    async with connect(server, close_timeout=0.3) as session:
        handle = await first_handle(session)
        await say(session)
        call = await read_until_tool_call(session)
        await session.send_tool_response(function_responses=[
            types.FunctionResponse(id=call.id, name=call.name, response={"output": "up"})])
        ws = sdk_websocket(session)  # the SDK's socket, through the daemon's one door
        assert ws is not None
        pong = await ws.ping()  # right behind the answer, as the daemon does
        if code is None:
            with pytest.raises(TimeoutError):  # a quiet server answers nothing
                await asyncio.wait_for(asyncio.shield(pong), 0.5)
        else:
            with pytest.raises(errors.APIError) as info:
                await read_until_closed(session)
            assert info.value.code == code
    assert await armed.wait() == 0
    await server.wait_until(lambda: not server.connections[0].open)
    # no pong got through ahead of the cut: nothing confirms the answer to the client
    assert not (pong.done() and not pong.cancelled() and pong.exception() is None)
    assert [m.kind for m in server.connections[0].messages][-1] == "tool_response"
    assert not server.tool_responses  # on the wire, never read
    state = server.session_for_handle(handle)
    assert state is not None and state.pending_tool_calls == [call.id]
    async with connect(server, handle=handle) as session:  # the answer sent again
        await session.send_tool_response(function_responses=[
            types.FunctionResponse(id=call.id, name=call.name, response={"output": "up"})])
        turn = await collect_turn(session)
    assert turn.output_text == "The agent is running: up"
    assert [r.connection for r in server.tool_responses] == [1]
    assert not server.unexpected_tool_responses


async def test_an_answer_given_twice_is_ignored_and_recorded_as_a_duplicate(
    server: FakeLiveServer,
) -> None:
    async with connect(server) as session:
        await say(session)
        first = await collect_turn(session, answer={"output": "ok"})
        handle = await first_handle(session)
    (call,) = first.tool_calls
    async with connect(server, handle=handle) as session:
        # a client that could not know the answer had arrived sends it again
        await session.send_tool_response(function_responses=[
            types.FunctionResponse(id=call.id, name=call.name, response={"output": "ok"}),
            types.FunctionResponse(id="bogus", name="x", response={}),
        ])
        await say(session)
        turn = await collect_turn(session)  # ignored: the session goes on
    assert turn.output_text == "You're welcome."
    assert [(r.id, r.connection) for r in server.duplicate_tool_responses] == [(call.id, 1)]
    assert [r.id for r in server.unexpected_tool_responses] == [call.id, "bogus"]
    assert [r.id for r in server.tool_responses] == [call.id]
    assert server.connections[1].close_sent is None or server.connections[1].close_sent[0] == 1000


async def test_tool_call_cancellation_and_late_answer() -> None:
    scenario = Scenario(
        turns=(
            Turn(
                user="turn on the lamp",
                reply="Done: {result}",
                cancelled_reply="Never mind.",
                tool_calls=(ToolCallSpec("lamp_on", {"room": "hall"}, cancel_after_ms=100),),
            ),
        )
    )
    async with FakeLiveServer(api_key=KEY, scenario=scenario) as server, connect(
        server
    ) as session:
        await say(session)
        turn = await collect_turn(session)  # does not answer the call
        assert turn.tool_calls[0].args == {"room": "hall"}
        assert turn.cancelled == [turn.tool_calls[0].id]
        assert turn.output_text == "Never mind."
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=turn.tool_calls[0].id, name="lamp_on", response={})
            ]
        )
        await server.wait_until(lambda: len(server.unexpected_tool_responses) == 1)
    assert server.turns[0].cancelled
    assert server.tool_cancellations[0].ids == (turn.tool_calls[0].id,)


async def test_barge_in_interrupts_a_paced_reply() -> None:
    scenario = Scenario(turns=(Turn(user="tell me a story", reply="Once upon a time",
                                    audio=ReplyAudio(duration_ms=3000)),), loop=True)
    async with FakeLiveServer(api_key=KEY, scenario=scenario, pace_audio=True) as server:
        async with connect(server) as session:
            await say(session)
            started = time.monotonic()
            interrupted = False

            async def barge(_: bytes) -> None:
                nonlocal interrupted
                if not interrupted:
                    interrupted = True
                    await say(session, speech_ms=200, silence_ms=0)

            turn = await collect_turn(session, on_audio=barge)
            assert turn.interrupted
            assert time.monotonic() - started < 2.0
            assert len(turn.audio) < 2 * OUTPUT_SAMPLE_RATE * 3
        assert server.turns[0].interrupted


# ------------------------------------------------------------- handshake


async def test_wrong_or_missing_key_gets_403(server: FakeLiveServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server, key="wrong-key"):
            pass
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as info:
        async with await raw_connect(server, key=None):
            pass
    assert info.value.response.status_code == 403
    assert [r.status for r in server.rejected_handshakes] == [403, 403]
    assert not server.connections


async def test_other_path_gets_404(server: FakeLiveServer) -> None:
    bad = PATH.replace("BidiGenerateContent", "BidiGenerateContentConstrained")
    with pytest.raises(InvalidStatus) as info:
        async with await raw_connect(server, path=bad):
            pass
    assert info.value.response.status_code == 404


async def test_api_version_is_recorded(server: FakeLiveServer) -> None:
    client = genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(
            base_url=server.base_url, api_version="v1alpha",
            async_client_args={"ssl": server.client_ssl_context()},
        ),
    )
    async with client.aio.live.connect(model=MODEL, config=config()):
        pass
    assert server.connections[0].api_version == "v1alpha"


async def test_unknown_model_is_closed_1008() -> None:
    async with FakeLiveServer(api_key=KEY, models=["gemini-3.8-live"]) as server:
        with pytest.raises(errors.APIError) as info:
            async with make_client(server).aio.live.connect(model="gemini-0.1-nope"):
                pass
        assert info.value.code == 1008
        assert "models/gemini-0.1-nope is not found for API version v1beta" in str(
            info.value.details
        )
        async with make_client(server).aio.live.connect(model=MODEL):
            pass


# ----------------------------------------------------------------- faults


async def test_goaway_then_deadline_expired(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        await first_handle(session)
        assert await server.inject(Fault.GOAWAY, time_left=0.5) == 0
        seen: list[types.LiveServerMessage] = []
        started = time.monotonic()
        with pytest.raises(errors.APIError) as info:
            await read_until_closed(session, seen)
    assert [m.go_away.time_left for m in seen if m.go_away is not None] == ["0.5s"]
    assert info.value.code == 1011
    assert "Deadline expired" in str(info.value.details)
    assert 0.4 < time.monotonic() - started < 3.0


async def test_tcp_abort_is_1006(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        await first_handle(session)
        await server.inject(Fault.ABORT)
        with pytest.raises(errors.APIError) as info:
            await read_until_closed(session)
    assert info.value.code == 1006
    await server.wait_until(lambda: not server.connections[0].open)
    assert server.connections[0].aborted


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1008, "policy"), (1011, "boom")])
async def test_close_with_code(server: FakeLiveServer, code: int, reason: str) -> None:
    async with connect(server) as session:
        await first_handle(session)
        await server.inject(Fault.CLOSE, code=code, reason=reason)
        with pytest.raises(errors.APIError) as info:
            await read_until_closed(session)
    assert info.value.code == code
    await server.wait_until(lambda: not server.connections[0].open)
    assert server.connections[0].close_sent == (code, reason)


async def test_reject_next_resume_then_fresh_start(server: FakeLiveServer) -> None:
    async with connect(server) as session:
        handle = await first_handle(session)
    await server.inject(Fault.REJECT_RESUME)
    for _ in range(2):  # the session is gone: retrying the handle fails again
        with pytest.raises(errors.APIError) as info:
            async with connect(server, handle=handle):
                pass
        assert info.value.code == 1007
    async with connect(server) as session:
        assert await first_handle(session)
    assert [c.resumed_handle for c in server.connections] == [None, None, None, None]
    assert [c.requested_handle for c in server.connections][1:3] == [handle, handle]


async def test_reject_setup_for_next_n_with_code_and_reason(server: FakeLiveServer) -> None:
    await server.inject(Fault.REJECT_SETUP, count=2, code=1008, reason="Request violates a policy.")
    for _ in range(2):
        with pytest.raises(errors.APIError) as info:
            async with connect(server):
                pass
        assert info.value.code == 1008
        assert "violates a policy" in str(info.value)
    async with connect(server) as session:  # only the next N setups are refused
        assert await first_handle(session)
    assert [c.close_sent for c in server.connections][:2] == [
        (1008, "Request violates a policy.")
    ] * 2
    assert [c.setup_completed_at is None for c in server.connections] == [True, True, False]


async def test_setup_that_never_completes(server: FakeLiveServer) -> None:
    await server.inject(Fault.SETUP_HANG, count=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5), connect(server):
            pass
    await server.wait_until(lambda: not server.connections[0].open)
    assert server.connections[0].setup_hung
    assert server.connections[0].setup is not None
    async with connect(server) as session:  # only the next N connections hang
        assert await first_handle(session)


async def test_go_quiet_is_detected_by_keepalive(server: FakeLiveServer) -> None:
    async with connect(server, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3) as session:
        await first_handle(session)
        await server.inject(Fault.GO_QUIET)
        await say(session, silence_ms=700)  # recorded, but no turn and no reply
        started = time.monotonic()
        seen: list[types.LiveServerMessage] = []
        with pytest.raises(errors.APIError) as info:
            await read_until_closed(session, seen)
    assert not seen, "a quiet server sent something"
    assert info.value.code == 1006  # keepalive timeout: no close frame received
    assert time.monotonic() - started < 3.0
    await server.wait_until(lambda: not server.connections[0].open)
    rec = server.connections[0]
    assert rec.quiet and rec.close_sent is None
    assert rec.close_received is not None and rec.close_received[0] == 1011
    assert not server.turns  # the utterance was heard but no turn was run


async def test_reject_key_for_next_n_and_key_change(server: FakeLiveServer) -> None:
    await server.inject(Fault.REJECT_KEY, count=2)
    for _ in range(2):
        with pytest.raises(InvalidStatus):
            async with connect(server):
                pass
    async with connect(server):
        pass
    server.api_key = "rotated"
    with pytest.raises(InvalidStatus):
        async with connect(server):
            pass
    async with connect(server, key="rotated"):
        pass


async def test_armed_abort_after_nth_audio_chunk(server: FakeLiveServer) -> None:
    armed = server.arm(Fault.ABORT, Trigger.AUDIO_CHUNK, 5)

    async def stream_then_read(session: Any) -> None:
        for i in range(50):
            await session.send_realtime_input(
                audio=types.Blob(data=speech(20), mime_type="audio/pcm;rate=16000")
            )
            if i % 5 == 4:
                await asyncio.sleep(0.02)
        await read_until_closed(session)

    async with connect(server) as session:
        with pytest.raises((ConnectionClosed, errors.APIError)):
            await stream_then_read(session)
    assert await armed.wait() == 0
    assert len(server.audio_chunks) == 5


async def test_inject_without_connection_raises(server: FakeLiveServer) -> None:
    with pytest.raises(RuntimeError):
        await server.inject(Fault.ABORT)
    with pytest.raises(ValueError, match="connection fault"):
        server.arm(Fault.REJECT_KEY, Trigger.SETUP_COMPLETE)
    with pytest.raises(ValueError, match="as it is parsed"):
        server.arm(Fault.GOAWAY, Trigger.TOOL_RESPONSE_UNREAD)


# ------------------------------------------------------- raw wire format


async def test_snake_camel_and_both_base64_alphabets(server: FakeLiveServer) -> None:
    pcm = bytes(range(250, 256)) * 11  # 66 bytes: '+', '/' and padding in base64
    std = base64.b64encode(pcm).decode()
    url = base64.urlsafe_b64encode(pcm).decode().rstrip("=")
    assert "+" in std or "/" in std
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
    async with await raw_connect(server) as ws:
        await ws.send(json.dumps({"setup": {
            "model": f"models/{MODEL}",
            "generation_config": {"response_modalities": ["AUDIO"]},
            "session_resumption": {},
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
        }}))
        assert await raw_recv_json(ws) == {"setupComplete": {}}
        update = await raw_recv_json(ws)
        assert update["sessionResumptionUpdate"]["resumable"] is True
        await ws.send(json.dumps(
            {"realtime_input": {"audio": {"data": std, "mime_type": "audio/pcm;rate=16000"}}}
        ))
        await ws.send(json.dumps(
            {"realtimeInput": {"audio": {"data": url, "mimeType": "audio/pcm;rate=16000"}}}
        ))
        await ws.send(json.dumps({"realtimeInput": {"mediaChunks": [
            {"data": url, "mimeType": "audio/pcm"},
            {"data": base64.b64encode(jpeg).decode(), "mime_type": "image/jpeg"},
        ]}}))
        await ws.send(json.dumps({"realtime_input": {"video": {
            "data": base64.urlsafe_b64encode(jpeg).decode().rstrip("="),
            "mimeType": "image/jpeg",
        }}}))
        await ws.send(json.dumps({"clientContent": {"turns": [], "turn_complete": False}}))
        await ws.send(json.dumps({"contextUpdate": {"systemInstruction": {"parts": []}}}))
        await server.wait_until(lambda: len(server.connections[0].messages) == 7)
    assert [c.pcm for c in server.audio_chunks] == [pcm, pcm, pcm]
    assert [f.jpeg for f in server.video_frames] == [jpeg, jpeg]
    assert [m.kind for m in server.connections[0].messages] == [
        "setup", "realtime_input", "realtime_input", "realtime_input", "realtime_input",
        "client_content", "context_update",
    ]
    assert server.connections[0].messages[1].message["realtime_input"]["audio"]["data"] == std


@pytest.mark.parametrize(
    "message",
    [
        {"bogus": {}},
        {"realtimeInput": {"audio": {"data": "!!not base64!!", "mimeType": "audio/pcm"}}},
        {"realtimeInput": {"audio": {"data": "AAAA", "mimeType": "audio/mp3"}}},
        {"realtimeInput": {"sparkle": True}},
        {"toolResponse": {"functionResponses": "nope"}},
        {"setup": {"model": "again"}},
        "not json at all",
    ],
)
async def test_invalid_messages_close_1007(server: FakeLiveServer, message: Any) -> None:
    async with await raw_connect(server) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        await raw_recv_json(ws)
        await ws.send(message if isinstance(message, str) else json.dumps(message))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    assert info.value.rcvd.reason


async def test_send_raw_delivers_any_message_verbatim(server: FakeLiveServer) -> None:
    with pytest.raises(RuntimeError, match="no live connection"):
        await server.send_raw({"usageMetadata": {}})
    async with await raw_connect(server) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        assert "setupComplete" in await raw_recv_json(ws)
        bad = {"usageMetadata": {"promptTokenCount": -1}}
        assert await server.send_raw(bad) == 0
        assert await raw_recv_json(ws) == bad
        await server.send_raw("{not json")
        assert await asyncio.wait_for(ws.recv(), timeout=5) == "{not json"
        await server.send_raw(b"\x00\x01")
        assert await asyncio.wait_for(ws.recv(), timeout=5) == b"\x00\x01"
    assert [m.message for m in server.connections[0].sent if m.kind == "usageMetadata"] == [bad]


async def test_first_message_must_be_setup(server: FakeLiveServer) -> None:
    async with await raw_connect(server) as ws:
        await ws.send(json.dumps({"realtimeInput": {"text": "hi"}}))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007


async def test_stop_closes_connections_and_leaves_no_tasks() -> None:
    server = FakeLiveServer(api_key=KEY)
    async with server, connect(server) as session:
        await first_handle(session)
        await server.inject(Fault.SETUP_HANG)
        hung = make_client(server).aio.live.connect(model=MODEL)
        hang_task = asyncio.create_task(hung.__aenter__())
        await server.wait_until(lambda: len(server.connections) == 2)
        await server.wait_until(lambda: server.connections[1].setup_hung)
        await server.stop()
        with pytest.raises(errors.APIError) as info:
            await read_until_closed(session)
        assert info.value.code == 1001
        with pytest.raises((errors.APIError, ConnectionClosed)):
            await hang_task
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("live-")]
    assert all(not c.open for c in server.connections)


# -------------------------------------------------------------- standalone


async def test_standalone_main_prints_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "FAKE_LIVE_API_KEY": "env-key"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys; from simulator.live_server import main; sys.exit(main(sys.argv[1:]))",
        "--cert-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, env=env,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=10))
        assert line["ca_file"] == str(tmp_path / "ca.pem")
        assert line["base_url"].startswith("https://127.0.0.1:")
        client = genai.Client(
            api_key="env-key",
            http_options=types.HttpOptions(
                base_url=line["base_url"], api_version="v1beta",
                async_client_args={"ssl": ssl.create_default_context(cafile=line["ca_file"])},
            ),
        )
        async with client.aio.live.connect(model=MODEL, config=config()) as session:
            assert await first_handle(session)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

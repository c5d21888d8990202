"""The fake model: one scripted turn per utterance, streamed the way the service streams.

Each turn reports what it heard, makes the scripted tool calls and waits for
their answers (or cancels them), then streams the reply as transcript pieces
and 24 kHz PCM chunks, and ends with usage and turnComplete. A turn waiting on
tools belongs to the session, so it finishes on whichever connection resumed it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
import secrets
import time
from typing import Protocol

from simulator.live_server.connection import LiveConnection, Utterance
from simulator.live_server.faults import FaultBoard, Trigger
from simulator.live_server.records import (
    Recordings,
    ToolCallRecord,
    ToolCancellationRecord,
    TurnRecord,
)
from simulator.live_server.sessions import AwaitingTools, PendingCall, SessionState
from simulator.scenario import OUTPUT_SAMPLE_RATE, Scenario, Turn, format_reply

_WORD_RE = re.compile(r"\s*\S+")


class ScriptSettings(Protocol):
    """What the turns read from the server, live (a test may change the scenario)."""

    scenario: Scenario
    pace_audio: bool
    chunk_ms: float
    response_delay_ms: float


class TurnScript:
    """Plays the scenario on a connection, one turn per utterance heard."""

    def __init__(
        self, settings: ScriptSettings, recordings: Recordings, faults: FaultBoard
    ) -> None:
        self._settings = settings
        self._rec = recordings
        self._faults = faults

    async def run(self, conn: LiveConnection) -> None:
        """Run scripted turns one at a time; a tool wait is resumed from the session."""
        session = conn.session
        assert session is not None
        while not (conn.ended or conn.closing):
            awaiting = session.awaiting
            if awaiting is not None:
                if not await self._await_tools(conn, awaiting):
                    return
                if session.awaiting is not awaiting:
                    continue  # another connection of this session claimed it
                session.awaiting = None
                await self._finish_turn(conn, awaiting.turn, awaiting.record, awaiting)
                continue
            utterance = await conn.utterances.get()
            await self._start_turn(conn, utterance)

    async def _start_turn(self, conn: LiveConnection, utterance: Utterance) -> None:
        session = conn.session
        assert session is not None
        index = session.next_turn
        session.next_turn += 1
        turn = self._settings.scenario.turn_at(index)
        record = TurnRecord(
            connection=conn.index,
            turn_index=index,
            scripted=turn is not None,
            utterance_reason=utterance.reason,
            utterance_at=utterance.t,
            started_at=time.monotonic(),
        )
        self._rec.turns.append(record)
        heard = turn.user if turn is not None else utterance.text
        session.transcript.append(("user", heard))
        session.text_chars += len(utterance.text)
        await conn.send_resumption(resumable=False)
        if self._settings.response_delay_ms > 0:
            await asyncio.sleep(self._settings.response_delay_ms / 1000.0)
        if conn.want_input_transcription and heard:
            for piece in _WORD_RE.findall(heard):
                await conn.send({"serverContent": {"inputTranscription": {"text": piece}}})
        if turn is None:
            await self._complete(conn, record, None, 0)
            return
        if turn.tool_calls:
            await self._call_tools(conn, session, turn, record)
            return
        await self._finish_turn(conn, turn, record, None)

    async def _call_tools(
        self, conn: LiveConnection, session: SessionState, turn: Turn, record: TurnRecord
    ) -> None:
        """Make the turn's calls; the session waits for their answers."""
        now = time.monotonic()
        calls: dict[str, PendingCall] = {}
        for spec in turn.tool_calls:
            call_id = f"function-call-{secrets.token_hex(8)}"
            cancel_at = None
            if spec.cancel_after_ms is not None:
                cancel_at = now + spec.cancel_after_ms / 1000.0
            calls[call_id] = PendingCall(call_id, spec.name, dict(spec.args), now, cancel_at)
        session.awaiting = AwaitingTools(turn, record, calls)
        record.tool_call_ids = list(calls)
        await conn.send(
            {"toolCall": {"functionCalls": [
                {"id": c.id, "name": c.name, "args": dict(c.args)} for c in calls.values()
            ]}},
        )
        for c in calls.values():
            self._rec.tool_calls.append(ToolCallRecord(now, conn.index, c.id, c.name, c.args))
        self._rec.notify()
        await self._faults.fire(conn, Trigger.TOOL_CALL)

    async def _await_tools(self, conn: LiveConnection, awaiting: AwaitingTools) -> bool:
        """Wait until every call is answered or cancelled; False if the socket is done."""
        while awaiting.unresolved():
            if conn.ended or conn.closing:
                return False
            deadlines = [c.cancel_at for c in awaiting.unresolved() if c.cancel_at is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            awaiting.changed.clear()
            try:
                await asyncio.wait_for(awaiting.changed.wait(), timeout=timeout)
            except TimeoutError:
                if conn.finished():
                    return False
                await self._cancel_due(conn, awaiting)
        return not (conn.ended or conn.closing)

    async def _cancel_due(self, conn: LiveConnection, awaiting: AwaitingTools) -> None:
        """Cancel the calls whose scripted patience ran out."""
        now = time.monotonic()
        due = [c for c in awaiting.unresolved() if c.cancel_at is not None and c.cancel_at <= now]
        if due:
            for c in due:
                c.state = "cancelled"
            ids = tuple(c.id for c in due)
            awaiting.record.cancelled = True
            await conn.send({"toolCallCancellation": {"ids": list(ids)}})
            self._rec.tool_cancellations.append(ToolCancellationRecord(now, conn.index, ids))
            self._rec.notify()

    async def _finish_turn(
        self, conn: LiveConnection, turn: Turn, record: TurnRecord, awaiting: AwaitingTools | None
    ) -> None:
        text: str | None = turn.reply
        if awaiting is not None:
            if any(c.state == "cancelled" for c in awaiting.calls.values()):
                text = turn.cancelled_reply
            elif any(c.scheduling == "SILENT" for c in awaiting.calls.values()):
                text = None
            else:
                text = format_reply(
                    turn.reply,
                    [(c.name, c.response if isinstance(c.response, dict) else
                      ({"output": c.response} if c.response is not None else None))
                     for c in awaiting.calls.values()],
                )
            await conn.send_resumption(resumable=False)
        pcm = turn.audio.render() if text is not None else b""
        completed = True
        if text is not None:
            completed = await self._stream_reply(conn, record, text, pcm)
        await self._complete(conn, record, turn, len(pcm), completed=completed, text=text or "")

    async def _stream_reply(
        self, conn: LiveConnection, record: TurnRecord, text: str, pcm: bytes
    ) -> bool:
        """Send transcript pieces and audio chunks; False if barged in."""
        chunk_bytes = 2 * max(1, round(OUTPUT_SAMPLE_RATE * self._settings.chunk_ms / 1000.0))
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
        words = _WORD_RE.findall(text)
        n = max(1, len(chunks))
        spoken: list[str] = []
        session = conn.session
        conn.barge_in.clear()
        conn.replying = True
        start = time.monotonic()
        sent_s = 0.0
        try:
            for i in range(n):
                if conn.barge_in.is_set():
                    await self._interrupted(conn, record)
                    return False
                piece = "".join(words[i * len(words) // n : (i + 1) * len(words) // n])
                if piece:
                    spoken.append(piece)
                    if conn.want_output_transcription:
                        await conn.send(
                            {"serverContent": {"outputTranscription": {"text": piece}}}
                        )
                if i < len(chunks):
                    sent_s += await self._send_chunk(conn, record, chunks[i])
                if self._settings.pace_audio and i < len(chunks):
                    delay = start + sent_s - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.barge_in.wait(), timeout=max(0.0, delay))
                else:
                    await asyncio.sleep(0)
            if conn.barge_in.is_set() and self._settings.pace_audio:
                await self._interrupted(conn, record)
                return False
            return True
        finally:
            conn.replying = False
            record.reply_text = "".join(spoken)
            if session is not None:
                session.transcript.append(("model", record.reply_text))

    async def _send_chunk(self, conn: LiveConnection, record: TurnRecord, chunk: bytes) -> float:
        """One modelTurn of reply audio; returns its duration."""
        await conn.send({"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_SAMPLE_RATE}",
                            "data": base64.b64encode(chunk).decode("ascii")}}
        ]}}})
        if record.first_audio_at is None:
            record.first_audio_at = time.monotonic()
        record.audio_bytes_sent += len(chunk)
        seconds = len(chunk) / (2.0 * OUTPUT_SAMPLE_RATE)
        await self._faults.fire(conn, Trigger.REPLY_CHUNK)
        return seconds

    async def _interrupted(self, conn: LiveConnection, record: TurnRecord) -> None:
        record.interrupted = True
        await conn.send({"serverContent": {"interrupted": True}})

    async def _complete(
        self,
        conn: LiveConnection,
        record: TurnRecord,
        turn: Turn | None,
        audio_bytes: int,
        *,
        completed: bool = True,
        text: str = "",
    ) -> None:
        """generationComplete, usageMetadata, turnComplete, then a fresh handle."""
        if completed:
            await conn.send({"serverContent": {"generationComplete": True}})
            record.generation_complete_at = time.monotonic()
        session = conn.session
        assert session is not None
        if turn is not None and turn.usage is not None:
            prompt, response = turn.usage.prompt_token_count, turn.usage.response_token_count
        else:
            prompt = math.ceil(
                session.heard_audio_s * 25 + session.video_frames * 258 + session.text_chars / 4
            )
            response = math.ceil(audio_bytes / (2.0 * OUTPUT_SAMPLE_RATE) * 25 + len(text) / 4)
        await conn.send({"usageMetadata": {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
        }})
        await conn.send({"serverContent": {"turnComplete": True}})
        record.turn_complete_at = time.monotonic()
        record.completed_on = conn.index
        self._rec.notify()
        await self._faults.fire(conn, Trigger.TURN_COMPLETE)
        await conn.send_resumption(resumable=True)

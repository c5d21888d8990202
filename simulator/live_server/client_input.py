"""What the fake does with each client message after setup: hear, see, take answers.

Audio feeds the end-of-utterance detector (an utterance starts a turn), text
and activity markers end utterances directly, a tool answer resolves the call
it names, and speech while the model replies barges in.
"""

from __future__ import annotations

import asyncio
import json
import time

from simulator.live_server import protocol
from simulator.live_server.connection import LiveConnection, Utterance
from simulator.live_server.faults import FaultBoard, Trigger
from simulator.live_server.protocol import JsonDict, ProtocolError, field
from simulator.live_server.records import (
    ReceivedAudio,
    ReceivedVideo,
    Recordings,
    ToolResponseRecord,
    UtteranceRecord,
)
from simulator.live_server.sessions import AwaitingTools, SessionState
from simulator.live_server.vad import VadEvent


class ClientInput:
    """Handles the messages of live connections and records what they carried."""

    def __init__(self, recordings: Recordings, faults: FaultBoard) -> None:
        self._rec = recordings
        self._faults = faults

    async def on_message(self, conn: LiveConnection, raw: str | bytes) -> None:
        """One client message after setup."""
        msg = conn.read(raw)
        try:
            kind = protocol.kind_of(msg)
        except ProtocolError:
            conn.record_received("invalid", msg)
            raise
        conn.record_received(kind, msg)
        if conn.closing or conn.quiet:
            return
        body = next(iter(msg.values()))
        if not isinstance(body, dict):
            raise ProtocolError(1007, f"Invalid value at '{kind}': must be an object")
        if kind == "setup":
            raise ProtocolError(1007, "setup must be the first and only setup message.")
        if kind == "realtime_input":
            await self._on_realtime(conn, body)
        elif kind == "client_content":
            await self._on_client_content(conn, body)
        elif kind == "tool_response":
            await self._on_tool_response(conn, body)
        elif kind == "context_update":
            _on_context_update(conn, body)
        if not conn.closing:
            await self._faults.fire(conn, Trigger.CLIENT_MESSAGE)

    async def _on_realtime(self, conn: LiveConnection, body: JsonDict) -> None:
        for mime, data, where in protocol.realtime_media(body):
            if mime.lower().startswith("audio/"):
                await self._on_audio(conn, data, protocol.audio_rate(mime, where))
            elif mime.lower().startswith("image/"):
                await self._on_video(conn, data, mime)
            else:
                raise ProtocolError(1007, f"Unsupported mime type at '{where}': {mime[:40]}")
            if conn.closing:
                return
        await self._realtime_signals(conn, body)

    async def _realtime_signals(self, conn: LiveConnection, body: JsonDict) -> None:
        """Text, activity markers and the end of an audio stream: utterance boundaries."""
        text = field(body, "text")
        if text is not None:
            if not isinstance(text, str):
                raise ProtocolError(1007, "Invalid value at 'realtime_input.text'")
            speech_started(conn)
            await self.end_utterance(conn, "text", text)
        if field(body, "activity_start") is not None:
            conn.in_activity = True
            speech_started(conn)
        if field(body, "activity_end") is not None and conn.in_activity:
            conn.in_activity = False
            conn.detector.force_end()
            await self.end_utterance(conn, "activity_end")
        stream_end = field(body, "audio_stream_end")
        if stream_end is not None and not isinstance(stream_end, bool):
            raise ProtocolError(1007, "Invalid value at 'realtime_input.audio_stream_end'")
        if stream_end and conn.detector.force_end() and conn.auto_vad:
            await self.end_utterance(conn, "audio_stream_end")

    async def _on_audio(self, conn: LiveConnection, pcm: bytes, rate: int) -> None:
        now = time.monotonic()
        self._rec.audio_chunks.append(ReceivedAudio(now, pcm, conn.index, rate))
        conn.record.audio_bytes += len(pcm)
        if conn.session is not None:
            conn.session.heard_audio_s += len(pcm) / (2.0 * rate)
        if conn.auto_vad:
            for event in conn.detector.feed(pcm, rate):
                if event is VadEvent.SPEECH_START:
                    speech_started(conn)
                else:
                    await self.end_utterance(conn, "silence")
        await self._faults.fire(conn, Trigger.AUDIO_CHUNK)

    async def _on_video(self, conn: LiveConnection, data: bytes, mime: str) -> None:
        self._rec.video_frames.append(ReceivedVideo(time.monotonic(), data, conn.index, mime))
        if conn.session is not None:
            conn.session.video_frames += 1
        await self._faults.fire(conn, Trigger.VIDEO_FRAME)

    async def _on_client_content(self, conn: LiveConnection, body: JsonDict) -> None:
        texts, complete = protocol.client_content(body)
        if conn.session is not None:
            conn.session.text_chars += sum(len(t) for t in texts)
        if conn.replying and conn.barge_in_allowed:
            conn.barge_in.set()
        if complete:
            await self.end_utterance(conn, "client_content", " ".join(texts))

    async def _on_tool_response(self, conn: LiveConnection, body: JsonDict) -> None:
        responses = protocol.function_responses(body)
        session = conn.session
        assert session is not None
        awaiting = session.awaiting
        consumed = False
        now = time.monotonic()
        for i, fr in enumerate(responses):
            record = ToolResponseRecord(now, conn.index, *protocol.function_response(fr, i))
            consumed |= self._answer(session, awaiting, record)
        self._rec.notify()
        if consumed and awaiting is not None:
            await conn.send_resumption(resumable=True)
            awaiting.changed.set()
            await self._faults.fire(conn, Trigger.TOOL_RESPONSE)

    def _answer(
        self, session: SessionState, awaiting: AwaitingTools | None, record: ToolResponseRecord
    ) -> bool:
        """Resolve the call an answer names; False (recorded as unexpected) if none waits."""
        call = awaiting.calls.get(record.id) if awaiting and record.id is not None else None
        if call is None or call.state != "pending":
            # Ignored: the service most plausibly drops an id it no longer waits for.
            self._rec.unexpected_tool_responses.append(record)
            if record.id in session.answered_calls:
                self._rec.duplicate_tool_responses.append(record)
            return False
        call.state = "answered"
        session.answered_calls.append(call.id)
        call.response = record.response
        call.scheduling = record.scheduling
        self._rec.tool_responses.append(record)
        session.transcript.append(("tool", f"{call.name} -> {json.dumps(record.response)}"))
        return True

    async def end_utterance(self, conn: LiveConnection, reason: str, text: str = "") -> None:
        """The user finished: queue a turn (counted as dropped if too many wait)."""
        now = time.monotonic()
        self._rec.utterances.append(UtteranceRecord(now, conn.index, reason))
        try:
            conn.utterances.put_nowait(Utterance(now, reason, text))
        except asyncio.QueueFull:
            self._rec.dropped_utterances += 1
        self._rec.notify()
        await self._faults.fire(conn, Trigger.UTTERANCE_END)


def _on_context_update(conn: LiveConnection, body: JsonDict) -> None:
    """A new system instruction or tool set for the rest of the session."""
    protocol.check_fields(body, protocol.CONTEXT_UPDATE_FIELDS, "context_update")
    assert conn.session is not None
    if field(body, "system_instruction") is not None:
        conn.session.system_instruction = field(body, "system_instruction")
    if field(body, "tools") is not None:
        conn.session.tools = field(body, "tools")


def speech_started(conn: LiveConnection) -> None:
    """The user speaks: a reply under way is interrupted, if the setup allows it."""
    if conn.replying and conn.barge_in_allowed:
        conn.barge_in.set()

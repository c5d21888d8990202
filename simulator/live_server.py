"""A protocol-faithful fake of the Gemini Live API (BidiGenerateContent over WSS).

It stands in for Google's service so the real google-genai SDK can be driven
end to end with no internet: the demo, the integration tests and the
benchmarks all talk to it over TLS on loopback. It is deliberately strict where
the real service is strict (path, API key, first message ``setup``, unknown
fields -> close 1007) and lenient where the SDK is inconsistent (snake_case and
camelCase keys, both base64 alphabets, padding optional).

What it does on the wire, in order, for one scripted turn (see
``simulator.scenario`` for the script format)::

    <- setupComplete, sessionResumptionUpdate{newHandle, resumable:true}
    -> realtimeInput audio ... (speech, then >= silence_ms of silence)
    <- sessionResumptionUpdate{resumable:false}           # generating
    <- serverContent{inputTranscription{text}} (word pieces)
    <- toolCall{functionCalls:[{id,name,args}]}            # if scripted
    -> toolResponse{functionResponses:[{id,name,response}]}
    <- sessionResumptionUpdate{newHandle, resumable:true}  # response consumed
    <- sessionResumptionUpdate{resumable:false}
    <- serverContent{outputTranscription} / serverContent{modelTurn{inlineData}}
       ... alternating, ~chunk_ms of 24 kHz PCM per modelTurn
    <- serverContent{generationComplete:true}
    <- usageMetadata{promptTokenCount, responseTokenCount, totalTokenCount}
    <- serverContent{turnComplete:true}
    <- sessionResumptionUpdate{newHandle, resumable:true}

Faithful details: transcriptions are only sent when the setup asked for them
(``inputAudioTranscription`` / ``outputAudioTranscription``), resumption
updates only when the setup carried ``sessionResumption`` (``{}`` is enough),
and with ``realtimeInputConfig.automaticActivityDetection.disabled`` only
activityStart/activityEnd delimit speech. Barge-in sends
``serverContent{interrupted:true}`` then ``turnComplete``. A reply that was
being streamed when its connection dropped is lost (the script moves on); a
tool call that was pending is carried by the session and may be answered on
a connection that resumed it. An answer to a call the session already got an
answer for (a client resending one it could not know had arrived) is ignored
and recorded in ``duplicate_tool_responses`` (and, like every answer to no
pending call, in ``unexpected_tool_responses``): the service documents no
error for it, and closing the session would punish the careful client.

Faults (:class:`Fault`) can be injected at once with :meth:`FakeLiveServer.inject`
or armed on a scripted point with :meth:`FakeLiveServer.arm` (:class:`Trigger`)
so tests are deterministic. Everything received is recorded with
``time.monotonic()`` (system-wide on Linux, so another process can compare).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import enum
import functools
import hmac
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs

import numpy as np
import trustme
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from simulator.scenario import (
    OUTPUT_SAMPLE_RATE,
    Scenario,
    ScenarioError,
    Turn,
    default_scenario,
    format_reply,
    load_scenario,
)

__all__ = [
    "ArmedFault",
    "AudioChunk",
    "ConnectionRecord",
    "EndOfUtteranceDetector",
    "FakeLiveServer",
    "Fault",
    "ReceivedMessage",
    "RejectedHandshake",
    "SentMessage",
    "SessionState",
    "ToolCallRecord",
    "ToolResponseRecord",
    "Trigger",
    "TurnRecord",
    "UtteranceRecord",
    "VadEvent",
    "VideoFrame",
    "main",
]

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

_PATH_RE = re.compile(
    r"/ws/google\.ai\.generativelanguage\.([A-Za-z0-9_]+)\.GenerativeService\.BidiGenerateContent"
)
_AUDIO_MIME_RE = re.compile(r"audio/pcm\s*(?:;\s*rate\s*=\s*(\d+))?\s*", re.IGNORECASE)
_WORD_RE = re.compile(r"\s*\S+")
_MAX_REASON_BYTES = 123  # RFC 6455: control frame payload 125 minus the code
_MAX_MESSAGE_BYTES = 16 * 2**20
_UTTERANCE_QUEUE = 32
_HANDLES_PER_SESSION = 32
_ANSWERED_CALLS = 1000
_TASK_CANCEL_TIMEOUT = 5.0

_DEFAULT_REASONS: dict[int, str] = {
    1000: "",
    1001: "Going away",
    1007: "Request contains an invalid argument.",
    1008: "Request violates a policy.",
    1011: "Internal error encountered.",
}


class Fault(enum.Enum):
    """Faults the fake can produce; see :meth:`FakeLiveServer.inject`."""

    GOAWAY = "goaway"
    """Send goAway{timeLeft}; close 1011 "Deadline expired" if still open then."""
    ABORT = "abort"
    """Abort the TCP connection (transport.abort()); the client sees 1006."""
    CLOSE = "close"
    """Close with ``code`` and ``reason`` (1000, 1008, 1011, ...)."""
    GO_QUIET = "go_quiet"
    """Send nothing more, not even pongs or a close reply, until the client goes
    away. Every write is dropped while reading continues, so the server still
    notices when the client gives up; what arrives meanwhile is recorded in
    the connection's messages but not acted on."""
    REJECT_RESUME = "reject_resume"
    """Next ``count`` connections carrying a handle: close 1007 after setup
    and forget that session (resuming it again fails too; start fresh)."""
    SETUP_HANG = "setup_hang"
    """Next ``count`` connections: read setup, never answer, stay open."""
    REJECT_KEY = "reject_key"
    """Next ``count`` handshakes (on the right path) fail with HTTP 403."""
    REJECT_SETUP = "reject_setup"
    """Next ``count`` connections: read setup, then close with ``code`` and
    ``reason`` instead of setupComplete (1007 for a field the service refuses,
    1008 for a passing policy problem, a reason saying the key is not valid)."""


_CONNECTION_FAULTS = frozenset({Fault.GOAWAY, Fault.ABORT, Fault.CLOSE, Fault.GO_QUIET})
_FRAME_FAULTS = frozenset({Fault.ABORT, Fault.CLOSE, Fault.GO_QUIET})


class Trigger(enum.Enum):
    """Scripted points at which an armed fault fires (counted per connection)."""

    SETUP_COMPLETE = "setup_complete"
    """After setupComplete (and the first resumption update) is sent."""
    CLIENT_MESSAGE = "client_message"
    """After the Nth client message following setup has been handled."""
    AUDIO_CHUNK = "audio_chunk"
    """After the Nth audio chunk has been received and processed."""
    VIDEO_FRAME = "video_frame"
    """After the Nth video frame has been received."""
    UTTERANCE_END = "utterance_end"
    """After the Nth end of a user utterance is detected."""
    TOOL_CALL = "tool_call"
    """After the Nth toolCall message is sent."""
    TOOL_RESPONSE = "tool_response"
    """After the Nth toolResponse message that answered a pending call."""
    TOOL_RESPONSE_UNREAD = "tool_response_unread"
    """When the Nth toolResponse frame arrives, before it is read: the fault
    (ABORT, CLOSE or GO_QUIET only) hits as the frame is parsed, so neither the
    answer nor anything after it is acted on, and a ping right behind it gets
    no pong ahead of the close (websockets answers pings while parsing, before
    the handler could see the message)."""
    REPLY_CHUNK = "reply_chunk"
    """After the Nth modelTurn audio chunk is sent."""
    TURN_COMPLETE = "turn_complete"
    """After the Nth turnComplete is sent."""


class VadEvent(enum.Enum):
    """What the energy detector noticed in a chunk of audio."""

    SPEECH_START = "speech_start"
    UTTERANCE_END = "utterance_end"


class AudioChunk(NamedTuple):
    """One received audio chunk: (recv monotonic time, PCM bytes, connection index)."""

    t: float
    pcm: bytes
    connection: int
    sample_rate: int = 16_000


class VideoFrame(NamedTuple):
    """One received video frame: (recv monotonic time, JPEG bytes, connection index)."""

    t: float
    jpeg: bytes
    connection: int
    mime_type: str = "image/jpeg"


class ReceivedMessage(NamedTuple):
    """A client message as received (raw parsed JSON, keys as the client sent them)."""

    t: float
    kind: str
    message: JsonDict


class SentMessage(NamedTuple):
    """A server message as sent (camelCase JSON)."""

    t: float
    kind: str
    message: JsonDict


class ToolCallRecord(NamedTuple):
    """A function call the fake model made."""

    t: float
    connection: int
    id: str
    name: str
    args: Mapping[str, Any]


class ToolResponseRecord(NamedTuple):
    """One function response received from the client."""

    t: float
    connection: int
    id: str | None
    name: str | None
    response: Any
    scheduling: str | None


class ToolCancellationRecord(NamedTuple):
    """A toolCallCancellation the fake sent."""

    t: float
    connection: int
    ids: tuple[str, ...]


class UtteranceRecord(NamedTuple):
    """The server decided the user finished speaking (and why)."""

    t: float
    connection: int
    reason: str


class RejectedHandshake(NamedTuple):
    """An HTTP-level rejection (404 path, 403 key). The key is never stored."""

    t: float
    status: int
    path: str


@dataclass
class TurnRecord:
    """Timing and outcome of one scripted model turn (for tests and benchmarks)."""

    connection: int
    turn_index: int
    scripted: bool
    utterance_reason: str
    utterance_at: float
    started_at: float
    tool_call_ids: list[str] = field(default_factory=list)
    first_audio_at: float | None = None
    generation_complete_at: float | None = None
    turn_complete_at: float | None = None
    completed_on: int | None = None
    interrupted: bool = False
    cancelled: bool = False
    reply_text: str = ""
    audio_bytes_sent: int = 0


@dataclass
class ConnectionRecord:
    """Everything observed on one WebSocket connection."""

    index: int
    api_version: str
    path: str
    started_at: float
    setup: JsonDict | None = None
    model: str | None = None
    requested_handle: str | None = None
    resumed_handle: str | None = None
    session_id: str | None = None
    setup_completed_at: float | None = None
    setup_hung: bool = False
    ended_at: float | None = None
    close_sent: tuple[int, str] | None = None
    close_received: tuple[int, str] | None = None
    aborted: bool = False
    quiet: bool = False
    error: str | None = None
    goaway_sent_at: float | None = None
    faults: list[tuple[float, str]] = field(default_factory=list)
    messages: deque[ReceivedMessage] = field(default_factory=deque)
    sent: deque[SentMessage] = field(default_factory=deque)
    audio_bytes: int = 0
    dropped_sends: int = 0

    @property
    def resumed(self) -> bool:
        """True when this connection continued an existing session."""
        return self.resumed_handle is not None

    @property
    def open(self) -> bool:
        """True until the server has finished with this connection."""
        return self.ended_at is None


@dataclass
class _PendingCall:
    id: str
    name: str
    args: Mapping[str, Any]
    sent_at: float
    cancel_at: float | None
    state: str = "pending"  # pending | answered | cancelled
    response: Any = None
    scheduling: str | None = None


@dataclass
class _AwaitingTools:
    """A turn blocked on tool responses; owned by the session, not a socket."""

    turn: Turn
    record: TurnRecord
    calls: dict[str, _PendingCall]
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def unresolved(self) -> list[_PendingCall]:
        return [c for c in self.calls.values() if c.state == "pending"]


@dataclass
class SessionState:
    """Server-side state that survives reconnects via resumption handles."""

    id: str
    created_at: float
    next_turn: int = 0
    transcript: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=1000))
    handles: deque[str] = field(default_factory=lambda: deque(maxlen=_HANDLES_PER_SESSION))
    connection_indices: list[int] = field(default_factory=list)
    heard_audio_s: float = 0.0
    video_frames: int = 0
    text_chars: int = 0
    awaiting: _AwaitingTools | None = None
    answered_calls: deque[str] = field(default_factory=lambda: deque(maxlen=_ANSWERED_CALLS))
    system_instruction: Any = None
    tools: Any = None

    @property
    def pending_tool_calls(self) -> list[str]:
        """Ids of tool calls still waiting for a response."""
        if self.awaiting is None:
            return []
        return [c.id for c in self.awaiting.unresolved()]


class EndOfUtteranceDetector:
    """Energy-based end-of-utterance detection on 16-bit mono PCM.

    Time is counted in samples received, not wall time, so a client that
    streams faster than real time gets the same decisions as a paced one.
    """

    def __init__(
        self,
        *,
        threshold_rms: float = 300.0,
        silence_ms: float = 600.0,
        min_speech_ms: float = 40.0,
        frame_ms: float = 20.0,
    ) -> None:
        self.threshold_rms = threshold_rms
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.frame_ms = frame_ms
        self.in_speech = False
        self._rate = 0
        self._pending = b""
        self._speech_samples = 0
        self._silence_samples = 0

    def feed(self, pcm: bytes, sample_rate: int = 16_000) -> list[VadEvent]:
        """Consume PCM and return the events it produced, in order."""
        if sample_rate != self._rate:
            self._rate = sample_rate
            self._pending = b""
        frame_samples = max(1, round(sample_rate * self.frame_ms / 1000.0))
        frame_bytes = 2 * frame_samples
        data = self._pending + pcm
        n_frames = len(data) // frame_bytes
        self._pending = data[n_frames * frame_bytes :]
        if n_frames == 0:
            return []
        samples = np.frombuffer(data, dtype="<i2", count=n_frames * frame_samples)
        frames = samples.astype(np.float64).reshape(n_frames, frame_samples)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        min_speech = sample_rate * self.min_speech_ms / 1000.0
        silence_needed = sample_rate * self.silence_ms / 1000.0
        events: list[VadEvent] = []
        for level in rms.tolist():
            loud = level >= self.threshold_rms
            if not self.in_speech:
                self._speech_samples = self._speech_samples + frame_samples if loud else 0
                if loud and self._speech_samples >= min_speech:
                    self.in_speech = True
                    self._silence_samples = 0
                    events.append(VadEvent.SPEECH_START)
            elif loud:
                self._silence_samples = 0
            else:
                self._silence_samples += frame_samples
                if self._silence_samples >= silence_needed:
                    self._reset()
                    events.append(VadEvent.UTTERANCE_END)
        return events

    def force_end(self) -> bool:
        """End the utterance now (audioStreamEnd); True if speech was in progress."""
        was = self.in_speech
        self._reset()
        self._pending = b""
        return was

    def _reset(self) -> None:
        self.in_speech = False
        self._speech_samples = 0
        self._silence_samples = 0


class ArmedFault:
    """A fault waiting for its trigger; await :meth:`wait` to know it fired."""

    def __init__(
        self, fault: Fault, trigger: Trigger, count: int, spec: _FaultSpec,
        connection: int | None,
    ) -> None:
        self.fault = fault
        self.trigger = trigger
        self.count = count
        self.spec = spec
        self.connection = connection
        self.fired_at: float | None = None
        self.fired_on: int | None = None
        self._fired = asyncio.Event()
        self._counts: dict[int, int] = {}

    @property
    def fired(self) -> bool:
        """True once the fault has been applied."""
        return self._fired.is_set()

    async def wait(self, timeout: float | None = 10.0) -> int:  # noqa: ASYNC109 (bounded by default)
        """Wait until it fired; return the index of the connection it hit."""
        async with asyncio.timeout(timeout):
            await self._fired.wait()
        assert self.fired_on is not None
        return self.fired_on

    def _count(self, conn_index: int) -> bool:
        if self.connection is not None and conn_index != self.connection:
            return False
        n = self._counts.get(conn_index, 0) + 1
        self._counts[conn_index] = n
        return n >= self.count

    def _mark(self, conn_index: int) -> None:
        self.fired_at = time.monotonic()
        self.fired_on = conn_index
        self._fired.set()


@dataclass(frozen=True)
class _FaultSpec:
    fault: Fault
    time_left: float = 2.0
    code: int = 1011
    reason: str | None = None


class _ProtocolError(Exception):
    """The client broke the protocol; close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class _MutedTransport(asyncio.Transport):
    """Wraps a transport and drops every write: the server goes silent.

    Reading continues, so the websockets protocol still sees the client's
    close frame or TCP FIN and the handler ends when the client gives up;
    but no pong, no close reply and no data ever leaves.
    """

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self._inner = inner
        self.dropped_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.dropped_bytes += len(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        return None

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()


class _FrameHookConnection(ServerConnection):
    """A server connection that shows each client frame to a hook as it is parsed.

    Lets a fault hit a message before the handler reads it and before anything
    behind it (a ping) is answered: the frame-level TOOL_RESPONSE_UNREAD trigger.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_frame: Callable[[Frame], None] | None = None
        parse = self.protocol.recv_frame

        def recv_frame(frame: Frame) -> None:
            if self.on_frame is not None:
                try:
                    self.on_frame(frame)
                except Exception:  # a bug in the hook must not break the protocol
                    log.exception("fake Live server: frame hook failed")
            parse(frame)

        self.protocol.recv_frame = recv_frame  # type: ignore[method-assign]


@dataclass
class _Utterance:
    t: float
    reason: str
    text: str = ""


class _Conn:
    """Runtime side of one connection: socket, session, tasks, flags."""

    def __init__(
        self, ws: ServerConnection, record: ConnectionRecord, detector: EndOfUtteranceDetector
    ) -> None:
        self.ws = ws
        self.record = record
        self.detector = detector
        self.session: SessionState | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.utterances: asyncio.Queue[_Utterance] = asyncio.Queue(maxsize=_UTTERANCE_QUEUE)
        self.barge_in = asyncio.Event()
        self.replying = False
        self.closing = False
        self.quiet = False
        self.ended = False
        self.live = False
        self.in_activity = False
        self.want_input_transcription = False
        self.want_output_transcription = False
        self.resumption_enabled = False
        self.auto_vad = True
        self.barge_in_allowed = True

    @property
    def index(self) -> int:
        return self.record.index

    def finished(self) -> bool:
        """True once nothing more should be sent on this connection."""
        return self.ended or self.closing


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """Look up a snake_case field under its snake or camel spelling."""
    if name in obj:
        return obj[name]
    return obj.get(_camel(name))


def _check_fields(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if _snake(key) not in allowed:
            raise _ProtocolError(
                1007,
                f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': '
                "Cannot find field.",
            )


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (the SDK sends URL-safe)."""
    s = "".join(text.split()).replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


def _duration(seconds: float) -> str:
    """Format seconds like proto JSON Duration: "2s", "1.5s", "0.25s"."""
    s = f"{max(seconds, 0.0):.9f}".rstrip("0").rstrip(".")
    return f"{s}s"


def _clip_reason(reason: str) -> str:
    data = reason.encode("utf-8")
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[:_MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def _model_id(model: str) -> str:
    return model.removeprefix("models/")


_KINDS: dict[str, str] = {}
for _k in ("setup", "client_content", "realtime_input", "tool_response", "context_update"):
    _KINDS[_k] = _k
    _KINDS[_camel(_k)] = _k

_REALTIME_FIELDS = frozenset(
    {"audio", "video", "text", "audio_stream_end", "activity_start", "activity_end",
     "media_chunks"}
)
_BLOB_FIELDS = frozenset({"data", "mime_type", "display_name"})
_CLIENT_CONTENT_FIELDS = frozenset({"turns", "turn_complete"})
_TOOL_RESPONSE_FIELDS = frozenset({"function_responses"})
_FUNCTION_RESPONSE_FIELDS = frozenset(
    {"id", "name", "response", "scheduling", "will_continue", "parts"}
)
_CONTEXT_UPDATE_FIELDS = frozenset({"system_instruction", "tools"})


class FakeLiveServer:
    """The fake Live endpoint. Use as ``async with FakeLiveServer(...) as server``.

    Args:
        api_key: the accepted ``x-goog-api-key`` (or ``?key=``); None accepts any.
        scenario: the script (default: :func:`simulator.scenario.default_scenario`).
        models: accepted model ids (with or without ``models/``); None = any.
        host, port: where to listen (port 0 = a free port).
        cert_dir: where ``ca.pem`` is written (default: a temp dir removed on stop).
        pace_audio: stream reply audio in real time instead of as fast as possible.
        silence_ms, speech_threshold_rms, min_speech_ms: end-of-utterance detector.
        chunk_ms: reply audio per modelTurn message (40-100 ms like the service).
        response_delay_ms: pretend model latency before each turn starts.
        connection_lifetime_s, goaway_lead_s: if set, every connection gets
            goAway ``goaway_lead_s`` before ``connection_lifetime_s`` and is then
            closed 1011 "Deadline expired", like the real ~10 min limit.
        reject_resume_while_open: close 1011 when a handle is resumed while its
            previous connection is still open (a reported service behaviour);
            otherwise the old connection is closed 1000 and the new one wins.
        record_limit: bound of every recording list (oldest entries drop).
        setup_timeout_s: how long to wait for the first message.
        compression: offer permessage-deflate.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "fake-key",
        scenario: Scenario | None = None,
        models: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_dir: str | os.PathLike[str] | None = None,
        pace_audio: bool = False,
        silence_ms: float = 600.0,
        speech_threshold_rms: float = 300.0,
        min_speech_ms: float = 40.0,
        chunk_ms: float = 80.0,
        response_delay_ms: float = 0.0,
        connection_lifetime_s: float | None = None,
        goaway_lead_s: float = 60.0,
        reject_resume_while_open: bool = False,
        record_limit: int = 100_000,
        setup_timeout_s: float = 30.0,
        compression: bool = True,
    ) -> None:
        if not 10.0 <= chunk_ms <= 1000.0:
            raise ValueError("chunk_ms must be between 10 and 1000")
        if record_limit < 1:
            raise ValueError("record_limit must be >= 1")
        self.api_key = api_key
        self.scenario = scenario if scenario is not None else default_scenario()
        self.models: frozenset[str] | None = (
            frozenset(_model_id(m) for m in models) if models is not None else None
        )
        self.host = host
        self.pace_audio = pace_audio
        self.silence_ms = silence_ms
        self.speech_threshold_rms = speech_threshold_rms
        self.min_speech_ms = min_speech_ms
        self.chunk_ms = chunk_ms
        self.response_delay_ms = response_delay_ms
        self.connection_lifetime_s = connection_lifetime_s
        self.goaway_lead_s = goaway_lead_s
        self.reject_resume_while_open = reject_resume_while_open
        self.setup_timeout_s = setup_timeout_s
        self.record_limit = record_limit
        self._requested_port = port
        self._compression = compression
        self._cert_dir_arg = Path(cert_dir) if cert_dir is not None else None
        self._temp_dir: Path | None = None

        # Recordings (bounded deques; index/iterate like lists).
        self.connections: deque[ConnectionRecord] = deque(maxlen=record_limit)
        self.audio_chunks: deque[AudioChunk] = deque(maxlen=record_limit)
        self.video_frames: deque[VideoFrame] = deque(maxlen=record_limit)
        self.tool_calls: deque[ToolCallRecord] = deque(maxlen=record_limit)
        self.tool_responses: deque[ToolResponseRecord] = deque(maxlen=record_limit)
        self.unexpected_tool_responses: deque[ToolResponseRecord] = deque(maxlen=record_limit)
        self.duplicate_tool_responses: deque[ToolResponseRecord] = deque(maxlen=record_limit)
        self.tool_cancellations: deque[ToolCancellationRecord] = deque(maxlen=record_limit)
        self.utterances: deque[UtteranceRecord] = deque(maxlen=record_limit)
        self.turns: deque[TurnRecord] = deque(maxlen=record_limit)
        self.rejected_handshakes: deque[RejectedHandshake] = deque(maxlen=record_limit)
        self.internal_errors: deque[str] = deque(maxlen=1000)
        self.sessions: dict[str, SessionState] = {}
        self.dropped_utterances = 0

        self._handles: dict[str, SessionState] = {}
        self._conns: list[_Conn] = []
        self._armed: list[ArmedFault] = []
        self._reject_key_left = 0
        self._reject_resume_left = 0
        self._setup_hang_left = 0
        self._reject_setup: deque[tuple[int, str]] = deque()
        self._next_index = 0
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self._port: int | None = None
        self._ca: Any = None
        self._ca_pem: bytes = b""
        self._ca_path: Path | None = None
        self._server_ctx: ssl.SSLContext | None = None

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the CA and certificate, then listen."""
        if self._server is not None:
            raise RuntimeError("FakeLiveServer already started")
        self._make_certs()
        assert self._server_ctx is not None
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            ssl=self._server_ctx,
            process_request=self._process_request,
            compression="deflate" if self._compression else None,
            ping_interval=None,
            close_timeout=2.0,
            open_timeout=10.0,
            max_size=_MAX_MESSAGE_BYTES,
            server_header=None,
            create_connection=_FrameHookConnection,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("fake Live server listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            for conn in list(self._conns):
                if conn.quiet or conn.record.setup_hung:
                    conn.ws.transport.abort()
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=10.0)
            except TimeoutError:
                for conn in list(self._conns):
                    conn.ws.transport.abort()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), timeout=5.0)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _make_certs(self) -> None:
        self._ca = trustme.CA()
        cert = self._ca.issue_cert("127.0.0.1", "localhost", "::1")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._server_ctx = ctx
        self._ca_pem = self._ca.cert_pem.bytes()
        if self._cert_dir_arg is not None:
            directory = self._cert_dir_arg
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(tempfile.mkdtemp(prefix="fake-live-"))
            self._temp_dir = directory
        self._ca_path = directory / "ca.pem"
        self._ca_path.write_bytes(self._ca_pem)

    # ---------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        if self._port is None:
            raise RuntimeError("FakeLiveServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``https://HOST:PORT`` (no trailing slash) for ``HttpOptions.base_url``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    @property
    def ca_pem_path(self) -> Path:
        """PEM file of the throwaway CA that signed the server certificate."""
        if self._ca_path is None:
            raise RuntimeError("FakeLiveServer not started")
        return self._ca_path

    @property
    def ca_pem(self) -> bytes:
        """PEM bytes of the throwaway CA."""
        return self._ca_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context for clients that trusts (only) the throwaway CA."""
        if not self._ca_pem:
            raise RuntimeError("FakeLiveServer not started")
        return ssl.create_default_context(cadata=self._ca_pem.decode("ascii"))

    @property
    def live_connection(self) -> ConnectionRecord | None:
        """The most recent connection that completed setup and is still open."""
        conn = self._current_conn()
        return conn.record if conn is not None else None

    def session_for_handle(self, handle: str) -> SessionState | None:
        """The session a resumption handle would resume, if it is known."""
        return self._handles.get(handle)

    # ------------------------------------------------------------------- faults

    async def inject(
        self,
        fault: Fault,
        *,
        time_left: float = 2.0,
        code: int = 1011,
        reason: str | None = None,
        count: int = 1,
        connection: int | None = None,
    ) -> int | None:
        """Apply a fault now; returns the connection index hit (None for next-N faults).

        GOAWAY uses ``time_left``; CLOSE uses ``code``/``reason``; REJECT_KEY,
        REJECT_RESUME and SETUP_HANG use ``count`` (next N connections);
        REJECT_SETUP uses ``count``, ``code`` and ``reason``.
        Connection faults hit ``connection`` (an index) or the live one.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        if fault is Fault.REJECT_KEY:
            self._reject_key_left += count
            return None
        if fault is Fault.REJECT_RESUME:
            self._reject_resume_left += count
            return None
        if fault is Fault.SETUP_HANG:
            self._setup_hang_left += count
            return None
        if fault is Fault.REJECT_SETUP:
            text = reason if reason is not None else _DEFAULT_REASONS.get(code, "")
            self._reject_setup.extend([(code, text)] * count)
            return None
        conn = self._find_conn(connection)
        if conn is None:
            raise RuntimeError("no live connection to inject a fault into")
        await self._apply(conn, _FaultSpec(fault, time_left=time_left, code=code, reason=reason))
        return conn.index

    def arm(
        self,
        fault: Fault,
        trigger: Trigger,
        n: int = 1,
        *,
        time_left: float = 2.0,
        code: int = 1011,
        reason: str | None = None,
        connection: int | None = None,
    ) -> ArmedFault:
        """Arm a connection fault to fire at the Nth ``trigger`` event (one-shot).

        Counting starts when armed and is per connection; ``connection``
        restricts it to one connection index.
        """
        if fault not in _CONNECTION_FAULTS:
            raise ValueError(f"{fault} is not a connection fault; use inject(count=...)")
        if trigger is Trigger.TOOL_RESPONSE_UNREAD and fault not in _FRAME_FAULTS:
            raise ValueError(f"{fault} cannot hit a frame as it is parsed")
        if n < 1:
            raise ValueError("n must be >= 1")
        armed = ArmedFault(
            fault, trigger, n, _FaultSpec(fault, time_left=time_left, code=code, reason=reason),
            connection,
        )
        self._armed.append(armed)
        return armed

    async def send_raw(
        self, message: Mapping[str, Any] | str | bytes, *, connection: int | None = None
    ) -> int:
        """Send any server message, valid or not, on ``connection`` or the live one.

        A mapping goes out as JSON (recorded in ``sent`` like the scripted ones);
        ``str`` and ``bytes`` go out verbatim, as a text or binary frame. For
        tests of what a client does with messages the real service could send
        but the script never does (a rate of 0, an odd byte of PCM, a negative
        token count). Returns the connection index used.
        """
        conn = self._find_conn(connection)
        if conn is None or conn.finished():
            raise RuntimeError("no live connection to send a message on")
        if isinstance(message, str | bytes):
            await conn.ws.send(message)
        else:
            await self._send(conn, dict(message))
        return conn.index

    def disarm_all(self) -> None:
        """Forget every armed fault and next-N counter."""
        self._armed.clear()
        self._reject_key_left = self._reject_resume_left = self._setup_hang_left = 0
        self._reject_setup.clear()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (a default bound keeps tests from hanging)
    ) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever anything is recorded."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    def _current_conn(self) -> _Conn | None:
        for conn in reversed(self._conns):
            if conn.live and not conn.closing and not conn.ended:
                return conn
        return None

    def _find_conn(self, index: int | None) -> _Conn | None:
        if index is None:
            return self._current_conn()
        for conn in self._conns:
            if conn.index == index and not conn.ended:
                return conn
        return None

    async def _apply(self, conn: _Conn, spec: _FaultSpec) -> None:
        """Carry out one connection fault (also used by armed triggers)."""
        if spec.fault is not Fault.GOAWAY:
            self._cut(conn, spec)
            return
        rec = conn.record
        rec.faults.append((time.monotonic(), spec.fault.value))
        self._notify()
        if conn.ended or conn.quiet:
            return
        await self._send(conn, {"goAway": {"timeLeft": _duration(spec.time_left)}})
        rec.goaway_sent_at = time.monotonic()
        self._spawn(conn, self._goaway_deadline(conn, spec.time_left), "goaway-deadline")

    def _cut(self, conn: _Conn, spec: _FaultSpec, *, at_frame: bool = False) -> None:
        """ABORT, CLOSE or GO_QUIET, without awaiting: a frame hook applies them mid-parse."""
        rec = conn.record
        rec.faults.append((time.monotonic(), spec.fault.value))
        self._notify()
        if conn.ended or conn.quiet:
            return
        if spec.fault is Fault.ABORT:
            conn.closing = True
            rec.aborted = True
            conn.ws.transport.abort()
        elif spec.fault is Fault.CLOSE:
            reason = spec.reason if spec.reason is not None else _DEFAULT_REASONS.get(spec.code, "")
            conn.closing = True
            if at_frame:
                # The close frame goes out ahead of the pong to any ping behind this frame.
                with contextlib.suppress(InvalidState):
                    conn.ws.protocol.send_close(spec.code, _clip_reason(reason))
            else:
                self._spawn(conn, self._close(conn, spec.code, reason), "fault-close")
        elif spec.fault is Fault.GO_QUIET:
            conn.quiet = True
            rec.quiet = True
            conn.ws.transport = _MutedTransport(conn.ws.transport)
            current = asyncio.current_task()
            for task in list(conn.tasks):
                if task is not current:
                    task.cancel()

    async def _goaway_deadline(self, conn: _Conn, time_left: float) -> None:
        await asyncio.sleep(max(time_left, 0.0))
        if not conn.ended and not conn.closing:
            await self._close(conn, 1011, "Deadline expired")

    async def _lifetime(self, conn: _Conn) -> None:
        assert self.connection_lifetime_s is not None
        lead = min(max(self.goaway_lead_s, 0.0), self.connection_lifetime_s)
        await asyncio.sleep(self.connection_lifetime_s - lead)
        await self._apply(conn, _FaultSpec(Fault.GOAWAY, time_left=lead))

    def _on_frame(self, conn: _Conn, frame: Frame) -> None:
        """Fire TOOL_RESPONSE_UNREAD on a whole toolResponse frame of a live connection."""
        if not any(a.trigger is Trigger.TOOL_RESPONSE_UNREAD for a in self._armed):
            return
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY) or not frame.fin:
            return
        if not conn.live or conn.finished() or conn.quiet:
            return
        try:
            msg = json.loads(bytes(frame.data))
        except ValueError:
            return
        if not isinstance(msg, dict) or len(msg) != 1:
            return
        if _KINDS.get(next(iter(msg))) != "tool_response":
            return
        for armed in list(self._armed):
            if armed.trigger is Trigger.TOOL_RESPONSE_UNREAD and armed._count(conn.index):
                self._armed.remove(armed)
                armed._mark(conn.index)
                self._cut(conn, armed.spec, at_frame=True)
                return

    async def _fire(self, conn: _Conn, trigger: Trigger) -> None:
        """Count a scripted point and apply any armed fault that is now due."""
        for armed in list(self._armed):
            if armed.trigger is trigger and armed._count(conn.index):
                self._armed.remove(armed)
                armed._mark(conn.index)
                await self._apply(conn, armed.spec)

    # --------------------------------------------------------------- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Check path and API key before the WebSocket upgrade (404 / 403)."""
        path, _, query = request.path.partition("?")
        if _PATH_RE.fullmatch(path) is None:
            self.rejected_handshakes.append(RejectedHandshake(time.monotonic(), 404, path))
            self._notify()
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        keys = request.headers.get_all("x-goog-api-key")
        key: str | None = keys[0] if keys else None
        if key is None:
            key = parse_qs(query).get("key", [None])[0]
        if self._reject_key_left > 0:
            self._reject_key_left -= 1
            return self._forbid(connection, path)
        if self.api_key is not None and (
            key is None or not hmac.compare_digest(key.encode(), self.api_key.encode())
        ):
            return self._forbid(connection, path)
        return None

    def _forbid(self, connection: ServerConnection, path: str) -> Response:
        self.rejected_handshakes.append(RejectedHandshake(time.monotonic(), 403, path))
        self._notify()
        return connection.respond(
            HTTPStatus.FORBIDDEN, "API key not valid. Please pass a valid API key.\n"
        )

    # -------------------------------------------------------------- connection

    async def _handle(self, ws: ServerConnection) -> None:
        """One WebSocket connection, from setup to close."""
        assert ws.request is not None
        path = ws.request.path.partition("?")[0]
        match = _PATH_RE.fullmatch(path)
        rec = ConnectionRecord(
            index=self._next_index,
            api_version=match.group(1) if match else "",
            path=path,
            started_at=time.monotonic(),
            messages=deque(maxlen=self.record_limit),
            sent=deque(maxlen=self.record_limit),
        )
        self._next_index += 1
        self.connections.append(rec)
        conn = _Conn(
            ws,
            rec,
            EndOfUtteranceDetector(
                threshold_rms=self.speech_threshold_rms,
                silence_ms=self.silence_ms,
                min_speech_ms=self.min_speech_ms,
            ),
        )
        self._conns.append(conn)
        if isinstance(ws, _FrameHookConnection):
            ws.on_frame = functools.partial(self._on_frame, conn)
        self._notify()
        try:
            await self._serve(conn)
        except ConnectionClosed:
            pass
        except _ProtocolError as exc:
            rec.error = exc.reason
            await self._close(conn, exc.code, exc.reason)
        except Exception as exc:  # a bug here must not kill the server
            log.exception("fake Live server: connection %d failed", rec.index)
            self.internal_errors.append(f"connection {rec.index}: {exc!r}")
            rec.error = repr(exc)
            await self._close(conn, 1011, _DEFAULT_REASONS[1011])
        finally:
            await self._teardown(conn)

    async def _serve(self, conn: _Conn) -> None:
        ws, rec = conn.ws, conn.record
        try:
            raw = await asyncio.wait_for(ws.recv(), timeout=self.setup_timeout_s)
        except TimeoutError:
            raise _ProtocolError(1008, "setup message not received in time") from None
        msg = self._parse(conn, raw)
        kind = self._kind_of(msg)
        self._record(conn, kind, msg)
        if kind != "setup":
            raise _ProtocolError(1007, "The first message must be setup.")
        setup = next(iter(msg.values()))
        if not isinstance(setup, dict):
            raise _ProtocolError(1007, "Invalid value at 'setup': must be an object")
        rec.setup = setup
        model = _field(setup, "model")
        if not isinstance(model, str) or not model:
            raise _ProtocolError(1007, "setup.model is required")
        rec.model = model
        if self.models is not None and _model_id(model) not in self.models:
            raise _ProtocolError(
                1008,
                f"models/{_model_id(model)} is not found for API version {rec.api_version}, "
                "or is not supported for bidiGenerateContent.",
            )
        resumption = _field(setup, "session_resumption")
        handle: str | None = None
        if resumption is not None:
            if not isinstance(resumption, dict):
                raise _ProtocolError(1007, "Invalid value at 'setup.session_resumption'")
            value = _field(resumption, "handle")
            if value is not None and not isinstance(value, str):
                raise _ProtocolError(1007, "Invalid value at 'setup.session_resumption.handle'")
            handle = value or None
        rec.requested_handle = handle
        if self._reject_setup:
            code, reason = self._reject_setup.popleft()
            raise _ProtocolError(code, reason)

        if self._setup_hang_left > 0:
            self._setup_hang_left -= 1
            rec.setup_hung = True
            self._notify()
            async for raw in ws:  # keep reading (and recording), never answer
                with contextlib.suppress(_ProtocolError):
                    msg = self._parse(conn, raw)
                    self._record(conn, self._kind_of(msg), msg)
            return

        session = await self._session_for(conn, handle)
        conn.session = session
        session.connection_indices.append(rec.index)
        rec.session_id = session.id
        self._configure(conn, setup)

        await self._send(conn, {"setupComplete": {}})
        rec.setup_completed_at = time.monotonic()
        conn.live = True
        self._notify()
        if conn.resumption_enabled:
            await self._send_resumption(conn, resumable=True)
        await self._fire(conn, Trigger.SETUP_COMPLETE)
        self._spawn(conn, self._turn_loop(conn), "turn-loop")
        if self.connection_lifetime_s is not None:
            self._spawn(conn, self._lifetime(conn), "lifetime")

        async for raw in ws:
            await self._on_message(conn, raw)

    async def _session_for(self, conn: _Conn, handle: str | None) -> SessionState:
        if handle is None:
            return self._new_session()
        if self._reject_resume_left > 0:
            self._reject_resume_left -= 1
            doomed = self._handles.get(handle)
            if doomed is not None:
                self._forget_session(doomed)
            raise _ProtocolError(1007, "Invalid session resumption handle.")
        session = self._handles.get(handle)
        if session is None:
            raise _ProtocolError(1007, "Invalid session resumption handle.")
        for other in self._conns:
            if other is not conn and other.session is session and not other.ended:
                if self.reject_resume_while_open:
                    raise _ProtocolError(1011, "Session is still in use by another connection.")
                other.closing = True
                self._spawn(
                    other, self._close(other, 1000, "Session resumed elsewhere"), "takeover"
                )
        conn.record.resumed_handle = handle
        return session

    def _new_session(self) -> SessionState:
        if len(self.sessions) >= 1000:
            in_use = {c.session.id for c in self._conns if c.session is not None}
            for sid in list(self.sessions):
                if sid not in in_use:
                    self._forget_session(self.sessions[sid])
                    break
        session = SessionState(id=secrets.token_hex(8), created_at=time.monotonic())
        self.sessions[session.id] = session
        return session

    def _forget_session(self, session: SessionState) -> None:
        for h in session.handles:
            self._handles.pop(h, None)
        session.handles.clear()
        self.sessions.pop(session.id, None)

    def _configure(self, conn: _Conn, setup: Mapping[str, Any]) -> None:
        """Remember which optional behaviours the setup asked for."""
        conn.want_input_transcription = _field(setup, "input_audio_transcription") is not None
        conn.want_output_transcription = _field(setup, "output_audio_transcription") is not None
        conn.resumption_enabled = _field(setup, "session_resumption") is not None
        ric = _field(setup, "realtime_input_config")
        if isinstance(ric, dict):
            aad = _field(ric, "automatic_activity_detection")
            if isinstance(aad, dict) and _field(aad, "disabled") is True:
                conn.auto_vad = False
            if _field(ric, "activity_handling") == "NO_INTERRUPTION":
                conn.barge_in_allowed = False
        session = conn.session
        assert session is not None
        si = _field(setup, "system_instruction")
        if si is not None:
            session.system_instruction = si
        tools = _field(setup, "tools")
        if tools is not None:
            session.tools = tools

    async def _teardown(self, conn: _Conn) -> None:
        """Cancel the connection's tasks and record how it ended."""
        conn.closing = True
        conn.ended = True
        conn.live = False
        current = asyncio.current_task()
        tasks = [t for t in conn.tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_TASK_CANCEL_TIMEOUT)
        ws, rec = conn.ws, conn.record
        if not rec.aborted and not conn.quiet:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=3.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), timeout=3.0)
        protocol = ws.protocol
        if protocol.close_sent is not None and not conn.quiet:
            rec.close_sent = (protocol.close_sent.code, protocol.close_sent.reason)
        if protocol.close_rcvd is not None:
            rec.close_received = (protocol.close_rcvd.code, protocol.close_rcvd.reason)
        rec.ended_at = time.monotonic()
        with contextlib.suppress(ValueError):
            self._conns.remove(conn)
        self._notify()

    def _spawn(self, conn: _Conn, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Start a task owned by ``conn``; it is cancelled when the connection ends."""
        if conn.ended:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=f"live-{conn.index}-{name}")
        conn.tasks.add(task)
        task.add_done_callback(functools.partial(self._task_done, conn))

    def _task_done(self, conn: _Conn, task: asyncio.Task[None]) -> None:
        conn.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, ConnectionClosed):
            return
        log.error("fake Live server: task %s failed", task.get_name(), exc_info=exc)
        self.internal_errors.append(f"{task.get_name()}: {exc!r}")
        self._notify()
        if not conn.ended and not conn.closing:
            conn.closing = True
            self._spawn(conn, self._close(conn, 1011, _DEFAULT_REASONS[1011]), "error-close")

    async def _close(self, conn: _Conn, code: int, reason: str) -> None:
        """Close with a code and reason (clipped to the 123-byte limit)."""
        conn.closing = True
        if conn.quiet or conn.record.aborted:
            return
        try:
            await asyncio.wait_for(conn.ws.close(code, _clip_reason(reason)), timeout=5.0)
        except TimeoutError:
            conn.ws.transport.abort()
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ sending

    async def _send(self, conn: _Conn, message: JsonDict) -> None:
        """Send one server message as camelCase JSON in a binary frame."""
        if conn.quiet or conn.ended or conn.closing or conn.ws.transport.is_closing():
            conn.record.dropped_sends += 1
            return
        kind = next(iter(message))
        conn.record.sent.append(SentMessage(time.monotonic(), kind, message))
        await conn.ws.send(json.dumps(message, separators=(",", ":")).encode("utf-8"))

    async def _send_resumption(self, conn: _Conn, *, resumable: bool) -> None:
        """Send sessionResumptionUpdate (a fresh handle only when resumable)."""
        if not conn.resumption_enabled or conn.session is None:
            return
        if not resumable:
            await self._send(conn, {"sessionResumptionUpdate": {"resumable": False}})
            return
        session = conn.session
        handle = secrets.token_urlsafe(24)
        if len(session.handles) == session.handles.maxlen:
            self._handles.pop(session.handles[0], None)
        session.handles.append(handle)
        self._handles[handle] = session
        await self._send(
            conn, {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
        )

    # ---------------------------------------------------------------- receiving

    def _parse(self, conn: _Conn, raw: str | bytes) -> JsonDict:
        try:
            msg = json.loads(raw)
        except ValueError:
            text = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
            self._record(conn, "invalid", {"_raw": text[:200]})
            raise _ProtocolError(1007, "Invalid JSON payload received.") from None
        if not isinstance(msg, dict):
            self._record(conn, "invalid", {"_raw": msg})
            raise _ProtocolError(1007, "Invalid JSON payload received: expected an object.")
        return msg

    def _kind_of(self, msg: JsonDict) -> str:
        if len(msg) != 1:
            raise _ProtocolError(
                1007,
                "Invalid JSON payload received: exactly one of setup, clientContent, "
                "realtimeInput, toolResponse, contextUpdate is required.",
            )
        key = next(iter(msg))
        kind = _KINDS.get(key)
        if kind is None:
            raise _ProtocolError(
                1007, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            )
        return kind

    def _record(self, conn: _Conn, kind: str, msg: JsonDict) -> None:
        conn.record.messages.append(ReceivedMessage(time.monotonic(), kind, msg))
        self._notify()

    async def _on_message(self, conn: _Conn, raw: str | bytes) -> None:
        msg = self._parse(conn, raw)
        try:
            kind = self._kind_of(msg)
        except _ProtocolError:
            self._record(conn, "invalid", msg)
            raise
        self._record(conn, kind, msg)
        if conn.closing or conn.quiet:
            return
        body = next(iter(msg.values()))
        if not isinstance(body, dict):
            raise _ProtocolError(1007, f"Invalid value at '{kind}': must be an object")
        if kind == "setup":
            raise _ProtocolError(1007, "setup must be the first and only setup message.")
        if kind == "realtime_input":
            await self._on_realtime(conn, body)
        elif kind == "client_content":
            await self._on_client_content(conn, body)
        elif kind == "tool_response":
            await self._on_tool_response(conn, body)
        elif kind == "context_update":
            _check_fields(body, _CONTEXT_UPDATE_FIELDS, "context_update")
            assert conn.session is not None
            if _field(body, "system_instruction") is not None:
                conn.session.system_instruction = _field(body, "system_instruction")
            if _field(body, "tools") is not None:
                conn.session.tools = _field(body, "tools")
        if not conn.closing:
            await self._fire(conn, Trigger.CLIENT_MESSAGE)

    def _blob(self, obj: Any, where: str) -> tuple[str, bytes]:
        if not isinstance(obj, dict):
            raise _ProtocolError(1007, f"Invalid value at '{where}': must be a Blob object")
        _check_fields(obj, _BLOB_FIELDS, where)
        mime = _field(obj, "mime_type")
        data = _field(obj, "data")
        if not isinstance(mime, str) or not mime:
            raise _ProtocolError(1007, f"{where}.mime_type is required")
        if not isinstance(data, str):
            raise _ProtocolError(1007, f"{where}.data is required (base64)")
        try:
            return mime, decode_base64(data)
        except (binascii.Error, ValueError):
            raise _ProtocolError(
                1007, f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
            ) from None

    @staticmethod
    def _audio_rate(mime: str, where: str) -> int:
        m = _AUDIO_MIME_RE.fullmatch(mime)
        if m is None:
            raise _ProtocolError(1007, f"Unsupported mime type at '{where}': {mime[:40]}")
        rate = int(m.group(1)) if m.group(1) else 16_000
        if not 8_000 <= rate <= 48_000:
            raise _ProtocolError(1007, f"Unsupported sample rate at '{where}': {rate}")
        return rate

    async def _on_realtime(self, conn: _Conn, body: JsonDict) -> None:
        _check_fields(body, _REALTIME_FIELDS, "realtime_input")
        media: list[tuple[str, bytes, str]] = []
        chunks = _field(body, "media_chunks")
        if chunks is not None:
            if not isinstance(chunks, list):
                raise _ProtocolError(1007, "Invalid value at 'realtime_input.media_chunks'")
            for i, item in enumerate(chunks):
                where = f"realtime_input.media_chunks[{i}]"
                mime, data = self._blob(item, where)
                media.append((mime, data, where))
        for name in ("audio", "video"):
            value = _field(body, name)
            if value is not None:
                mime, data = self._blob(value, f"realtime_input.{name}")
                if name == "audio" and not mime.lower().startswith("audio/"):
                    raise _ProtocolError(1007, f"realtime_input.audio: not audio: {mime[:40]}")
                if name == "video" and not mime.lower().startswith("image/"):
                    raise _ProtocolError(1007, f"realtime_input.video: not an image: {mime[:40]}")
                media.append((mime, data, f"realtime_input.{name}"))
        for mime, data, where in media:
            if mime.lower().startswith("audio/"):
                await self._on_audio(conn, data, self._audio_rate(mime, where))
            elif mime.lower().startswith("image/"):
                await self._on_video(conn, data, mime)
            else:
                raise _ProtocolError(1007, f"Unsupported mime type at '{where}': {mime[:40]}")
            if conn.closing:
                return
        text = _field(body, "text")
        if text is not None:
            if not isinstance(text, str):
                raise _ProtocolError(1007, "Invalid value at 'realtime_input.text'")
            self._speech_started(conn)
            await self._end_utterance(conn, "text", text)
        if _field(body, "activity_start") is not None:
            conn.in_activity = True
            self._speech_started(conn)
        if _field(body, "activity_end") is not None and conn.in_activity:
            conn.in_activity = False
            conn.detector.force_end()
            await self._end_utterance(conn, "activity_end")
        stream_end = _field(body, "audio_stream_end")
        if stream_end is not None and not isinstance(stream_end, bool):
            raise _ProtocolError(1007, "Invalid value at 'realtime_input.audio_stream_end'")
        if stream_end and conn.detector.force_end() and conn.auto_vad:
            await self._end_utterance(conn, "audio_stream_end")

    async def _on_audio(self, conn: _Conn, pcm: bytes, rate: int) -> None:
        now = time.monotonic()
        self.audio_chunks.append(AudioChunk(now, pcm, conn.index, rate))
        conn.record.audio_bytes += len(pcm)
        if conn.session is not None:
            conn.session.heard_audio_s += len(pcm) / (2.0 * rate)
        if conn.auto_vad:
            for event in conn.detector.feed(pcm, rate):
                if event is VadEvent.SPEECH_START:
                    self._speech_started(conn)
                else:
                    await self._end_utterance(conn, "silence")
        await self._fire(conn, Trigger.AUDIO_CHUNK)

    async def _on_video(self, conn: _Conn, data: bytes, mime: str) -> None:
        self.video_frames.append(VideoFrame(time.monotonic(), data, conn.index, mime))
        if conn.session is not None:
            conn.session.video_frames += 1
        await self._fire(conn, Trigger.VIDEO_FRAME)

    async def _on_client_content(self, conn: _Conn, body: JsonDict) -> None:
        _check_fields(body, _CLIENT_CONTENT_FIELDS, "client_content")
        turns = _field(body, "turns")
        texts: list[str] = []
        if turns is not None:
            if not isinstance(turns, list):
                raise _ProtocolError(1007, "Invalid value at 'client_content.turns'")
            for i, content in enumerate(turns):
                parts = _field(content, "parts") if isinstance(content, dict) else None
                if not isinstance(parts, list):
                    raise _ProtocolError(1007, f"Invalid value at 'client_content.turns[{i}]'")
                texts.extend(
                    p["text"] for p in parts
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
        complete = _field(body, "turn_complete")
        if complete is not None and not isinstance(complete, bool):
            raise _ProtocolError(1007, "Invalid value at 'client_content.turn_complete'")
        if conn.session is not None:
            conn.session.text_chars += sum(len(t) for t in texts)
        if conn.replying and conn.barge_in_allowed:
            conn.barge_in.set()
        if complete:
            await self._end_utterance(conn, "client_content", " ".join(texts))

    async def _on_tool_response(self, conn: _Conn, body: JsonDict) -> None:
        _check_fields(body, _TOOL_RESPONSE_FIELDS, "tool_response")
        responses = _field(body, "function_responses")
        if not isinstance(responses, list):
            raise _ProtocolError(1007, "Invalid value at 'tool_response.function_responses'")
        session = conn.session
        assert session is not None
        awaiting = session.awaiting
        consumed = False
        now = time.monotonic()
        for i, fr in enumerate(responses):
            if not isinstance(fr, dict):
                raise _ProtocolError(
                    1007, f"Invalid value at 'tool_response.function_responses[{i}]'"
                )
            _check_fields(fr, _FUNCTION_RESPONSE_FIELDS, f"tool_response.function_responses[{i}]")
            call_id, name = _field(fr, "id"), _field(fr, "name")
            scheduling = _field(fr, "scheduling")
            record = ToolResponseRecord(
                now, conn.index,
                call_id if isinstance(call_id, str) else None,
                name if isinstance(name, str) else None,
                _field(fr, "response"),
                scheduling if isinstance(scheduling, str) else None,
            )
            call = awaiting.calls.get(call_id) if awaiting and isinstance(call_id, str) else None
            if call is None or call.state != "pending":
                # Ignored: the service most plausibly drops an id it no longer waits for.
                self.unexpected_tool_responses.append(record)
                if call_id in session.answered_calls:
                    self.duplicate_tool_responses.append(record)
                continue
            call.state = "answered"
            session.answered_calls.append(call.id)
            call.response = record.response
            call.scheduling = record.scheduling
            self.tool_responses.append(record)
            session.transcript.append(("tool", f"{call.name} -> {json.dumps(record.response)}"))
            consumed = True
        self._notify()
        if consumed and awaiting is not None:
            await self._send_resumption(conn, resumable=True)
            awaiting.changed.set()
            await self._fire(conn, Trigger.TOOL_RESPONSE)

    def _speech_started(self, conn: _Conn) -> None:
        if conn.replying and conn.barge_in_allowed:
            conn.barge_in.set()

    async def _end_utterance(self, conn: _Conn, reason: str, text: str = "") -> None:
        now = time.monotonic()
        self.utterances.append(UtteranceRecord(now, conn.index, reason))
        try:
            conn.utterances.put_nowait(_Utterance(now, reason, text))
        except asyncio.QueueFull:
            self.dropped_utterances += 1
        self._notify()
        await self._fire(conn, Trigger.UTTERANCE_END)

    # -------------------------------------------------------------------- turns

    async def _turn_loop(self, conn: _Conn) -> None:
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

    async def _start_turn(self, conn: _Conn, utterance: _Utterance) -> None:
        session = conn.session
        assert session is not None
        index = session.next_turn
        session.next_turn += 1
        turn = self.scenario.turn_at(index)
        record = TurnRecord(
            connection=conn.index,
            turn_index=index,
            scripted=turn is not None,
            utterance_reason=utterance.reason,
            utterance_at=utterance.t,
            started_at=time.monotonic(),
        )
        self.turns.append(record)
        heard = turn.user if turn is not None else utterance.text
        session.transcript.append(("user", heard))
        session.text_chars += len(utterance.text)
        await self._send_resumption(conn, resumable=False)
        if self.response_delay_ms > 0:
            await asyncio.sleep(self.response_delay_ms / 1000.0)
        if conn.want_input_transcription and heard:
            for piece in _WORD_RE.findall(heard):
                await self._send(conn, {"serverContent": {"inputTranscription": {"text": piece}}})
        if turn is None:
            await self._complete(conn, record, None, 0)
            return
        if turn.tool_calls:
            now = time.monotonic()
            calls: dict[str, _PendingCall] = {}
            for spec in turn.tool_calls:
                call_id = f"function-call-{secrets.token_hex(8)}"
                cancel_at = None
                if spec.cancel_after_ms is not None:
                    cancel_at = now + spec.cancel_after_ms / 1000.0
                calls[call_id] = _PendingCall(call_id, spec.name, dict(spec.args), now, cancel_at)
            session.awaiting = _AwaitingTools(turn, record, calls)
            record.tool_call_ids = list(calls)
            await self._send(
                conn,
                {"toolCall": {"functionCalls": [
                    {"id": c.id, "name": c.name, "args": dict(c.args)} for c in calls.values()
                ]}},
            )
            for c in calls.values():
                self.tool_calls.append(ToolCallRecord(now, conn.index, c.id, c.name, c.args))
            self._notify()
            await self._fire(conn, Trigger.TOOL_CALL)
            return
        await self._finish_turn(conn, turn, record, None)

    async def _await_tools(self, conn: _Conn, awaiting: _AwaitingTools) -> bool:
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
                now = time.monotonic()
                due = [c for c in awaiting.unresolved()
                       if c.cancel_at is not None and c.cancel_at <= now]
                if due:
                    for c in due:
                        c.state = "cancelled"
                    ids = tuple(c.id for c in due)
                    awaiting.record.cancelled = True
                    await self._send(conn, {"toolCallCancellation": {"ids": list(ids)}})
                    self.tool_cancellations.append(ToolCancellationRecord(now, conn.index, ids))
                    self._notify()
        return not (conn.ended or conn.closing)

    async def _finish_turn(
        self, conn: _Conn, turn: Turn, record: TurnRecord, awaiting: _AwaitingTools | None
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
            await self._send_resumption(conn, resumable=False)
        pcm = turn.audio.render() if text is not None else b""
        completed = True
        if text is not None:
            completed = await self._stream_reply(conn, record, text, pcm)
        await self._complete(conn, record, turn, len(pcm), completed=completed, text=text or "")

    async def _stream_reply(self, conn: _Conn, record: TurnRecord, text: str, pcm: bytes) -> bool:
        """Send transcript pieces and audio chunks; False if barged in."""
        chunk_bytes = 2 * max(1, round(OUTPUT_SAMPLE_RATE * self.chunk_ms / 1000.0))
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
                        await self._send(
                            conn, {"serverContent": {"outputTranscription": {"text": piece}}}
                        )
                if i < len(chunks):
                    chunk = chunks[i]
                    await self._send(conn, {"serverContent": {"modelTurn": {"parts": [
                        {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_SAMPLE_RATE}",
                                        "data": base64.b64encode(chunk).decode("ascii")}}
                    ]}}})
                    if record.first_audio_at is None:
                        record.first_audio_at = time.monotonic()
                    record.audio_bytes_sent += len(chunk)
                    sent_s += len(chunk) / (2.0 * OUTPUT_SAMPLE_RATE)
                    await self._fire(conn, Trigger.REPLY_CHUNK)
                if self.pace_audio and i < len(chunks):
                    delay = start + sent_s - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.barge_in.wait(), timeout=max(0.0, delay))
                else:
                    await asyncio.sleep(0)
            if conn.barge_in.is_set() and self.pace_audio:
                await self._interrupted(conn, record)
                return False
            return True
        finally:
            conn.replying = False
            record.reply_text = "".join(spoken)
            if session is not None:
                session.transcript.append(("model", record.reply_text))

    async def _interrupted(self, conn: _Conn, record: TurnRecord) -> None:
        record.interrupted = True
        await self._send(conn, {"serverContent": {"interrupted": True}})

    async def _complete(
        self,
        conn: _Conn,
        record: TurnRecord,
        turn: Turn | None,
        audio_bytes: int,
        *,
        completed: bool = True,
        text: str = "",
    ) -> None:
        """generationComplete, usageMetadata, turnComplete, then a fresh handle."""
        if completed:
            await self._send(conn, {"serverContent": {"generationComplete": True}})
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
        await self._send(conn, {"usageMetadata": {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
        }})
        await self._send(conn, {"serverContent": {"turnComplete": True}})
        record.turn_complete_at = time.monotonic()
        record.completed_on = conn.index
        self._notify()
        await self._fire(conn, Trigger.TURN_COMPLETE)
        await self._send_resumption(conn, resumable=True)


# ------------------------------------------------------------------ standalone


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent sim live",
        description="Serve a fake Gemini Live API over TLS on loopback. Prints one JSON "
        "line with base_url and ca_file, then serves until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_LIVE_API_KEY", "fake-key"),
        help="accepted API key (default: $FAKE_LIVE_API_KEY or 'fake-key')",
    )
    parser.add_argument("--scenario", metavar="FILE", help="TOML or JSON script")
    parser.add_argument("--cert-dir", metavar="DIR", help="where to write ca.pem")
    parser.add_argument("--pace", action="store_true", help="stream reply audio in real time")
    parser.add_argument("--silence-ms", type=float, default=600.0, help="end-of-utterance silence")
    parser.add_argument(
        "--models", metavar="LIST", help="comma-separated accepted models (default: any)"
    )
    return parser


async def _serve_until_signalled(args: argparse.Namespace, scenario: Scenario) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        server = FakeLiveServer(
            api_key=args.api_key,
            scenario=scenario,
            models=[m.strip() for m in args.models.split(",") if m.strip()]
            if args.models else None,
            host=args.host,
            port=args.port,
            cert_dir=args.cert_dir,
            pace_audio=args.pace,
            silence_ms=args.silence_ms,
            record_limit=2_000,
        )
        try:
            async with server:
                line = {"base_url": server.base_url, "ca_file": str(server.ca_pem_path)}
                print(json.dumps(line), flush=True)
                await stop.wait()
        except OSError as exc:
            print(f"edge-agent sim live: cannot listen on {args.host}:{args.port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the fake Live server standalone (``edge-agent sim live``)."""
    args = _build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print("edge-agent sim live: --port: must be between 0 and 65535", file=sys.stderr)
        return 2
    if args.silence_ms <= 0:
        print("edge-agent sim live: --silence-ms: must be positive", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    except ScenarioError as exc:
        print(f"edge-agent sim live: --scenario: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve_until_signalled(args, scenario))


if __name__ == "__main__":
    raise SystemExit(main())


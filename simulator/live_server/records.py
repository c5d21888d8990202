"""What the fake Live server saw and did, kept for tests and benchmarks to read.

Every list is bounded (oldest entries drop). Times are ``time.monotonic()``,
system-wide on Linux, so another process can compare them with its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

JsonDict = dict[str, Any]


class ReceivedAudio(NamedTuple):
    """One received audio chunk: (recv monotonic time, PCM bytes, connection index)."""

    t: float
    pcm: bytes
    connection: int
    sample_rate: int = 16_000


class ReceivedVideo(NamedTuple):
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
    stopped_reading: bool = False
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


class Recordings:
    """The fake's memory of everything, and a way to wait until it holds something."""

    def __init__(self, record_limit: int) -> None:
        self.record_limit = record_limit
        self.connections: deque[ConnectionRecord] = deque(maxlen=record_limit)
        self.audio_chunks: deque[ReceivedAudio] = deque(maxlen=record_limit)
        self.video_frames: deque[ReceivedVideo] = deque(maxlen=record_limit)
        self.tool_calls: deque[ToolCallRecord] = deque(maxlen=record_limit)
        self.tool_responses: deque[ToolResponseRecord] = deque(maxlen=record_limit)
        self.unexpected_tool_responses: deque[ToolResponseRecord] = deque(maxlen=record_limit)
        self.duplicate_tool_responses: deque[ToolResponseRecord] = deque(maxlen=record_limit)
        self.tool_cancellations: deque[ToolCancellationRecord] = deque(maxlen=record_limit)
        self.utterances: deque[UtteranceRecord] = deque(maxlen=record_limit)
        self.turns: deque[TurnRecord] = deque(maxlen=record_limit)
        self.rejected_handshakes: deque[RejectedHandshake] = deque(maxlen=record_limit)
        self.internal_errors: deque[str] = deque(maxlen=1000)
        self.dropped_utterances = 0
        self._changed = asyncio.Event()

    def new_connection(
        self, index: int, api_version: str, path: str, at: float
    ) -> ConnectionRecord:
        """Start the record of a connection (its message lists bounded like the rest)."""
        rec = ConnectionRecord(
            index=index,
            api_version=api_version,
            path=path,
            started_at=at,
            messages=deque(maxlen=self.record_limit),
            sent=deque(maxlen=self.record_limit),
        )
        self.connections.append(rec)
        return rec

    def notify(self) -> None:
        """Something was recorded: wake whoever waits in wait_until."""
        self._changed.set()

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

"""One WebSocket connection to the fake: its socket, its session, its tasks and flags.

Sending, closing and spawning go through the connection, so nothing more is
sent once it is closing, gone quiet or ended, and its tasks end with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame

from simulator.live_server import protocol
from simulator.live_server.protocol import JsonDict
from simulator.live_server.records import (
    ConnectionRecord,
    ReceivedMessage,
    Recordings,
    SentMessage,
)
from simulator.live_server.sessions import SessionBook, SessionState
from simulator.live_server.vad import EndOfUtteranceDetector

log = logging.getLogger("simulator.live_server")  # the fake's parts log under its name

_UTTERANCE_QUEUE = 32


class FrameHookConnection(ServerConnection):
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
class Utterance:
    """The user finished speaking (or typing): a turn is due."""

    t: float
    reason: str
    text: str = ""


class LiveConnection:
    """Runtime side of one connection: socket, session, tasks, flags."""

    def __init__(
        self,
        ws: ServerConnection,
        record: ConnectionRecord,
        detector: EndOfUtteranceDetector,
        recordings: Recordings,
        book: SessionBook,
    ) -> None:
        self.ws = ws
        self.record = record
        self.detector = detector
        self._recordings = recordings
        self._book = book
        self.session: SessionState | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.utterances: asyncio.Queue[Utterance] = asyncio.Queue(maxsize=_UTTERANCE_QUEUE)
        self.barge_in = asyncio.Event()
        self.replying = False
        self.closing = False
        self.quiet = False
        self.deaf = False  # STOP_READING: sends, but reads nothing more
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
        """The connection's number, counted from 0 since the server started."""
        return self.record.index

    def finished(self) -> bool:
        """True once nothing more should be sent on this connection."""
        return self.ended or self.closing

    # -- receiving -------------------------------------------------------------------
    def read(self, raw: str | bytes) -> JsonDict:
        """A client message as JSON; one that is not is recorded as invalid, then refused."""
        try:
            return protocol.parse(raw)
        except protocol.ProtocolError as exc:
            self.record_received("invalid", exc.invalid)
            raise

    def record_received(self, kind: str, msg: Any) -> None:
        """Keep a client message in the connection's record."""
        self.record.messages.append(ReceivedMessage(time.monotonic(), kind, msg))
        self._recordings.notify()

    # -- sending -------------------------------------------------------------------
    async def send(self, message: JsonDict) -> None:
        """Send one server message as camelCase JSON in a binary frame."""
        if self.quiet or self.ended or self.closing or self.ws.transport.is_closing():
            self.record.dropped_sends += 1
            return
        kind = next(iter(message))
        self.record.sent.append(SentMessage(time.monotonic(), kind, message))
        await self.ws.send(json.dumps(message, separators=(",", ":")).encode("utf-8"))

    async def send_resumption(self, *, resumable: bool) -> None:
        """Send sessionResumptionUpdate (a fresh handle only when resumable)."""
        if not self.resumption_enabled or self.session is None:
            return
        if not resumable:
            await self.send({"sessionResumptionUpdate": {"resumable": False}})
            return
        handle = self._book.issue_handle(self.session)
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    async def close(self, code: int, reason: str) -> None:
        """Close with a code and reason (clipped to the 123-byte limit)."""
        self.closing = True
        if self.quiet or self.record.aborted:
            return
        try:
            await asyncio.wait_for(self.ws.close(code, protocol.clip_reason(reason)), timeout=5.0)
        except TimeoutError:
            self.ws.transport.abort()
        except ConnectionClosed:
            pass

    # -- tasks -----------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Start a task owned by this connection; it is cancelled when the connection ends."""
        if self.ended:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=f"live-{self.index}-{name}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, ConnectionClosed):
            return
        log.error("fake Live server: task %s failed", task.get_name(), exc_info=exc)
        self._recordings.internal_errors.append(f"{task.get_name()}: {exc!r}")
        self._recordings.notify()
        if not self.ended and not self.closing:
            self.closing = True
            self.spawn(self.close(1011, protocol.DEFAULT_REASONS[1011]), "error-close")

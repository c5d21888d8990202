"""Faults the fake Live server can produce, and when: now, on a scripted point, or next.

A fault armed on a trigger fires at the Nth such point of a connection, so a
test can cut a socket exactly where it wants (as a tool answer arrives, after
the third reply chunk) instead of racing a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode

from simulator.live_server import protocol
from simulator.live_server.connection import LiveConnection
from simulator.live_server.records import Recordings


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
    STOP_READING = "stop_reading"
    """Stop reading the client while still sending: a server wedged on its read
    side. Its messages and pings stay in the TCP buffers (which back up), so no
    pong comes back and nothing more is recorded or acted on; the turn under way
    goes on, and an outputTranscription piece goes out every ``interval``
    seconds, so the client keeps hearing from it. With ``drop_after`` the server
    finally aborts the TCP connection that many seconds later, as a wedged
    frontend eventually does; otherwise it ends when the client gives up."""
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


CONNECTION_FAULTS = frozenset(
    {Fault.GOAWAY, Fault.ABORT, Fault.CLOSE, Fault.GO_QUIET, Fault.STOP_READING}
)
FRAME_FAULTS = frozenset({Fault.ABORT, Fault.CLOSE, Fault.GO_QUIET})


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


class ArmedFault:
    """A fault waiting for its trigger; await :meth:`wait` to know it fired."""

    def __init__(
        self, fault: Fault, trigger: Trigger, count: int, spec: FaultSpec,
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

    def hit(self, conn_index: int) -> bool:
        """Count one trigger point on this connection; True when the fault is due."""
        if self.connection is not None and conn_index != self.connection:
            return False
        n = self._counts.get(conn_index, 0) + 1
        self._counts[conn_index] = n
        return n >= self.count

    def mark_fired(self, conn_index: int) -> None:
        """The server applied the fault to this connection."""
        self.fired_at = time.monotonic()
        self.fired_on = conn_index
        self._fired.set()


@dataclass(frozen=True)
class FaultSpec:
    """A fault with its parameters, ready to apply."""

    fault: Fault
    time_left: float = 2.0
    code: int = 1011
    reason: str | None = None
    interval: float = 0.25  # STOP_READING: how often it still sends something
    drop_after: float | None = None  # STOP_READING: abort the TCP connection after this


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


def stop_reading(conn: LiveConnection) -> None:
    """Read nothing more from this connection: frames, pings and close frames stay in
    the TCP buffers (websockets must not resume reading when its queue drains)."""
    conn.deaf = True
    conn.record.stopped_reading = True
    ws = conn.ws
    ws.recv_messages.resume = lambda: None
    ws.transport.pause_reading()


class FaultBoard:
    """The faults waiting for their moment, and how each one is carried out."""

    def __init__(self, recordings: Recordings) -> None:
        self._recordings = recordings
        self._armed: list[ArmedFault] = []
        self._reject_key_left = 0
        self._reject_resume_left = 0
        self._setup_hang_left = 0
        self._reject_setup: deque[tuple[int, str]] = deque()

    # -- the next N connections ------------------------------------------------------
    def queue(self, fault: Fault, count: int, code: int, reason: str | None) -> bool:
        """Queue a fault for the next ``count`` connections; False if it is not that kind."""
        if fault is Fault.REJECT_KEY:
            self._reject_key_left += count
        elif fault is Fault.REJECT_RESUME:
            self._reject_resume_left += count
        elif fault is Fault.SETUP_HANG:
            self._setup_hang_left += count
        elif fault is Fault.REJECT_SETUP:
            text = reason if reason is not None else protocol.DEFAULT_REASONS.get(code, "")
            self._reject_setup.extend([(code, text)] * count)
        else:
            return False
        return True

    def take_reject_key(self) -> bool:
        """True if this handshake is to be refused with 403 (uses one up)."""
        if self._reject_key_left > 0:
            self._reject_key_left -= 1
            return True
        return False

    def take_reject_resume(self) -> bool:
        """True if this resume is to be refused (uses one up)."""
        if self._reject_resume_left > 0:
            self._reject_resume_left -= 1
            return True
        return False

    def take_setup_hang(self) -> bool:
        """True if this setup is never to be answered (uses one up)."""
        if self._setup_hang_left > 0:
            self._setup_hang_left -= 1
            return True
        return False

    def take_reject_setup(self) -> tuple[int, str] | None:
        """The close code and reason to refuse this setup with, if one is queued."""
        return self._reject_setup.popleft() if self._reject_setup else None

    # -- armed on a trigger ----------------------------------------------------------
    def arm(
        self, fault: Fault, trigger: Trigger, n: int, spec: FaultSpec, connection: int | None
    ) -> ArmedFault:
        """Arm a connection fault to fire at the Nth ``trigger`` event (one-shot)."""
        if fault not in CONNECTION_FAULTS:
            raise ValueError(f"{fault} is not a connection fault; use inject(count=...)")
        if trigger is Trigger.TOOL_RESPONSE_UNREAD and fault not in FRAME_FAULTS:
            raise ValueError(f"{fault} cannot hit a frame as it is parsed")
        if n < 1:
            raise ValueError("n must be >= 1")
        armed = ArmedFault(fault, trigger, n, spec, connection)
        self._armed.append(armed)
        return armed

    def disarm_all(self) -> None:
        """Forget every armed fault and next-N counter."""
        self._armed.clear()
        self._reject_key_left = self._reject_resume_left = self._setup_hang_left = 0
        self._reject_setup.clear()

    async def fire(self, conn: LiveConnection, trigger: Trigger) -> None:
        """Count a scripted point and apply any armed fault that is now due."""
        for armed in list(self._armed):
            if armed.trigger is trigger and armed.hit(conn.index):
                self._armed.remove(armed)
                armed.mark_fired(conn.index)
                await self.apply(conn, armed.spec)

    def on_frame(self, conn: LiveConnection, frame: Frame) -> None:
        """Fire TOOL_RESPONSE_UNREAD on a whole toolResponse frame of a live connection."""
        if not any(a.trigger is Trigger.TOOL_RESPONSE_UNREAD for a in self._armed):
            return
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY) or not frame.fin:
            return
        if not conn.live or conn.finished() or conn.quiet:
            return
        if not protocol.is_tool_response(bytes(frame.data)):
            return
        for armed in list(self._armed):
            if armed.trigger is Trigger.TOOL_RESPONSE_UNREAD and armed.hit(conn.index):
                self._armed.remove(armed)
                armed.mark_fired(conn.index)
                self.cut(conn, armed.spec, at_frame=True)
                return

    # -- carrying them out -----------------------------------------------------------
    async def apply(self, conn: LiveConnection, spec: FaultSpec) -> None:
        """Carry out one connection fault (also used by armed triggers)."""
        if spec.fault is not Fault.GOAWAY:
            self.cut(conn, spec)
            return
        rec = conn.record
        rec.faults.append((time.monotonic(), spec.fault.value))
        self._recordings.notify()
        if conn.ended or conn.quiet:
            return
        await conn.send({"goAway": {"timeLeft": protocol.duration(spec.time_left)}})
        rec.goaway_sent_at = time.monotonic()
        conn.spawn(self._goaway_deadline(conn, spec.time_left), "goaway-deadline")

    def cut(self, conn: LiveConnection, spec: FaultSpec, *, at_frame: bool = False) -> None:
        """ABORT, CLOSE or GO_QUIET, without awaiting: a frame hook applies them mid-parse."""
        rec = conn.record
        rec.faults.append((time.monotonic(), spec.fault.value))
        self._recordings.notify()
        if conn.ended or conn.quiet:
            return
        if spec.fault is Fault.ABORT:
            conn.closing = True
            rec.aborted = True
            conn.ws.transport.abort()
        elif spec.fault is Fault.CLOSE:
            reason = spec.reason
            if reason is None:
                reason = protocol.DEFAULT_REASONS.get(spec.code, "")
            conn.closing = True
            if at_frame:
                # The close frame goes out ahead of the pong to any ping behind this frame.
                with contextlib.suppress(InvalidState):
                    conn.ws.protocol.send_close(spec.code, protocol.clip_reason(reason))
            else:
                conn.spawn(conn.close(spec.code, reason), "fault-close")
        elif spec.fault is Fault.STOP_READING:
            stop_reading(conn)
            conn.spawn(self._still_sending(conn, spec), "deaf-chatter")
        elif spec.fault is Fault.GO_QUIET:
            conn.quiet = True
            rec.quiet = True
            conn.ws.transport = _MutedTransport(conn.ws.transport)
            current = asyncio.current_task()
            for task in list(conn.tasks):
                if task is not current:
                    task.cancel()

    async def _still_sending(self, conn: LiveConnection, spec: FaultSpec) -> None:
        """STOP_READING: keep talking to a client it no longer reads, then maybe drop it.

        The writes are also how the server learns the client went away: a reset
        socket fails the next write (reading, which would notice, is paused).
        """
        started = time.monotonic()
        n = 0
        while not conn.finished():
            if spec.drop_after is not None and time.monotonic() - started >= spec.drop_after:
                conn.closing = True
                conn.record.aborted = True
                conn.ws.transport.abort()
                return
            await conn.send({"serverContent": {"outputTranscription": {"text": f" ...{n}"}}})
            n += 1
            await asyncio.sleep(spec.interval)

    async def _goaway_deadline(self, conn: LiveConnection, time_left: float) -> None:
        await asyncio.sleep(max(time_left, 0.0))
        if not conn.ended and not conn.closing:
            await conn.close(1011, "Deadline expired")

    async def lifetime(self, conn: LiveConnection, lifetime_s: float, lead_s: float) -> None:
        """End a connection like the service does: goAway ``lead_s`` before its lifetime."""
        lead = min(max(lead_s, 0.0), lifetime_s)
        await asyncio.sleep(lifetime_s - lead)
        await self.apply(conn, FaultSpec(Fault.GOAWAY, time_left=lead))

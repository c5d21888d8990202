"""The link's send side: what goes up next, in what size, and the pings that confirm it.

One loop per connection drains the uplink buffer by urgency: a changed tool
set, tool answers, the newest video frame, audio in order, the end of an audio
stream. Pings sent behind answers and audio confirm what the server has read,
so only what it never read is sent again after a reconnect.

While that loop is parked with nothing else waiting, a full audio message is
written from the caller's own turn of the event loop instead (one wake-up per
message, not two: on a Pi the wake-ups are most of the uplink's CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import websockets
from google import genai
from google.genai import types

from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.calls import ToolResponse
from daemon.live.failures import brief, close_reason
from daemon.live.resumption import Resumption
from daemon.live.socket_door import LiveSocket
from daemon.live.socket_life import SocketLife
from daemon.live.tool_offer import ToolOffer
from daemon.live.uplink import PendingAudio, UplinkBuffer
from daemon.media.types import VideoFrame
from daemon.ops.metrics import Metrics

log = logging.getLogger("daemon.live.link")  # the link's parts log under its name

UNENCODABLE_ANSWER = {"error": "internal error (the answer could not be encoded)"}
REPLAY_MESSAGE_SECONDS = 0.2


class Sender:
    """Sends what waits in the uplink buffer, one connection at a time."""

    def __init__(
        self,
        settings: LiveSettings,
        uplink: UplinkBuffer,
        metrics: Metrics,
        resumption: Resumption,
        tools: ToolOffer,
    ) -> None:
        self._s = settings
        self._uplink = uplink
        self._metrics = metrics
        self._resumption = resumption
        self._tools = tools
        self._wake = asyncio.Event()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._tools_dirty = False
        self._ping_outstanding = False
        self._last_ping_at = 0.0
        # The connection the loop serves, and whether it is parked (waiting for a wake):
        # only then may audio go out from the caller's turn, in order.
        self._socket: LiveSocket | None = None
        self._conn: SocketLife | None = None
        self._parked = False
        self._ping_wanted = False
        # Text turns for the model (a background task's result), each with the future
        # its sender awaits: done once the text is on a socket (daemon.tasks).
        self._texts: list[tuple[str, asyncio.Future[None]]] = []

    # -- told by the link --------------------------------------------------------
    def wake(self) -> None:
        """Something is waiting to go up."""
        self._wake.set()

    def audio_queued(self, duration: float) -> bool:
        """A chunk of this duration was queued: send (or wake) now if a message is full.

        True when it went out at once, from the caller's turn of the loop.
        """
        want = self._s.uplink_chunk_ms / 1000
        if self._uplink.pending_seconds >= want - 1e-9:
            if self._send_audio_now(want):
                return True
            self._wake_now()
        elif self._flush_timer is None:
            # Half a message: wake the sender when the rest is due, not now (a
            # wake-up per chunk costs as much CPU as a send).
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._wake.set()
                return False
            self._flush_timer = loop.call_later(want - duration / 2, self._wake_now)
        return False

    def _send_audio_now(self, want: float) -> bool:
        """Write the next audio message here, if the loop is parked with nothing else
        to send and the socket takes it without waiting; False leaves it to the loop."""
        socket, conn = self._socket, self._conn
        if (
            not self._parked
            or self._wake.is_set()  # something else waits: the loop sends in its order
            or socket is None
            or conn is None
            or conn.ended.is_set()
        ):
            return False
        ub = self._uplink
        if ub.audio_chunks == 1:  # the usual case: the chunk just queued is a whole message
            batch = [head] if (head := ub.peek_audio()) is not None else []
            pcm = batch[0].chunk.pcm if batch else b""
        else:
            batch, wait = audio_batch(ub, want)
            if wait > 0:
                return False
            pcm = b"".join(item.chunk.pcm for item in batch)
        if not batch or not socket.send_text_now(wire.audio_message(pcm)):
            return False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._audio_sent(batch, socket, conn):
            self._ping_wanted = True  # the loop pings: one extra wake-up per confirm_interval
            self._wake.set()
        return True

    def _wake_now(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._wake.set()

    def tools_changed(self) -> None:
        """The tool set changed: tell the model now if connected, else at connect."""
        self._tools_dirty = True
        self._wake.set()

    def text_queued(self, text: str) -> asyncio.Future[None]:
        """A user-role text turn to send; the future is done once it is on a socket."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._texts.append((text, done))
        self._wake.set()
        return done

    def tools_in_setup(self) -> None:
        """The next connection's setup carries the current tools."""
        self._tools_dirty = False

    # -- one connection ------------------------------------------------------------
    async def run(
        self, session: genai.live.AsyncSession, socket: LiveSocket | None, conn: SocketLife
    ) -> None:
        """Send until the connection ends; a failed send ends it."""
        self._ping_outstanding = False
        self._ping_wanted = False
        self._wake.set()  # what the last connection left (a requeued answer) goes first
        self._socket, self._conn = socket, conn
        try:
            if self._tools_dirty:
                await self._send_tools(session)
            while True:
                self._parked = True
                try:
                    await self._wake.wait()
                finally:
                    self._parked = False
                self._wake.clear()
                while not conn.ended.is_set():
                    if not await self._send_next(session, socket, conn):
                        break
                if self._ping_wanted and socket is not None and not conn.ended.is_set():
                    self._ping_wanted = False
                    await self.ping(socket, conn)
        except websockets.exceptions.ConnectionClosed as exc:
            conn.finish(close_reason(exc.rcvd.code if exc.rcvd else 1006))
        except OSError as exc:
            log.warning("Live send failed: %s", brief(exc))
            conn.finish("send_error")
        finally:
            self._socket = self._conn = None

    async def _send_next(
        self, session: genai.live.AsyncSession, socket: LiveSocket | None, conn: SocketLife
    ) -> bool:
        """Send the most urgent thing waiting (or wait briefly for more audio); False
        when nothing waits."""
        ub = self._uplink
        if self._tools_dirty:
            await self._send_tools(session)
        elif (resp := ub.peek_response()) is not None:
            if await self._send_response(session, resp):
                if socket is None:  # nothing can confirm it (the door counted and said so)
                    self._resumption.answers_confirmed(ub.confirm_all_responses())
                elif ub.peek_response() is None or self._ping_due():
                    # confirm the answers at once: one ping behind the last of a batch
                    # (a pong per answer made a burst of n answers cost n^2), and at
                    # least one every live.confirm_interval while a long batch goes up
                    await self.ping(socket, conn)
                if ub.peek_response() is not None:
                    # a send that does not block never yields: a burst of thousands
                    # would hold the event loop (playback, pongs) for seconds
                    await asyncio.sleep(0)
        elif self._texts:
            await self._send_text(session)
        elif (frame := ub.take_video()) is not None:
            await self._send_video(session, frame)
        elif ub.peek_audio() is not None:
            await self._send_audio(session, socket, conn)
        elif ub.stream_end_pending:
            await session.send_realtime_input(audio_stream_end=True)
            ub.stream_end_pending = False
        else:
            return False
        return True

    async def _send_tools(self, session: genai.live.AsyncSession) -> None:
        self._tools_dirty = False
        tools: list[Any] = list(wire.function_tools(self._tools.offered()))
        await session.send_context_update(tools=tools)

    async def _send_response(self, session: genai.live.AsyncSession, resp: ToolResponse) -> bool:
        """Send one answer; True once it is on the socket (kept until a pong confirms it).

        One the SDK cannot encode is replaced by an error answer: the SDK encodes
        before it sends, so such an answer never reached the socket; left at the
        head of the queue it would fail every connection from then on, and the
        call must still get an answer.
        """
        try:
            await session.send_tool_response(function_responses=[wire.function_response(resp)])
        except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            if resp.response == UNENCODABLE_ANSWER:
                self._metrics.tool_responses_dropped.labels("unsendable").inc()
                log.error("tool response %s (%s) cannot be sent at all (%s); dropped",
                          resp.id, resp.name, brief(exc))
                self._uplink.pop_response(resp)
                self._resumption.answer_abandoned(resp)
            else:
                self._metrics.tool_responses_dropped.labels("unserialisable").inc()
                log.error("tool response %s (%s) cannot be encoded (%s); answering with an error",
                          resp.id, resp.name, brief(exc))
                self._uplink.replace_response(
                    ToolResponse(resp.id, resp.name, dict(UNENCODABLE_ANSWER), resp.scheduling)
                )
            return False
        self._uplink.response_sent(resp)
        self._resumption.answer_sent(resp)
        return True

    async def _send_text(self, session: genai.live.AsyncSession) -> None:
        """The oldest text turn; kept queued (for the next connection) if the send fails."""
        text, done = self._texts[0]
        if not done.cancelled():
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=text)]),
                turn_complete=True)
            if not done.done():
                done.set_result(None)
        self._texts.pop(0)

    async def _send_video(self, session: genai.live.AsyncSession, frame: VideoFrame) -> None:
        try:
            await session.send_realtime_input(
                video=types.Blob(data=frame.jpeg, mime_type="image/jpeg")
            )
        except BaseException:
            self._uplink.restore_video(frame)
            raise
        self._metrics.uplink_video.inc()

    async def _send_audio(
        self, session: genai.live.AsyncSession, socket: LiveSocket | None, conn: SocketLife
    ) -> None:
        """One audio message, or a short wait for the rest of one."""
        ub = self._uplink
        batch, wait = audio_batch(ub, self._s.uplink_chunk_ms / 1000)
        if wait > 0:  # a short message would cost CPU: wait for the rest
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            return
        pcm = b"".join(item.chunk.pcm for item in batch)
        if socket is not None:
            await socket.send_text(wire.audio_message(pcm))
        else:
            await session.send_realtime_input(
                audio=types.Blob(data=pcm, mime_type=wire.AUDIO_MIME)
            )
        if self._audio_sent(batch, socket, conn) and socket is not None:
            await self.ping(socket, conn)

    def _audio_sent(
        self, batch: list[PendingAudio], socket: LiveSocket | None, conn: SocketLife
    ) -> bool:
        """Book an audio message as on the socket; True when a ping should follow it."""
        ub = self._uplink
        ub.mark_sent(batch[-1].seq)
        self._metrics.uplink_audio.inc(len(batch))
        if batch[0].enqueued_at < conn.established_at:  # queued before this socket: a replay
            late = sum(item.enqueued_at < conn.established_at for item in batch)
            self._metrics.uplink_audio_replayed.inc(late)
        self._metrics.replay_buffer_seconds.set(ub.pending_seconds)
        return socket is not None and not self._ping_outstanding and self._ping_due()

    def _ping_due(self) -> bool:
        return time.monotonic() - self._last_ping_at >= self._s.confirm_interval

    # -- confirmation ----------------------------------------------------------------
    async def ping(self, socket: LiveSocket, conn: SocketLife) -> None:
        """Ping behind what was sent; its pong confirms all of it.

        The ping counts as sent (for the stall watch) before it is on the wire: a
        peer that does not read can leave it stuck behind a full TCP buffer, and
        the caller may give up waiting.
        """
        seq = self._uplink.last_sent_seq
        answers = self._uplink.last_response_seq
        sent_at = self._last_ping_at = time.monotonic()
        self._ping_outstanding = True
        conn.ping_sent(sent_at)
        try:
            waiter = await socket.ping()
        except websockets.exceptions.ConnectionClosed:
            return
        except BaseException:
            self._ping_outstanding = False  # no pong will tell: let the next one go out
            raise
        waiter.add_done_callback(lambda f: self._pong(f, conn, seq, answers, sent_at))

    def _pong(
        self, fut: asyncio.Future[float], conn: SocketLife, seq: int, answers: int,
        sent_at: float,
    ) -> None:
        """A pong proves the peer read everything sent before its ping."""
        self._ping_outstanding = False
        if not fut.cancelled() and fut.exception() is None:
            conn.last_alive = time.monotonic()
            conn.pong(sent_at)
            if not conn.ended.is_set():
                self._uplink.confirm(seq)
                self._resumption.answers_confirmed(self._uplink.confirm_responses(answers))


def audio_batch(ub: UplinkBuffer, want: float) -> tuple[list[PendingAudio], float]:
    """The chunks for the next audio message of `want` seconds, or how long to wait for more.

    Each message costs about as much CPU as the audio in it (bench/live_uplink.py),
    so 20 ms frames (BLE) go up in pairs: live.uplink_chunk_ms. The wait is
    bounded: the first chunk never waits longer than that, and a backlog after
    a reconnect goes up in larger messages to catch up quickly. Only waiting
    for a short message's partner adds delay; a backlog takes what is there.
    """
    if ub.pending_seconds > 2 * want:  # a backlog (or large chunks): never wait
        batch = ub.peek_batch(max(want, REPLAY_MESSAGE_SECONDS))
        if sum(item.chunk.duration for item in batch) >= want - 1e-9:
            return batch, 0.0
    batch = ub.peek_batch(want)
    have = sum(item.chunk.duration for item in batch)
    if have >= want - 1e-9 or ub.stream_end_pending:
        return batch, 0.0
    due = batch[0].enqueued_at + want - batch[0].chunk.duration / 2  # half a chunk of slack
    return batch, max(0.0, due - time.monotonic())

"""LiveLink: one conversation with the Gemini Live API that outlives any socket.

A supervisor loop owns the connection. Each connection runs three tasks (send,
receive, watchdog) in a TaskGroup and ends with one reason; the reason decides
what comes next: a planned handover (GoAway), an immediate resume, backoff, a
fresh session (resume refused), or a refusal (bad key, unknown model, rejected
setup). A refusal of the first connection after start is fatal: it stops the
daemon with a clear message instead of a retry storm. Later the same answer
may be passing or caused by what changed since (tools built from MQTT devices),
so the link waits minutes, retries, and says why in `problem`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import websockets
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr

from daemon.backoff import Backoff
from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.events import LinkStatus, LiveEvent
from daemon.live.uplink import PendingAudio, UplinkBuffer
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.logsetup import clip, scrub
from daemon.ops.metrics import Metrics
from daemon.live.calls import ToolResponse

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 512
REMEMBERED_CANCELLATIONS = 512
UNENCODABLE_ANSWER = {"error": "internal error (the answer could not be encoded)"}
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
REPLAY_MESSAGE_SECONDS = 0.2


class LiveFatalError(Exception):
    """Retrying soon cannot help (rejected key, unknown model, wrong endpoint, setup).

    The message is one line naming the setting to fix; `kind` is the metric
    reason. Raised out of LiveLink.run only for the first connection after start.
    """

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class _Connection:
    """One socket's life: why it ended and what the server said on it."""

    established_at: float
    resumed: bool
    reason: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    go_away_deadline: float | None = None
    last_alive: float = 0.0

    def finish(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()


class LiveLink:
    def __init__(
        self,
        settings: LiveSettings,
        api_key: SecretStr,
        metrics: Metrics,
        *,
        declarations: Callable[[], list[dict[str, Any]]] = list,
        fallback_declarations: Callable[[], list[dict[str, Any]]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff | None = None,
        refused_backoff: Backoff | None = None,
    ) -> None:
        """`fallback_declarations`: the tools to offer alone, once, after a fresh
        setup with all of them was rejected (the built-in ones, without the home's)."""
        self._s = settings
        self._metrics = metrics
        self._declarations = declarations
        self._fallback = fallback_declarations
        self._fallback_for: str | None = None  # fingerprint of the full tool set refused
        self._attempt_used_fallback = False
        self._tools_note: str | None = None
        self._ever_connected = False
        self._refused_backoff = refused_backoff or Backoff(
            settings.refused_backoff_initial, settings.refused_backoff_max, immediate_first=False
        )
        self._refusal: str | None = None
        self._retry_at = 0.0
        self._drops: dict[str, int] = {}  # malformed message parts by reason, for the log
        self._events: asyncio.Queue[LiveEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._uplink = UplinkBuffer(settings.replay_seconds, settings.video_fps)
        self._wake = asyncio.Event()
        self._backoff = backoff or Backoff(settings.backoff_initial, settings.backoff_max)
        self._handle: str | None = None
        self._resumable = False
        self._turn_active = False
        self._expected_calls: set[str] = set()
        self._cancelled_calls: OrderedDict[str, None] = OrderedDict()  # recent, bounded
        self._resending: set[str] = set()  # answers requeued after a connection ended
        self._conn: _Connection | None = None
        self._tools_dirty = False
        self._ping_outstanding = False
        self._last_ping_at = 0.0
        self._flush_timer: asyncio.TimerHandle | None = None
        self.state = "idle"
        self.session_count = 0
        self.last_error = ""
        self._client = genai.Client(
            api_key=api_key.get_secret_value(),
            http_options=types.HttpOptions(
                base_url=settings.base_url.rstrip("/") or None,
                api_version=settings.api_version,
                async_client_args={
                    "ssl": ssl_context or _ssl_context(settings),
                    # Our own watchdog judges liveness: real pongs can be 30 s late.
                    "ping_interval": None,
                    "open_timeout": settings.connect_timeout,
                    "close_timeout": 2.0,
                    "max_size": MAX_MESSAGE_BYTES,
                    # Audio and JPEG do not deflate; compressing costs CPU per message.
                    "compression": None,
                },
            ),
        )

    # -- the Agent's side ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.ended.is_set()

    @property
    def handle(self) -> str | None:
        return self._handle

    @property
    def problem(self) -> str | None:
        """Why the link is not all it should be, for /healthz; None when it is.

        A refusal it is waiting out (until the next connection succeeds), or a
        session that only set up without the home's tools.
        """
        if self._refusal is not None:
            left = self._retry_at - time.monotonic()
            return f"{self._refusal}; next attempt in {left:.1f} s" if left > 0 else self._refusal
        return self._tools_note

    @property
    def replay_seconds(self) -> float:
        """Audio waiting to be sent (not counting sent audio awaiting confirmation)."""
        return self._uplink.pending_seconds

    async def next_event(self) -> LiveEvent:
        return await self._events.get()

    def send_audio(self, chunk: AudioChunk) -> None:
        if chunk.rate != 16_000:
            raise ValueError(f"uplink audio must be 16 kHz, got {chunk.rate} Hz")
        dropped = self._uplink.push_audio(chunk, time.monotonic())
        if dropped:
            self._metrics.uplink_audio_dropped.inc(dropped)
        self._metrics.replay_buffer_seconds.set(self._uplink.pending_seconds)
        want = self._s.uplink_chunk_ms / 1000
        if self._uplink.pending_seconds >= want - 1e-9:
            self._wake_now()
        elif self._flush_timer is None:
            # Half a message: wake the sender when the rest is due, not now (a
            # wake-up per chunk costs as much CPU as a send).
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._wake.set()
                return
            self._flush_timer = loop.call_later(want - chunk.duration / 2, self._wake_now)

    def _wake_now(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._wake.set()

    def send_video(self, frame: VideoFrame, *, force: bool = False) -> None:
        """Queue a frame within live.video_fps; `force` (a photo the model asked
        for) skips the rate limit."""
        before = self._uplink.stats.video_superseded
        if not self._uplink.offer_video(frame, time.monotonic(), force=force):
            self._metrics.uplink_video_skipped.labels("rate").inc()
            return
        if self._uplink.stats.video_superseded > before:
            self._metrics.uplink_video_skipped.labels("superseded").inc()
        self._wake.set()

    def end_audio_stream(self) -> None:
        """The microphone paused: lets the server's VAD close the utterance now."""
        self._uplink.stream_end_pending = True
        self._wake.set()

    def send_tool_response(self, response: ToolResponse) -> None:
        """Queue the answer to a call; at most one per call, none once it is cancelled."""
        if response.id in self._cancelled_calls:
            self._metrics.tool_responses_dropped.labels("cancelled").inc()
            log.info("tool response %s (%s) not sent: the model cancelled the call",
                     response.id, response.name)
            return
        if response.id not in self._expected_calls:
            # The session that asked is gone (a fresh one started): nobody waits.
            self._metrics.tool_responses_lost.inc()
            log.warning("tool response %s (%s) dropped: its session ended", response.id,
                        response.name)
            return
        if not self._uplink.push_response(response):
            self._metrics.tool_responses_dropped.labels("duplicate").inc()
            log.warning("second answer to tool call %s (%s) dropped; the first is queued",
                        response.id, response.name)
            return
        self._wake.set()

    def tools_changed(self) -> None:
        """The tool set changed: tell the model now if connected, else at connect."""
        self._tools_dirty = True
        self._wake.set()

    # -- supervisor ------------------------------------------------------------
    async def run(self) -> None:
        """Hold the conversation until cancelled; raises LiveFatalError if hopeless."""
        lost_at: float | None = None
        try:
            while True:
                self._set_state("connecting")
                delay = 0.0
                try:
                    conn = await self._connect_and_serve(lost_at)
                except LiveFatalError as exc:
                    delay = await self._refused(exc)
                except _Refused as exc:
                    self._metrics.link_connects.labels(exc.kind).inc()
                    self.last_error = exc.detail
                    if exc.kind == "resume_refused":
                        log.warning("resume refused (%s); starting a fresh session", exc.detail)
                        self._drop_handle("resume_refused")
                    delay = self._backoff.next_delay()
                    log.warning("Live connect failed: %s; retry in %.2f s", exc.detail, delay)
                except Exception as exc:
                    # A bug or an SDK surprise must not end the conversation for good.
                    self._metrics.link_connects.labels("error").inc()
                    self.last_error = _brief(exc)
                    delay = self._backoff.next_delay()
                    log.exception("Live link error; retry in %.2f s", delay)
                else:
                    lost_at = time.monotonic()
                    reason = conn.reason
                    up_for = lost_at - conn.established_at
                    self._metrics.link_disconnects.labels(reason).inc()
                    if up_for >= self._s.stable_after:
                        self._backoff.reset()
                    if reason == "goaway":
                        log.info("GoAway: handing over to a new connection")
                    else:
                        if reason.startswith("closed:1007"):
                            self._drop_handle("invalid_request")
                        delay = self._backoff.next_delay()
                        log.warning("Live connection lost (%s) after %.1f s; reconnect in %.2f s",
                                    reason, up_for, delay)
                    await self._emit(LinkStatus("reconnecting", reason))
                if delay > 0:
                    self._set_state("backoff")
                    await asyncio.sleep(delay)
        finally:
            if self.state != "failed":
                self._set_state("stopped")

    async def _refused(self, exc: LiveFatalError) -> float:
        """The API refused a connection: how long to wait before the next attempt.

        Raises `exc` when this is still the first connection after start: then it
        is the configuration (exit 2). Later, Google can answer 403 for passing
        reasons, and the setup carries tools built from MQTT devices, so the link
        waits minutes (doubling, jittered down to half, never short) and tries
        again. A rejected fresh setup is first retried once, at once, with the
        built-in tools only.
        """
        self._metrics.live_refusals.labels(exc.kind).inc()
        self.last_error = str(exc)
        if exc.kind == "setup_rejected" and self._fall_back_to_builtin_tools(exc):
            return 0.0
        self._fallback_for = None  # giving up on this set: the next attempt offers all
        self._tools_note = None
        if not self._ever_connected:
            self._set_state("failed")
            await self._emit(LinkStatus("failed", str(exc)))
            raise exc
        ceiling = self._refused_backoff.ceiling()
        delay = (ceiling + self._refused_backoff.next_delay()) / 2
        self._refusal = scrub(f"the Live API refused the connection: {exc}")
        self._retry_at = time.monotonic() + delay
        log.error("%s; trying again in %.1f s", self._refusal, delay)
        await self._emit(LinkStatus("refused", self._refusal))
        return delay

    def _fall_back_to_builtin_tools(self, exc: LiveFatalError) -> bool:
        """After a rejected fresh setup, offer only the built-in tools (once): True if so.

        The home's tools are built from what MQTT devices announce, so an odd or
        hostile device name can make the API reject the whole setup; a voice
        without the home is better than none. They are offered again once their
        declarations change.
        """
        if self._fallback is None or self._attempt_used_fallback:
            return False
        full = self._declarations()
        left_out = sorted({d["name"] for d in full} - {d["name"] for d in self._fallback()})
        if not left_out:
            return False
        self._fallback_for = _fingerprint(full)
        self._metrics.live_tool_fallbacks.inc()
        self._tools_note = scrub(
            "the Live API rejected the session setup with every tool; running with the "
            f"built-in tools only (left out: {', '.join(left_out)})"
        )
        log.warning("%s; trying again at once with the built-in tools only (left out: %s)",
                    exc, ", ".join(left_out))
        return True

    def _offered_declarations(self) -> list[dict[str, Any]]:
        """Every tool, or the built-in ones while the full set is one a setup was
        rejected with."""
        full = self._declarations()
        if self._fallback is None or self._fallback_for is None:
            return full
        if _fingerprint(full) == self._fallback_for:
            return self._fallback()
        log.info("the tool set changed since the Live API rejected it: offering every tool again")
        self._fallback_for = None
        self._tools_note = None
        return full

    async def _connect_and_serve(self, lost_at: float | None) -> _Connection:
        handle = self._handle
        declarations = self._offered_declarations()
        self._attempt_used_fallback = self._fallback_for is not None
        config = wire.connect_config(self._s, declarations, handle)
        self._tools_dirty = False
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self._s.connect_timeout):
                    session = await stack.enter_async_context(
                        self._client.aio.live.connect(model=self._s.model, config=config)
                    )
            except TimeoutError:
                raise _Refused("setup_timeout", "setup did not complete in time") from None
            except websockets.exceptions.InvalidStatus as exc:
                raise _classify_status(exc.response.status_code, self._s) from None
            except genai_errors.APIError as exc:
                raise _classify_setup_close(exc, handle is not None, self._s) from None
            except (OSError, websockets.exceptions.WebSocketException) as exc:
                raise _Refused("unreachable", _brief(exc)) from None

            now = time.monotonic()
            resumed = handle is not None
            self._ever_connected = True
            self._refusal = None
            self._refused_backoff.reset()
            conn = _Connection(established_at=now, resumed=resumed, last_alive=now)
            self._conn = conn
            self.session_count += 1
            self._metrics.link_connects.labels("resumed" if resumed else "fresh").inc()
            if lost_at is not None:
                self._metrics.link_gap.observe(now - lost_at)
            if not resumed:
                self._start_fresh()
            self._set_state("connected")
            log.info("Live link connected (%s)", "resumed" if resumed else "new session")
            await self._emit(LinkStatus("connected", resumed=resumed))
            try:
                await self._serve(session, conn)
            except asyncio.CancelledError:
                # A clean stop: close the session with 1000, not the 1011 an
                # exception unwinding the SDK's context would send.
                conn.finish("stopped")
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await session.close()
                raise
            finally:
                self._conn = None
                if conn.reason == "goaway":
                    await self._close_after_goaway(session)
                self._settle_unconfirmed(conn.reason, session)
                if conn.reason == "stall":
                    _abort(session)
        return conn

    async def _close_after_goaway(self, session: genai.live.AsyncSession) -> None:
        """Close before resuming: the server's close reply proves it read all we sent."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await session.close()

    def _settle_unconfirmed(self, reason: str, session: genai.live.AsyncSession) -> None:
        """Decide what became of audio that was on the socket but never confirmed.

        Audio is confirmed by pongs, so at any time up to one confirmation window
        (live.confirm_interval, plus a round trip) is on the socket unconfirmed.
        - Stall: a silent peer may have read none of it; it is sent again, in
          order. Some of it may have been read before the peer went quiet: those
          chunks arrive twice (at most one confirmation window).
        - Close or reset by the server (1000, 1008, 1011, 1006), or a failed send:
          the peer was reading until then, so the tail is taken as delivered.
          Only what crossed the server's close on the wire (about half a round
          trip of audio) is lost; re-sending the whole window instead would make
          the model hear up to confirm_interval of words twice, which is worse
          (duplicate audio after a resume is a known field problem). Counted in
          edge_live_uplink_unconfirmed_at_close_chunks{reason}, so the cost shows.
        - GoAway: the socket was closed by us; if the server replied to the
          close, it read everything, and nothing is counted.
        Audio the socket refused is still pending and goes out after the resume.

        Tool answers are different: one lost on the way leaves the resumed
        session waiting for it forever (the model goes silent), while one that
        arrives twice is ignored (or refused) by the server. So every answer no
        pong confirmed is sent again, first, if the session is resumed; a fresh
        session drops it (_start_fresh). Only a close the server replied to (our
        own, after GoAway) proves they were read.
        """
        read_all = reason == "stopped" or (reason == "goaway" and _close_replied(session))
        self._settle_answers(read_all, reason)
        if reason == "stall":
            n = self._uplink.requeue_unconfirmed()
            if n:
                self._metrics.uplink_unconfirmed_at_close.labels(reason).inc(n)
                log.warning("%d audio chunk(s) unconfirmed by the stalled server; resending", n)
            return
        n = self._uplink.confirm_all()
        if read_all:
            return
        if n:
            self._metrics.uplink_unconfirmed_at_close.labels(reason).inc(n)
            log.info("%d audio chunk(s) were sent but unconfirmed when the connection ended "
                     "(%s); taken as delivered", n, reason)

    def _settle_answers(self, delivered: bool, reason: str) -> None:
        if delivered:
            self._uplink.confirm_all_responses()
            return
        again = self._uplink.requeue_unconfirmed_responses()
        if again:
            ids = {r.id for r in again}
            self._resending |= ids
            self._expected_calls |= ids
            log.warning("%d tool answer(s) unconfirmed when the connection ended (%s); "
                        "sending again if the session resumes", len(again), reason)

    def _start_fresh(self) -> None:
        """A new session knows none of the old one's calls: their answers have no taker."""
        lost = self._uplink.drain_responses()
        if lost or self._expected_calls:
            n = len(lost) + len(self._expected_calls - {r.id for r in lost})
            self._metrics.tool_responses_lost.inc(n)
            log.warning("%d tool answer(s) belong to the ended session and are dropped", n)
        self._expected_calls.clear()
        self._cancelled_calls.clear()
        self._resending.clear()
        self._turn_active = False

    def _calls_cancelled(self, ids: list[str]) -> None:
        """The model no longer waits for these calls: an answer already queued is not sent,
        and one that comes later is not queued."""
        self._expected_calls.difference_update(ids)
        self._resending.difference_update(ids)
        for call_id in ids:
            self._cancelled_calls[call_id] = None
        while len(self._cancelled_calls) > REMEMBERED_CANCELLATIONS:
            self._cancelled_calls.popitem(last=False)
        purged = self._uplink.purge_responses(ids)
        if purged:
            self._metrics.tool_responses_dropped.labels("cancelled").inc(len(purged))
            log.info("%d queued tool answer(s) not sent: the model cancelled the call(s)",
                     len(purged))

    def _drop_handle(self, reason: str) -> None:
        if self._handle is not None:
            self._metrics.link_fresh_sessions.labels(reason).inc()
        self._handle = None
        self._resumable = False

    async def _serve(self, session: genai.live.AsyncSession, conn: _Connection) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._send_loop(session, conn), name="live-send"),
                tg.create_task(self._receive_loop(session, conn), name="live-receive"),
                tg.create_task(self._watchdog(session, conn), name="live-watchdog"),
            ]
            await conn.ended.wait()
            for t in tasks:
                t.cancel()

    # -- per-connection tasks ----------------------------------------------------
    async def _send_loop(self, session: genai.live.AsyncSession, conn: _Connection) -> None:
        ub = self._uplink
        ws = getattr(session, "_ws", None)
        self._ping_outstanding = False
        self._wake.set()  # what the last connection left (a requeued answer) goes first
        try:
            if self._tools_dirty:
                await self._send_tools(session)
            while True:
                await self._wake.wait()
                self._wake.clear()
                while not conn.ended.is_set():
                    if self._tools_dirty:
                        await self._send_tools(session)
                    elif (resp := ub.peek_response()) is not None:
                        if await self._send_response(session, resp):
                            if ws is not None:
                                await self._ping(ws, conn)  # confirm the answer at once
                            else:  # nothing can confirm it: taken as delivered
                                ub.confirm_all_responses()
                    elif (frame := ub.take_video()) is not None:
                        try:
                            await session.send_realtime_input(
                                video=types.Blob(data=frame.jpeg, mime_type="image/jpeg")
                            )
                        except BaseException:
                            ub.restore_video(frame)
                            raise
                        self._metrics.uplink_video.inc()
                    elif ub.peek_audio() is not None:
                        batch, wait = self._audio_batch()
                        if wait > 0:  # a short message would cost CPU: wait for the rest
                            self._wake.clear()
                            with contextlib.suppress(TimeoutError):
                                async with asyncio.timeout(wait):
                                    await self._wake.wait()
                            continue
                        pcm = b"".join(item.chunk.pcm for item in batch)
                        if ws is not None:
                            await ws.send(wire.audio_message(pcm))
                        else:
                            await session.send_realtime_input(
                                audio=types.Blob(data=pcm, mime_type=wire.AUDIO_MIME)
                            )
                        ub.mark_sent(batch[-1].seq)
                        self._metrics.uplink_audio.inc(len(batch))
                        late = sum(item.enqueued_at < conn.established_at for item in batch)
                        if late:
                            self._metrics.uplink_audio_replayed.inc(late)
                        self._metrics.replay_buffer_seconds.set(ub.pending_seconds)
                        if (
                            ws is not None
                            and not self._ping_outstanding
                            and time.monotonic() - self._last_ping_at >= self._s.confirm_interval
                        ):
                            await self._ping(ws, conn)
                    elif ub.stream_end_pending:
                        await session.send_realtime_input(audio_stream_end=True)
                        ub.stream_end_pending = False
                    else:
                        break
        except websockets.exceptions.ConnectionClosed as exc:
            conn.finish(_close_reason(exc.rcvd.code if exc.rcvd else 1006))
        except OSError as exc:
            log.warning("Live send failed: %s", _brief(exc))
            conn.finish("send_error")

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
                          resp.id, resp.name, _brief(exc))
                self._uplink.pop_response(resp)
                self._expected_calls.discard(resp.id)
            else:
                self._metrics.tool_responses_dropped.labels("unserialisable").inc()
                log.error("tool response %s (%s) cannot be encoded (%s); answering with an error",
                          resp.id, resp.name, _brief(exc))
                self._uplink.replace_response(
                    ToolResponse(resp.id, resp.name, dict(UNENCODABLE_ANSWER), resp.scheduling)
                )
            return False
        self._uplink.response_sent(resp)
        self._expected_calls.discard(resp.id)
        if resp.id in self._resending:
            self._resending.discard(resp.id)
            self._metrics.tool_responses_resent.inc()
            log.info("tool response %s (%s) sent again on the resumed session",
                     resp.id, resp.name)
        return True

    def _audio_batch(self) -> tuple[list[PendingAudio], float]:
        """The chunks for the next audio message, or how long to wait for more.

        Each message costs about as much CPU as the audio in it (bench/live_uplink.py),
        so 20 ms frames (BLE) go up in pairs: live.uplink_chunk_ms. The wait is
        bounded: the first chunk never waits longer than that, and a backlog after
        a reconnect goes up in larger messages to catch up quickly. Only waiting
        for a short message's partner adds delay; a backlog takes what is there.
        """
        ub = self._uplink
        want = self._s.uplink_chunk_ms / 1000
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

    async def _send_tools(self, session: genai.live.AsyncSession) -> None:
        self._tools_dirty = False
        tools: list[Any] = list(wire.function_tools(self._offered_declarations()))
        await session.send_context_update(tools=tools)

    async def _receive_loop(self, session: genai.live.AsyncSession, conn: _Connection) -> None:
        while not conn.ended.is_set():
            try:
                async for msg in session.receive():
                    conn.last_alive = time.monotonic()
                    await self._on_message(msg, conn)
            except genai_errors.APIError as exc:
                code = exc.code if isinstance(exc.code, int) else 1006
                conn.finish(_close_reason(code))
                self.last_error = f"server closed the connection ({code}: {_close_text(exc)})"
                return
            except websockets.exceptions.ConnectionClosed as exc:
                conn.finish(_close_reason(exc.rcvd.code if exc.rcvd else 1006))
                return
            except (TypeError, ValueError, KeyError, pydantic.ValidationError) as exc:
                # The SDK could not parse one message; the socket is fine.
                self._metrics.downlink_messages.labels("unparseable").inc()
                log.warning("unparseable Live message skipped: %s", _brief(exc))

    async def _on_message(self, msg: types.LiveServerMessage, conn: _Connection) -> None:
        events, ctl = wire.translate(msg)
        for kind in ctl.kinds:
            self._metrics.downlink_messages.labels(kind).inc()
        if ctl.audio_seconds:
            self._metrics.downlink_audio_seconds.inc(ctl.audio_seconds)
        for reason in ctl.dropped:
            self._dropped(reason)
        if ctl.resumable is not None:
            self._resumable = ctl.resumable
        if ctl.new_handle:
            self._handle = ctl.new_handle
        if ctl.turn_active is not None:
            self._turn_active = ctl.turn_active
        self._expected_calls.update(ctl.call_ids)
        if ctl.cancelled_ids:
            self._calls_cancelled(ctl.cancelled_ids)
        if ctl.go_away_in is not None:
            deadline = time.monotonic() + max(0.0, ctl.go_away_in - self._s.goaway_margin)
            conn.go_away_deadline = deadline
            log.info("GoAway received: %.1f s left", ctl.go_away_in)
        for ev in events:
            await self._emit(ev)
        self._check_handover(conn)

    def _check_handover(self, conn: _Connection) -> None:
        """After GoAway, move at a quiet, resumable moment, or at the deadline.

        Quiet means no turn under way (nothing heard and unanswered, no call
        pending, the model not speaking): a resumable point inside a turn, such
        as right after a tool answer, would cut the reply that follows.
        """
        if conn.go_away_deadline is None:
            return
        quiet = self._resumable and not self._turn_active and not self._expected_calls
        if quiet or time.monotonic() >= conn.go_away_deadline:
            conn.finish("goaway")

    async def _watchdog(self, session: genai.live.AsyncSession, conn: _Connection) -> None:
        tick = min(1.0, self._s.stall_timeout / 4, self._s.ping_interval)
        next_ping = time.monotonic() + self._s.ping_interval
        ws = getattr(session, "_ws", None)
        while not conn.ended.is_set():
            await asyncio.sleep(tick)
            now = time.monotonic()
            self._check_handover(conn)
            if now - conn.last_alive > self._s.stall_timeout:
                log.warning("Live link stalled: nothing heard for %.1f s", now - conn.last_alive)
                conn.finish("stall")
                return
            if ws is not None and now >= next_ping:
                next_ping = now + self._s.ping_interval
                await self._ping(ws, conn)

    async def _ping(self, ws: Any, conn: _Connection) -> None:
        seq = self._uplink.last_sent_seq
        answers = self._uplink.last_response_seq
        self._last_ping_at = time.monotonic()
        self._ping_outstanding = True
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            waiter = await ws.ping()
            waiter.add_done_callback(lambda f: self._pong(f, conn, seq, answers))

    def _pong(self, fut: asyncio.Future[float], conn: _Connection, seq: int, answers: int) -> None:
        """A pong proves the peer read everything sent before its ping."""
        self._ping_outstanding = False
        if not fut.cancelled() and fut.exception() is None:
            conn.last_alive = time.monotonic()
            if not conn.ended.is_set():
                self._uplink.confirm(seq)
                self._uplink.confirm_responses(answers)

    # -- helpers -----------------------------------------------------------------
    async def _emit(self, event: LiveEvent) -> None:
        await self._events.put(event)

    def _dropped(self, reason: str) -> None:
        """A malformed part of a server message was not passed on: counted, and
        logged the 1st, 2nd, 4th, 8th... time (a broken stream must not flood the log)."""
        self._metrics.live_messages_dropped.labels(reason).inc()
        n = self._drops[reason] = self._drops.get(reason, 0) + 1
        if n & (n - 1) == 0:
            log.warning("malformed Live message part dropped (%s, %d so far)", reason, n)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._metrics.set_link_state(state)


class _Refused(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _close_replied(session: genai.live.AsyncSession) -> bool:
    ws = getattr(session, "_ws", None)
    return getattr(getattr(ws, "protocol", None), "close_rcvd", None) is not None


def _abort(session: genai.live.AsyncSession) -> None:
    ws = getattr(session, "_ws", None)
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()


def _close_text(exc: genai_errors.APIError) -> str:
    """The close reason the server gave (the SDK keeps a close's reason in `details`)."""
    text = exc.message or (exc.details if isinstance(exc.details, str) else "") or str(exc)
    return clip(text.replace("\n", " "), 200)  # scrubbed before it is cut


def _close_reason(code: int) -> str:
    return f"closed:{code}"


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return clip(f"{type(exc).__name__}: {text}", 200) if text else type(exc).__name__


def _classify_status(status: int, s: LiveSettings) -> Exception:
    if status in (401, 403):
        return LiveFatalError(f"GEMINI_API_KEY: rejected by the Live API (HTTP {status})",
                              f"http_{status}")
    if status == 404:
        return LiveFatalError(
            f"live.base_url: no Live endpoint at {s.base_url or 'the default URL'} "
            f"for api_version {s.api_version} (HTTP 404)",
            "http_404",
        )
    return _Refused("http_error", f"handshake refused with HTTP {status}")


def _classify_setup_close(exc: genai_errors.APIError, resuming: bool, s: LiveSettings) -> Exception:
    """A close before setup completed: a refusal when the same setup cannot succeed soon.

    A rejected key and an unknown model are refusals; so is 1007 (invalid
    argument) on a fresh setup, which carries our own settings and the tools.
    1007 on a resume means the handle is bad: start fresh. Anything else,
    notably a 1008 policy close (seen in the field on some function-call
    shapes, and passing), is retried with backoff.
    """
    code = exc.code
    text = _close_text(exc)
    lowered = text.lower()
    if "api key not valid" in lowered or "api_key_invalid" in lowered:
        return LiveFatalError(f"GEMINI_API_KEY: rejected by the Live API ({code}: {text[:160]})",
                              "key_rejected")
    if code == 1008 and "not found" in lowered:
        return LiveFatalError(f"live.model: {s.model!r} is not available ({text[:160]})",
                              "model_unavailable")
    if code == 1007 and resuming:
        return _Refused("resume_refused", f"close 1007 during setup: {text[:160]}")
    if code == 1007:
        return LiveFatalError(
            f"{_setup_key(lowered)}: the Live API rejected the session setup "
            f"(1007: {text[:160]})",
            "setup_rejected",
        )
    return _Refused("setup_closed", f"server closed during setup ({code}: {text[:160]})")


_SETUP_FIELDS = (  # a field named in a 1007 reason -> the setting that put it in the setup
    ("voice", "live.voice"),
    ("language", "live.language"),
    ("systeminstruction", "live.system_instruction"),
    ("contextwindowcompression", "live.compression_trigger_tokens"),
    ("model", "live.model"),
)


def _setup_key(reason: str) -> str:
    """The setting a setup rejection points at, else the [live] section as a whole."""
    flat = reason.replace("_", "")  # the service names fields in either case style
    return next((key for word, key in _SETUP_FIELDS if word in flat), "live")


def _fingerprint(declarations: list[dict[str, Any]]) -> str:
    """Identifies a tool set, to tell whether the one a setup was rejected with changed."""
    text = json.dumps(declarations, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ssl_context(s: LiveSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if s.ca_file is not None:
        ctx.load_verify_locations(cafile=str(s.ca_file))
    return ctx

"""LiveLink: one conversation with the Gemini Live API that outlives any socket.

A supervisor loop owns the connection. Each connection runs three tasks (send,
receive, watchdog) in a TaskGroup and ends with one reason; the reason decides
what comes next: a planned handover (GoAway), an immediate resume, backoff, a
fresh session (resume refused), or a refusal (bad key, unknown model, rejected
setup). A refusal of the first connection after start is fatal: it stops the
daemon with a clear message instead of a retry storm. Later the same answer
may be passing or caused by what changed since (tools built from MQTT devices),
so the link waits minutes, retries, and says why in `problem`.

The parts: `sender` and `receiver` (one connection's traffic), `resumption`
(what the session carries across connections), `session_record` (what it
carries across a restart of the daemon: the stored handle, resumed by the
first connection), `tool_offer` (which tools the model gets), `failures` (why
a connection failed), `socket_door` (the SDK's private socket, behind one door).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import websockets
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr

from daemon.backoff import Backoff
from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.calls import ToolResponse
from daemon.live.events import LinkStatus, LiveEvent
from daemon.live.failures import (
    ConnectFailed,
    LiveFatalError,
    brief,
    classify_setup_close,
    classify_status,
)
from daemon.live.receiver import Receiver
from daemon.live.resumption import Resumption
from daemon.live.sender import UNENCODABLE_ANSWER, Sender
from daemon.live.session_record import SessionKeeper
from daemon.live.socket_door import LiveSocket, SocketDoor
from daemon.live.socket_life import SocketLife
from daemon.live.tls import client_context
from daemon.live.tool_offer import ToolOffer
from daemon.live.uplink import UplinkBuffer
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.lograte import seldom
from daemon.ops.logsetup import scrub
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore

__all__ = ["UNENCODABLE_ANSWER", "LiveFatalError", "LiveLink"]

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 512
# A server message is parsed whole by the SDK before the daemon sees it, so its size
# is the only bound on what one message may cost: 15 MB of tiny parts took ~424 MB and a
# 15 s stall. Audio arrives in chunks of kilobytes; nothing legitimate comes near 2 MB.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024


class LiveLink:
    """The Agent's one conversation with the Live API, across sockets and sessions."""

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
        state: StateStore | None = None,
    ) -> None:
        """`fallback_declarations`: the tools to offer alone, once, after a fresh
        setup with all of them was rejected (the built-in ones, without the home's).
        `state`: where the session's newest handle is kept for the next start (read
        here: a stored session is resumed by the first connection)."""
        self._s = settings
        self._metrics = metrics
        self._tools = ToolOffer(declarations, fallback_declarations, metrics)
        self._ever_connected = False
        self._early_goaways = 0  # GoAways in a row, each soon after its connect
        self._refused_backoff = refused_backoff or Backoff(
            settings.refused_backoff_initial, settings.refused_backoff_max, immediate_first=False
        )
        self._refusal: str | None = None
        self._retry_at = 0.0
        self._events: asyncio.Queue[LiveEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._uplink = UplinkBuffer(settings.replay_seconds, settings.video_fps)
        self._backoff = backoff or Backoff(settings.backoff_initial, settings.backoff_max)
        self._keeper = SessionKeeper(state, settings, metrics)
        self._resumption = Resumption(settings, self._uplink, metrics, self._keeper)
        stored = self._keeper.load()
        if stored is not None:
            self._resumption.restore(stored)
        self._restarted = stored is not None  # until the stored session is resumed or refused
        self._sender = Sender(settings, self._uplink, metrics, self._resumption, self._tools)
        self._receiver = Receiver(settings, metrics, self._resumption, self._events,
                                  ping=self._sender.ping, on_close=self._server_closed)
        self._door = SocketDoor(metrics)
        self._conn: SocketLife | None = None
        self.state = "idle"
        self.session_count = 0
        self.last_error = ""
        self._client = _client(settings, api_key, ssl_context)

    # -- the Agent's side ------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is set up and has not ended."""
        return self._conn is not None and not self._conn.ended.is_set()

    @property
    def handle(self) -> str | None:
        """The session's newest resumption handle, if the server gave one."""
        return self._resumption.handle

    @property
    def problem(self) -> str | None:
        """Why the link is not all it should be, for /healthz; None when it is.

        A refusal it is waiting out (until the next connection succeeds), or a
        session that only set up without the home's tools.
        """
        if self._refusal is not None:
            left = self._retry_at - time.monotonic()
            return f"{self._refusal}; next attempt in {left:.1f} s" if left > 0 else self._refusal
        return self._tools.note

    @property
    def replay_seconds(self) -> float:
        """Audio waiting to be sent (not counting sent audio awaiting confirmation)."""
        return self._uplink.pending_seconds

    async def next_event(self) -> LiveEvent:
        """The next event for the Agent, in the order the server sent them."""
        return await self._events.get()

    def send_audio(self, chunk: AudioChunk) -> None:
        """Queue 16 kHz microphone audio; sent in order, once, across reconnects."""
        if chunk.rate != 16_000:
            raise ValueError(f"uplink audio must be 16 kHz, got {chunk.rate} Hz")
        dropped = self._uplink.push_audio(chunk, time.monotonic())
        if dropped:
            self._metrics.uplink_audio_dropped.inc(dropped)
        if not self._sender.audio_queued(chunk.duration):  # sent at once: the sender set it
            self._metrics.replay_buffer_seconds.set(self._uplink.pending_seconds)

    def send_video(self, frame: VideoFrame, *, force: bool = False) -> None:
        """Queue a frame within live.video_fps; `force` (a photo the model asked
        for) skips the rate limit."""
        before = self._uplink.stats.video_superseded
        if not self._uplink.offer_video(frame, time.monotonic(), force=force):
            self._metrics.uplink_video_skipped.labels("rate").inc()
            return
        if self._uplink.stats.video_superseded > before:
            self._metrics.uplink_video_skipped.labels("superseded").inc()
        self._sender.wake()

    def withhold_unsent(self, *, audio: bool = False, video: bool = False) -> None:
        """The user muted or switched the camera off: what waits to go up (audio
        held through a reconnect, a frame) never leaves the device. Counted as withheld."""
        if audio and (n := self._uplink.withdraw_audio()):
            self._metrics.uplink_withheld.labels("audio").inc(n)
            self._metrics.replay_buffer_seconds.set(self._uplink.pending_seconds)
            log.info("microphone muted: %d unsent audio chunks discarded", n)
        if video and self._uplink.withdraw_video():
            self._metrics.uplink_withheld.labels("video").inc()
            log.info("camera off: the unsent frame discarded")

    def end_audio_stream(self) -> None:
        """The microphone paused: lets the server's VAD close the utterance now."""
        self._uplink.stream_end_pending = True
        self._sender.wake()

    def send_tool_response(self, response: ToolResponse) -> None:
        """Queue the answer to a call; at most one per call, none once it is cancelled."""
        if self._resumption.accept_answer(response):
            self._sender.wake()

    def tools_changed(self) -> None:
        """The tool set changed: tell the model now if connected, else at connect."""
        self._sender.tools_changed()

    def send_text(self, text: str) -> asyncio.Future[None]:
        """Queue a text turn for the model to answer (a background task's result); the
        future is done once it is written to a socket, across reconnects."""
        return self._sender.text_queued(text)

    # -- supervisor ------------------------------------------------------------
    async def run(self) -> None:
        """Hold the conversation until cancelled; raises LiveFatalError if hopeless."""
        keeper = asyncio.create_task(self._keeper.run(), name="live-session-record")
        try:
            await self._supervise()
        finally:
            keeper.cancel()  # it writes what is still due as it ends
            await asyncio.wait([keeper])

    async def _supervise(self) -> None:
        lost_at: float | None = None
        try:
            while True:
                self._set_state("connecting")
                delay = 0.0
                try:
                    conn = await self._connect_and_serve(lost_at)
                except LiveFatalError as exc:
                    delay = await self._refused(exc)
                except ConnectFailed as exc:
                    delay = self._failed(exc)
                except Exception as exc:
                    # A bug or an SDK surprise must not end the conversation for good.
                    self._metrics.link_connects.labels("error").inc()
                    self.last_error = brief(exc)
                    delay = self._backoff.next_delay()
                    log.exception("Live link error; retry in %.2f s", delay)
                else:
                    lost_at = time.monotonic()
                    delay = self._ended(conn, lost_at)
                    await self._emit(LinkStatus("reconnecting", conn.reason))
                if delay > 0:
                    self._set_state("backoff")
                    await asyncio.sleep(delay)
        finally:
            if self.state != "failed":
                self._set_state("stopped")

    def _failed(self, exc: ConnectFailed) -> float:
        """A connection attempt failed: how long to back off."""
        self._metrics.link_connects.labels(exc.kind).inc()
        self.last_error = exc.detail
        if exc.kind == "resume_refused":
            log.warning("resume refused (%s); starting a fresh session", exc.detail)
            self._resumption.drop_handle("resume_refused")
            if self._restarted:  # the handle a previous process stored: not the key
                self._restarted = False
                self._keeper.started("refused")
        delay = self._backoff.next_delay()
        log.warning("Live connect failed: %s; retry in %.2f s", exc.detail, delay)
        return delay

    def _ended(self, conn: SocketLife, lost_at: float) -> float:
        """A connection ended: how long to wait before the next one."""
        reason = conn.reason
        up_for = lost_at - conn.established_at
        self._metrics.link_disconnects.labels(reason).inc()
        if up_for >= self._s.stable_after:
            self._backoff.reset()
        if reason == "goaway":
            # A GoAway ends a session of minutes: hand over at once. One that keeps
            # coming right after each connect (an overloaded or broken server) is
            # backed off like any loss, or the link would reconnect ~100 times a second.
            self._early_goaways = self._early_goaways + 1 if up_for < self._s.stable_after else 0
            if self._early_goaways < 2:
                log.info("GoAway: handing over to a new connection")
                return 0.0
            delay = self._backoff.next_delay()
            if seldom(self._early_goaways - 1):
                log.warning("GoAway again %.1f s after connecting (%d in a row); next "
                            "connection in %.2f s", up_for, self._early_goaways, delay)
            return delay
        if reason.startswith("closed:1007"):
            self._resumption.drop_handle("invalid_request")
        delay = self._backoff.next_delay()
        log.warning("Live connection lost (%s) after %.1f s; reconnect in %.2f s",
                    reason, up_for, delay)
        return delay

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
        if exc.kind == "setup_rejected" and self._tools.fall_back(exc):
            return 0.0
        self._tools.give_up()
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

    # -- one connection ------------------------------------------------------------
    async def _connect_and_serve(self, lost_at: float | None) -> SocketLife:
        handle = self._resumption.handle
        config = wire.connect_config(self._s, self._tools.for_attempt(), handle)
        self._sender.tools_in_setup()
        async with contextlib.AsyncExitStack() as stack:
            session = await self._connect(stack, config, resuming=handle is not None)
            socket = self._door.open(session)
            conn = await self._connected(handle is not None, lost_at)
            try:
                await self._serve(session, socket, conn)
            except asyncio.CancelledError:
                # A clean stop: close the session with 1000, not the 1011 an
                # exception unwinding the SDK's context would send.
                conn.finish("stopped")
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await _close(session, socket)
                raise
            finally:
                await self._disconnected(session, socket, conn)
        return conn

    async def _connect(
        self, stack: contextlib.AsyncExitStack, config: types.LiveConnectConfig, *, resuming: bool
    ) -> genai.live.AsyncSession:
        """Open a session, or raise why not: LiveFatalError or ConnectFailed."""
        try:
            async with asyncio.timeout(self._s.connect_timeout):
                return await stack.enter_async_context(
                    self._client.aio.live.connect(model=self._s.model, config=config)
                )
        except TimeoutError:
            raise ConnectFailed("setup_timeout", "setup did not complete in time") from None
        except websockets.exceptions.InvalidStatus as exc:
            raise classify_status(exc.response.status_code, self._s) from None
        except genai_errors.APIError as exc:
            raise classify_setup_close(exc, resuming, self._s) from None
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            raise ConnectFailed("unreachable", brief(exc)) from None

    async def _connected(self, resumed: bool, lost_at: float | None) -> SocketLife:
        """A session is set up: count it, and tell the Agent."""
        now = time.monotonic()
        self._ever_connected = True
        self._refusal = None
        self._refused_backoff.reset()
        conn = SocketLife(established_at=now, resumed=resumed, last_alive=now)
        self._conn = conn
        self.session_count += 1
        self._metrics.link_connects.labels("resumed" if resumed else "fresh").inc()
        if lost_at is not None:
            self._metrics.link_gap.observe(now - lost_at)
        if not resumed:
            self._resumption.start_fresh()
        elif self._restarted:
            self._restarted = False
            self._keeper.started("resumed")
            log.info("resumed the Live session stored by the previous run")
            self._resumption.answer_interrupted(self._scheduling)
        self._set_state("connected")
        log.info("Live link connected (%s)", "resumed" if resumed else "new session")
        await self._emit(LinkStatus("connected", resumed=resumed))
        return conn

    async def _serve(
        self, session: genai.live.AsyncSession, socket: LiveSocket | None, conn: SocketLife
    ) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._sender.run(session, socket, conn), name="live-send"),
                tg.create_task(self._receiver.run(session, conn, socket),
                               name="live-receive"),
                tg.create_task(self._receiver.watch(socket, conn), name="live-watchdog"),
            ]
            await conn.ended.wait()
            for t in tasks:
                t.cancel()

    async def _disconnected(
        self, session: genai.live.AsyncSession, socket: LiveSocket | None, conn: SocketLife
    ) -> None:
        """The connection ended: settle what was on it, and leave it the right way."""
        self._conn = None
        if conn.reason == "goaway":
            # Close before resuming: the server's close reply proves it read all we sent.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await _close(session, socket)
        unread = conn.unanswered_for(time.monotonic()) > self._s.stall_timeout
        if unread and conn.reason != "stall":
            log.warning("Live connection ended (%s) with a ping unanswered for more than "
                        "live.stall_timeout: the server was not reading", conn.reason)
        self._resumption.settle(conn.reason, socket, unread=unread)
        if conn.reason == "stall" and socket is not None:
            socket.abort()

    # -- helpers -----------------------------------------------------------------
    def _scheduling(self, tool: str) -> str | None:
        """How the model should take an answer to this tool (None: a blocking tool)."""
        blocking = any(d.get("name") == tool and d.get("blocking")
                       for d in self._tools.offered())
        return None if blocking else "WHEN_IDLE"

    def _server_closed(self, detail: str) -> None:
        self.last_error = detail

    async def _emit(self, event: LiveEvent) -> None:
        await self._events.put(event)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._metrics.set_link_state(state)


async def _close(session: genai.live.AsyncSession, socket: LiveSocket | None) -> None:
    """Close with 1000 and wait briefly for the reply (through the SDK without a socket)."""
    if socket is not None:
        await socket.close()
    else:
        await session.close()


def _client(
    settings: LiveSettings, api_key: SecretStr, ssl_context: ssl.SSLContext | None
) -> genai.Client:
    ctx = ssl_context or client_context(settings)
    return genai.Client(
        api_key=api_key.get_secret_value(),
        http_options=types.HttpOptions(
            base_url=settings.base_url.rstrip("/") or None,
            api_version=settings.api_version,
            # The SDK's HTTP clients (unused by the socket) take the same context, or
            # it loads a CA bundle of its own at every start (~45 ms).
            client_args={"verify": ctx},
            async_client_args={
                "ssl": ctx,
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

"""The link's receive side: server messages in, the Agent's events out, and a watchdog.

A message the SDK cannot parse is skipped, a malformed part of one is dropped
and counted; only a closed socket or a silent server ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import pydantic
import websockets
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.events import LiveEvent, ToolCallRequest
from daemon.live.failures import brief, close_reason, close_text
from daemon.live.resumption import Resumption
from daemon.live.socket_door import LiveSocket
from daemon.live.socket_life import SocketLife
from daemon.ops.lograte import seldom
from daemon.ops.metrics import Metrics

log = logging.getLogger("daemon.live.link")  # the link's parts log under its name

Ping = Callable[[LiveSocket, SocketLife], Awaitable[None]]


class Receiver:
    """Reads one connection at a time and hands what it means to the session and the Agent."""

    def __init__(
        self,
        settings: LiveSettings,
        metrics: Metrics,
        resumption: Resumption,
        events: asyncio.Queue[LiveEvent],
        *,
        ping: Ping,
        on_close: Callable[[str], None],
    ) -> None:
        """`ping` keeps the socket confirmed while quiet; `on_close` hears why the
        server closed it, in a line."""
        self._s = settings
        self._metrics = metrics
        self._resumption = resumption
        self._events = events
        self._ping = ping
        self._on_close = on_close
        self._drops: dict[str, int] = {}  # malformed message parts by reason, for the log

    async def run(
        self, session: genai.live.AsyncSession, conn: SocketLife, socket: LiveSocket | None
    ) -> None:
        """Receive until the connection ends (the SDK's receive() stops at each turn's end)."""
        while not conn.ended.is_set():
            try:
                async for msg in session.receive():
                    conn.last_alive = time.monotonic()
                    await self.on_message(msg, conn)
            except genai_errors.APIError as exc:
                if _read_from_an_open_socket(exc, socket):
                    self._unparseable(exc)
                    continue
                code = exc.code if isinstance(exc.code, int) else 1006
                conn.finish(close_reason(code))
                self._on_close(f"server closed the connection ({code}: {close_text(exc)})")
                return
            except websockets.exceptions.ConnectionClosed as exc:
                conn.finish(close_reason(exc.rcvd.code if exc.rcvd else 1006))
                return
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError,
                    pydantic.ValidationError) as exc:
                # The SDK could not parse one message (a list or a string at the top, JSON
                # nested past the parser's depth); the socket is fine.
                self._unparseable(exc)

    def _unparseable(self, exc: Exception) -> None:
        self._metrics.downlink_messages.labels("unparseable").inc()
        n = self._drops["unparseable"] = self._drops.get("unparseable", 0) + 1
        if seldom(n):  # a server sending nothing else must not fill the log
            log.warning("unparseable Live message skipped: %s (%d so far)", brief(exc), n)

    async def on_message(self, msg: types.LiveServerMessage, conn: SocketLife) -> None:
        """One server message: counted, applied to the session, its events passed on."""
        events, ctl = wire.translate(msg)
        events = self._unanswered_only(events)
        for kind in ctl.kinds:
            self._metrics.downlink_messages.labels(kind).inc()
        if ctl.audio_seconds:
            self._metrics.downlink_audio_seconds.inc(ctl.audio_seconds)
        for reason in ctl.dropped:
            self._dropped(reason)
        self._resumption.apply(ctl, conn)
        for ev in events:
            await self._events.put(ev)
        self._resumption.check_handover(conn)

    def _unanswered_only(self, events: list[LiveEvent]) -> list[LiveEvent]:
        """Calls the server sends again after they were answered are not run twice."""
        out: list[LiveEvent] = []
        for ev in events:
            if isinstance(ev, ToolCallRequest):
                calls = tuple(c for c in ev.calls if not self._resumption.already_answered(c.id))
                for _ in range(len(ev.calls) - len(calls)):
                    self._dropped("call_already_answered")
                if not calls:
                    continue
                ev = ToolCallRequest(calls)
            out.append(ev)
        return out

    async def watch(self, socket: LiveSocket | None, conn: SocketLife) -> None:
        """End a connection the server went silent on, or stopped reading on; keep a
        quiet one confirmed.

        A server can go on sending (transcripts, tool calls) after it stopped
        reading: then only the pings tell, by a pong that does not come. The
        watch never waits on a ping itself (a peer that does not read fills the
        TCP buffers, and a send then waits), so it always gets to judge.
        """
        tick = min(1.0, self._s.stall_timeout / 4, self._s.ping_interval)
        next_ping = time.monotonic() + self._s.ping_interval
        while not conn.ended.is_set():
            await asyncio.sleep(tick)
            now = time.monotonic()
            self._resumption.check_handover(conn)
            evidence = conn.stall(now, self._s.stall_timeout)
            if evidence is not None:
                self._stalled(conn, evidence, now)
                return
            if socket is not None and now >= next_ping:
                next_ping = now + self._s.ping_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(tick):
                        await self._ping(socket, conn)

    def _stalled(self, conn: SocketLife, evidence: str, now: float) -> None:
        self._metrics.live_stalls.labels(evidence).inc()
        if evidence == "silence":
            log.warning("Live link stalled: nothing heard for %.1f s", now - conn.last_alive)
        else:
            log.warning("Live link stalled: no pong for %.1f s although the server still "
                        "sends; it is not reading what is sent", conn.unanswered_for(now))
        conn.finish("stall")

    def _dropped(self, reason: str) -> None:
        """A malformed part of a server message was not passed on: counted, and
        logged the 1st, 2nd, 4th, 8th... time (a broken stream must not flood the log)."""
        self._metrics.live_messages_dropped.labels(reason).inc()
        n = self._drops[reason] = self._drops.get(reason, 0) + 1
        if seldom(n):
            log.warning("malformed Live message part dropped (%s, %d so far)", reason, n)


def _read_from_an_open_socket(exc: genai_errors.APIError, socket: LiveSocket | None) -> bool:
    """The SDK raises `APIError` both for a closed socket and for a message it read
    that holds nothing it knows but a "code" (`{"code": 1007}` as a text frame): only
    the first ends the connection (and, for some codes, the session with it)."""
    if isinstance(exc.__context__, websockets.exceptions.ConnectionClosed):
        return False
    return socket is not None and socket.is_open

"""The fake Live endpoint itself: TLS on loopback, the handshake, setup, and the parts.

It checks the path and key before the upgrade (404, 403), reads the setup
(1007 for anything the service would refuse), finds or starts the session,
and hands each connection to its parts: `ClientInput` for what the client
sends, `TurnScript` for what the model says, `FaultBoard` for what goes wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

import trustme
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from simulator.live_server import protocol
from simulator.live_server.client_input import ClientInput
from simulator.live_server.connection import FrameHookConnection, LiveConnection
from simulator.live_server.faults import ArmedFault, Fault, FaultBoard, FaultSpec, Trigger
from simulator.live_server.http_door import HttpRouter, door_factory
from simulator.live_server.protocol import ProtocolError, field
from simulator.live_server.records import ConnectionRecord, Recordings, RejectedHandshake
from simulator.live_server.sessions import SessionBook, SessionState
from simulator.live_server.turns import TurnScript
from simulator.live_server.vad import EndOfUtteranceDetector
from simulator.scenario import Scenario, default_scenario

log = logging.getLogger("simulator.live_server")  # the fake's parts log under its name

_MAX_MESSAGE_BYTES = 16 * 2**20
_TASK_CANCEL_TIMEOUT = 5.0


class FakeLiveServer(Recordings):
    """The fake Live endpoint. Use as ``async with FakeLiveServer(...) as server``.

    What it saw is in its recordings (:class:`Recordings`).

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
        http_router: serves the plain HTTP requests it claims on the same port
            (``simulator.interactions.FakeInteractions``); None = WebSocket only.
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
        http_router: HttpRouter | None = None,
    ) -> None:
        if not 10.0 <= chunk_ms <= 1000.0:
            raise ValueError("chunk_ms must be between 10 and 1000")
        if record_limit < 1:
            raise ValueError("record_limit must be >= 1")
        super().__init__(record_limit)
        self.api_key = api_key
        self.scenario = scenario if scenario is not None else default_scenario()
        self.models: frozenset[str] | None = (
            frozenset(protocol.model_id(m) for m in models) if models is not None else None
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
        self._requested_port = port
        self._compression = compression
        self.http_router = http_router
        self._cert_dir_arg = Path(cert_dir) if cert_dir is not None else None
        self._temp_dir: Path | None = None

        self._book = SessionBook()
        self.sessions: dict[str, SessionState] = self._book.sessions
        self._faults = FaultBoard(self)
        self._input = ClientInput(self, self._faults)
        self._turns = TurnScript(self, self, self._faults)
        self._conns: list[LiveConnection] = []
        self._next_index = 0
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
            create_connection=(FrameHookConnection if self.http_router is None
                               else door_factory(self.http_router)),
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("fake Live server listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            for conn in list(self._conns):
                if conn.quiet or conn.deaf or conn.record.setup_hung:
                    conn.ws.transport.abort()
            if self.http_router is not None:
                await self.http_router.close()
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
        return self._book.for_handle(handle)

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
        interval: float = 0.25,
        drop_after: float | None = None,
    ) -> int | None:
        """Apply a fault now; returns the connection index hit (None for next-N faults).

        GOAWAY uses ``time_left``; CLOSE uses ``code``/``reason``; STOP_READING
        uses ``interval`` and ``drop_after``; REJECT_KEY,
        REJECT_RESUME and SETUP_HANG use ``count`` (next N connections);
        REJECT_SETUP uses ``count``, ``code`` and ``reason``.
        Connection faults hit ``connection`` (an index) or the live one.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        if self._faults.queue(fault, count, code, reason):
            return None
        conn = self._find_conn(connection)
        if conn is None:
            raise RuntimeError("no live connection to inject a fault into")
        await self._faults.apply(conn, FaultSpec(fault, time_left=time_left, code=code,
                                                 reason=reason, interval=interval,
                                                 drop_after=drop_after))
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
        interval: float = 0.25,
        drop_after: float | None = None,
    ) -> ArmedFault:
        """Arm a connection fault to fire at the Nth ``trigger`` event (one-shot).

        Counting starts when armed and is per connection; ``connection``
        restricts it to one connection index. ``interval`` and ``drop_after``
        are STOP_READING's (see :class:`Fault`).
        """
        spec = FaultSpec(fault, time_left=time_left, code=code, reason=reason,
                         interval=interval, drop_after=drop_after)
        return self._faults.arm(fault, trigger, n, spec, connection)

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
            await conn.send(dict(message))
        return conn.index

    def disarm_all(self) -> None:
        """Forget every armed fault and next-N counter."""
        self._faults.disarm_all()

    def _current_conn(self) -> LiveConnection | None:
        for conn in reversed(self._conns):
            if conn.live and not conn.closing and not conn.ended:
                return conn
        return None

    def _find_conn(self, index: int | None) -> LiveConnection | None:
        if index is None:
            return self._current_conn()
        for conn in self._conns:
            if conn.index == index and not conn.ended:
                return conn
        return None

    # --------------------------------------------------------------- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Check path and API key before the WebSocket upgrade (404 / 403)."""
        path, _, query = request.path.partition("?")
        if protocol.PATH_RE.fullmatch(path) is None:
            self.rejected_handshakes.append(RejectedHandshake(time.monotonic(), 404, path))
            self.notify()
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        keys = request.headers.get_all("x-goog-api-key")
        key: str | None = keys[0] if keys else None
        if key is None:
            key = parse_qs(query).get("key", [None])[0]
        if self._faults.take_reject_key():
            return self._forbid(connection, path)
        if self.api_key is not None and (
            key is None or not hmac.compare_digest(key.encode(), self.api_key.encode())
        ):
            return self._forbid(connection, path)
        return None

    def _forbid(self, connection: ServerConnection, path: str) -> Response:
        self.rejected_handshakes.append(RejectedHandshake(time.monotonic(), 403, path))
        self.notify()
        return connection.respond(
            HTTPStatus.FORBIDDEN, "API key not valid. Please pass a valid API key.\n"
        )

    # -------------------------------------------------------------- connection

    async def _handle(self, ws: ServerConnection) -> None:
        """One WebSocket connection, from setup to close."""
        conn = self._open(ws)
        rec = conn.record
        try:
            await self._serve(conn)
        except ConnectionClosed:
            pass
        except ProtocolError as exc:
            rec.error = exc.reason
            await conn.close(exc.code, exc.reason)
        except Exception as exc:  # a bug here must not kill the server
            log.exception("fake Live server: connection %d failed", rec.index)
            self.internal_errors.append(f"connection {rec.index}: {exc!r}")
            rec.error = repr(exc)
            await conn.close(1011, protocol.DEFAULT_REASONS[1011])
        finally:
            await self._teardown(conn)

    def _open(self, ws: ServerConnection) -> LiveConnection:
        """Record a new connection and give it its runtime side."""
        assert ws.request is not None
        path = ws.request.path.partition("?")[0]
        match = protocol.PATH_RE.fullmatch(path)
        rec = self.new_connection(
            self._next_index, match.group(1) if match else "", path, time.monotonic()
        )
        self._next_index += 1
        detector = EndOfUtteranceDetector(
            threshold_rms=self.speech_threshold_rms,
            silence_ms=self.silence_ms,
            min_speech_ms=self.min_speech_ms,
        )
        conn = LiveConnection(ws, rec, detector, self, self._book)
        self._conns.append(conn)
        if isinstance(ws, FrameHookConnection):
            ws.on_frame = functools.partial(self._faults.on_frame, conn)
        self.notify()
        return conn

    async def _serve(self, conn: LiveConnection) -> None:
        """Setup, then the client's messages until the connection ends."""
        try:
            raw = await asyncio.wait_for(conn.ws.recv(), timeout=self.setup_timeout_s)
        except TimeoutError:
            raise ProtocolError(1008, "setup message not received in time") from None
        msg = conn.read(raw)
        kind = protocol.kind_of(msg)
        conn.record_received(kind, msg)
        setup = protocol.read_setup(msg, kind, conn.record, self.models)
        if (refusal := self._faults.take_reject_setup()) is not None:
            raise ProtocolError(*refusal)
        if self._faults.take_setup_hang():
            await self._hang(conn)
            return
        await self._go_live(conn, setup)
        async for raw in conn.ws:
            await self._input.on_message(conn, raw)

    async def _hang(self, conn: LiveConnection) -> None:
        """SETUP_HANG: keep reading (and recording), never answer."""
        conn.record.setup_hung = True
        self.notify()
        async for raw in conn.ws:
            with contextlib.suppress(ProtocolError):
                msg = conn.read(raw)
                conn.record_received(protocol.kind_of(msg), msg)

    async def _go_live(self, conn: LiveConnection, setup: Mapping[str, Any]) -> None:
        """Find or start the session, answer the setup, start the model's turns."""
        rec = conn.record
        session = await self._session_for(conn, rec.requested_handle)
        conn.session = session
        session.connection_indices.append(rec.index)
        rec.session_id = session.id
        _configure(conn, setup)
        await conn.send({"setupComplete": {}})
        rec.setup_completed_at = time.monotonic()
        conn.live = True
        self.notify()
        if conn.resumption_enabled:
            await conn.send_resumption(resumable=True)
        await self._faults.fire(conn, Trigger.SETUP_COMPLETE)
        conn.spawn(self._turns.run(conn), "turn-loop")
        if self.connection_lifetime_s is not None:
            conn.spawn(
                self._faults.lifetime(conn, self.connection_lifetime_s, self.goaway_lead_s),
                "lifetime",
            )

    async def _session_for(self, conn: LiveConnection, handle: str | None) -> SessionState:
        if handle is None:
            return self._book.new(
                lambda: {c.session.id for c in self._conns if c.session is not None}
            )
        if self._faults.take_reject_resume():
            doomed = self._book.for_handle(handle)
            if doomed is not None:
                self._book.forget(doomed)
            raise ProtocolError(1007, "Invalid session resumption handle.")
        session = self._book.for_handle(handle)
        if session is None:
            raise ProtocolError(1007, "Invalid session resumption handle.")
        for other in self._conns:
            if other is not conn and other.session is session and not other.ended:
                if self.reject_resume_while_open:
                    raise ProtocolError(1011, "Session is still in use by another connection.")
                other.closing = True
                other.spawn(other.close(1000, "Session resumed elsewhere"), "takeover")
        conn.record.resumed_handle = handle
        return session

    async def _teardown(self, conn: LiveConnection) -> None:
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
        protocol_state = ws.protocol
        if protocol_state.close_sent is not None and not conn.quiet:
            rec.close_sent = (protocol_state.close_sent.code, protocol_state.close_sent.reason)
        if protocol_state.close_rcvd is not None:
            rec.close_received = (protocol_state.close_rcvd.code, protocol_state.close_rcvd.reason)
        rec.ended_at = time.monotonic()
        with contextlib.suppress(ValueError):
            self._conns.remove(conn)
        self.notify()


def _configure(conn: LiveConnection, setup: Mapping[str, Any]) -> None:
    """Remember which optional behaviours the setup asked for."""
    conn.want_input_transcription = field(setup, "input_audio_transcription") is not None
    conn.want_output_transcription = field(setup, "output_audio_transcription") is not None
    conn.resumption_enabled = field(setup, "session_resumption") is not None
    ric = field(setup, "realtime_input_config")
    if isinstance(ric, dict):
        aad = field(ric, "automatic_activity_detection")
        if isinstance(aad, dict) and field(aad, "disabled") is True:
            conn.auto_vad = False
        if field(ric, "activity_handling") == "NO_INTERRUPTION":
            conn.barge_in_allowed = False
    session = conn.session
    assert session is not None
    si = field(setup, "system_instruction")
    if si is not None:
        session.system_instruction = si
    tools = field(setup, "tools")
    if tools is not None:
        session.tools = tools

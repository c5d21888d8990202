"""Loopback HTTP for `/healthz` and `/metrics`, with no web framework.

Two read-only endpoints do not justify a dependency, and a hand-written server
lets every limit be explicit: a bounded request head, a read deadline, a cap on
concurrent connections and one request per connection. Whatever a client sends,
the worst it can cost is one small, short-lived task, and `close()` ends them all.

Loopback is not a trust boundary on a kiosk: a browser page can reach it through
DNS rebinding, so only loopback Host values are served. At the cap, the connection
that has sat longest without a complete request is dropped to make room, so a
crowd of idle sockets cannot lock out (or fail) the next health probe. What is
served never holds conversation text (see `_public`), nor a registered secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from types import TracebackType
from typing import Any

from daemon.config import OpsSettings
from daemon.ops.logsetup import scrub
from daemon.ops.metrics import Metrics

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]
"""Returns (healthy, details); details are served as JSON next to the status."""

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

MAX_HEAD_BYTES = 8 * 1024
MAX_BODY_BYTES = 8 * 1024
READ_TIMEOUT = 5.0
MAX_CONNECTIONS = 16

_ALLOWED_METHODS = ("GET", "HEAD")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/1\.[01]")
_LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)
ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# What marks a key as conversation (what was said or heard), never served: these
# anywhere in the key, and the short words as whole words of it (snake, kebab, camel).
_CONVERSATION_PARTS = ("transcript", "utterance", "conversation", "dialog", "caption")
_CONVERSATION_WORDS = frozenset({
    "text", "texts", "words", "speech", "said", "heard", "prompt", "reply", "replies",
})
_KEY_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 64 * 1024


class _BadRequest(Exception):
    """The request cannot be parsed or breaks a limit; answered with 400."""


class _Request:
    __slots__ = ("authority", "hosts", "method", "path", "version")

    def __init__(
        self, method: str, path: str, version: str, hosts: list[str], authority: str | None
    ) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.hosts = hosts  # every Host header's value, in order
        self.authority = authority  # host[:port] of an absolute-form target, else None


class _Connection:
    """One client, and whether it may be dropped to make room (no request yet, or done)."""

    __slots__ = ("idle", "opened", "shed", "writer")

    def __init__(self, writer: asyncio.StreamWriter, opened: float) -> None:
        self.writer = writer
        self.opened = opened
        self.idle = True
        self.shed = False


class _Response:
    __slots__ = ("body", "content_type", "extra_headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = TEXT_CONTENT_TYPE,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.extra_headers = extra_headers

    def encode(self, include_body: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.extra_headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + self.body if include_body else head


def _text(status: int, message: str) -> _Response:
    return _Response(status, (message + "\n").encode("utf-8"))


class HealthServer:
    """Serves /healthz and /metrics on loopback until closed.

    `port=0` binds an ephemeral port (tests); whether the daemon runs a server at
    all is the caller's decision (see `health_server_from_settings`).
    """

    def __init__(
        self,
        metrics: Metrics,
        health: HealthCheck,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._host = host
        self._requested_port = port
        self._max_head = max_head_bytes
        self._max_body = max_body_bytes
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections: set[_Connection] = set()  # admitted, not shed, not finished
        self._closing = False
        self._routes: dict[str, Callable[[], _Response]] = {
            "/healthz": self._healthz,
            "/metrics": self._render_metrics,
        }

    @property
    def port(self) -> int | None:
        """The bound port once started, else None."""
        return self._port

    @property
    def active_connections(self) -> int:
        """Connections currently being served (for tests and status)."""
        return len(self._tasks)

    async def start(self) -> int:
        """Bind and listen; returns the bound port. Raises OSError if it cannot bind."""
        if self._server is not None or self._closing:
            raise RuntimeError("HealthServer can be started once")
        self._server = await asyncio.start_server(
            self._handle, self._host, self._requested_port, reuse_address=True
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("health server listening", extra={"host": self._host, "port": self._port})
        return self._port

    async def close(self) -> None:
        """Stop listening and end every open connection; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Abort first so nothing waits on a slow peer, then cancel and reap.
        for conn in list(self._connections):
            conn.writer.transport.abort()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- one connection -------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self._closing:
            writer.transport.abort()
            return
        conn = _Connection(writer, asyncio.get_running_loop().time())
        self._tasks.add(task)
        clean = False
        try:
            if self._admit(conn):
                await self._serve(conn, reader, writer)
            else:  # every slot is writing an answer, which lasts a moment
                conn.idle = False
                await self._send(writer, _text(503, "busy, try again"), include_body=True)
                await self._linger(reader, writer)
            clean = not conn.shed
        except (ConnectionError, TimeoutError):
            pass  # the peer went away or stopped reading: nothing left to say
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # close() ends it: returning keeps asyncio's stream callback (3.11) from
            # logging a traceback per open connection on every stop
        except Exception:
            log.exception("health server connection failed")
        finally:
            self._connections.discard(conn)
            self._tasks.discard(task)
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    def _admit(self, conn: _Connection) -> bool:
        """Make room for `conn` at the cap by dropping the longest-idle connection.

        Only a connection with no request yet (or one already answered) is dropped:
        a probe that has sent its request is never cut off by a newcomer. False when
        every slot is busy answering, which lasts no longer than writing a response.
        """
        if len(self._connections) >= self._max_connections:
            idle = [c for c in self._connections if c.idle]
            if not idle:
                self._refused("busy")
                return False
            victim = min(idle, key=lambda c: c.opened)
            victim.shed = True
            self._connections.discard(victim)
            victim.writer.transport.abort()  # its reader sees EOF; its task ends at once
            self._refused("idle_shed")
        self._connections.add(conn)
        return True

    def _refused(self, reason: str) -> None:
        self._metrics.health_refused.labels(reason).inc()

    async def _serve(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                request = await self._read_request(reader)
        except TimeoutError:
            if conn.shed:
                return
            self._refused("timeout")
            conn.idle = False
            await self._send(writer, _text(408, "request timeout"), include_body=True)
            return
        except _BadRequest as err:
            if conn.shed:
                return
            log.debug("health server: bad request: %s", err)
            self._refused("bad_request")
            await self._reject(conn, reader, _text(400, f"bad request: {err}"))
            return
        if request is None or conn.shed:
            return  # connected and closed without a request, or dropped to make room
        conn.idle = False
        refusal = _host_refusal(request)
        if refusal is not None:
            reason, response = refusal
            log.debug("health server: %s", response.body.decode().strip())
            self._refused(reason)
            await self._reject(conn, reader, response)
            return
        route = self._routes.get(request.path)
        if route is None:
            response = _text(404, "not found")
        elif request.method not in _ALLOWED_METHODS:
            response = _text(405, "method not allowed")
            response.extra_headers = (("Allow", ", ".join(_ALLOWED_METHODS)),)
        else:
            try:
                response = route()
            except Exception:
                log.exception("health server: %s failed", request.path)
                response = _text(500, "internal error")
        await self._send(writer, response, include_body=request.method != "HEAD")

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        """Read one request head (and discard any small body); None on a silent EOF."""
        buf = bytearray()
        while True:
            end = _head_end(buf)
            if end >= 0:
                break
            if len(buf) > self._max_head:
                raise _BadRequest("request head too large")
            chunk = await reader.read(4096)
            if not chunk:
                if buf:
                    raise _BadRequest("incomplete request head")
                return None
            buf += chunk
        if end > self._max_head:
            raise _BadRequest("request head too large")
        request, body_length = _parse_head(bytes(buf[:end]))
        if body_length > self._max_body:
            raise _BadRequest("request body too large")
        already = len(buf) - end
        if body_length > already:
            try:
                await reader.readexactly(body_length - already)
            except asyncio.IncompleteReadError:
                raise _BadRequest("incomplete request body") from None
        return request

    async def _reject(
        self, conn: _Connection, reader: asyncio.StreamReader, response: _Response
    ) -> None:
        """Answer an error, then linger as an idle connection that can be shed."""
        conn.idle = False
        await self._send(conn.writer, response, include_body=True)
        conn.idle = True
        await self._linger(reader, conn.writer)

    async def _send(
        self, writer: asyncio.StreamWriter, response: _Response, *, include_body: bool
    ) -> None:
        writer.write(response.encode(include_body))
        async with asyncio.timeout(self._read_timeout):
            await writer.drain()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then drain what the client still sends, so it reads our answer.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the response before the client reads it.
        """
        if writer.can_write_eof():
            writer.write_eof()
        drained = 0
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(_LINGER_SECONDS):
                while drained < _LINGER_BYTES:
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    drained += len(chunk)

    # -- endpoints --------------------------------------------------------------

    def _healthz(self) -> _Response:
        try:
            healthy, details = self._health()
        except Exception:
            log.exception("health check raised")
            healthy, details = False, {"error": "health check failed"}
        body = json.dumps(
            {"status": "ok" if healthy else "unhealthy", "details": _public(details)},
            default=lambda value: scrub(str(value)),
            sort_keys=True,
        )
        return _Response(200 if healthy else 503, body.encode("utf-8") + b"\n", JSON_CONTENT_TYPE)

    def _render_metrics(self) -> _Response:
        text = self._metrics.render().decode("utf-8")
        return _Response(200, _scrub_exposition(text).encode("utf-8"), METRICS_CONTENT_TYPE)


def _scrub_exposition(text: str) -> str:
    """Names, labels and help scrubbed; sample values never: a value is a number the
    daemon counted, and rewriting digits in it breaks the scrape for every reader."""
    lines = []
    for line in text.split("\n"):
        head, sep, value = line.rpartition(" ") if not line.startswith("#") else ("", "", line)
        lines.append(scrub(head) + sep + value if sep else scrub(line))
    return "\n".join(lines)


def _public(value: object) -> object:
    """`value` without conversation text at any depth, and with secrets scrubbed.

    A key naming what was said or heard (`last_user_text`, `transcript`, ...) is
    dropped unless its value is a plain number or flag: /healthz is readable by any
    local process and must never become a transcript of the household.
    """
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            name = scrub(str(key))
            if _is_conversation(name) and not isinstance(item, int | float | None):
                continue
            out[name] = _public(item)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [_public(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def _is_conversation(key: str) -> bool:
    """Whether a key names conversation text."""
    lowered = key.lower()
    return any(part in lowered for part in _CONVERSATION_PARTS) or any(
        word.lower() in _CONVERSATION_WORDS for word in _KEY_WORD.findall(key)
    )


def _host_refusal(request: _Request) -> tuple[str, _Response] | None:
    """Why the request's Host is not served (a counter reason and the answer), or None.

    A browser lured by DNS rebinding sends the attacker's name as Host; only the
    loopback names are served. HTTP/1.1 requires a Host header; HTTP/1.0 may omit it.
    """
    allowed = ", ".join(ALLOWED_HOSTS)
    if len(request.hosts) > 1:
        return "bad_host", _text(400, "bad request: more than one Host header")
    if not request.hosts and request.version == "HTTP/1.1":
        return "no_host", _text(400, f"bad request: missing Host header (use one of {allowed})")
    for value in (*request.hosts, *filter(None, [request.authority])):
        if not _LOOPBACK_HOST.fullmatch(value):
            return "bad_host", _text(403, f"forbidden: only Host {allowed} is served")
    return None


def _head_end(buf: bytearray) -> int:
    """Index just past the blank line ending the head (CRLF, or bare LF), or -1."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf + 2 <= lf):
        return crlf + 4
    return lf + 2 if lf >= 0 else -1


def _parse_head(head: bytes) -> tuple[_Request, int]:
    """Parse a request line and headers strictly; returns the request and body length."""
    lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or not lines[0].isascii():
        raise _BadRequest("malformed request line")
    method, target, version, authority = _request_line(lines[0].decode("ascii"))
    path = target.split("?", 1)[0].split("#", 1)[0]
    lengths, hosts = _headers(lines[1:])
    return _Request(method, path, version, hosts, authority), _body_length(lengths)


def _request_line(line: str) -> tuple[str, str, str, str | None]:
    """Method, origin-form target, version, and the authority of an absolute-form target."""
    parts = line.split(" ")
    if len(parts) != 3:
        raise _BadRequest("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _VERSION.fullmatch(version):
        raise _BadRequest("malformed request line")
    authority: str | None = None
    if target.startswith(("http://", "https://")):
        start = target.index("//") + 2
        slash = target.find("/", start)
        authority = target[start:slash] if slash >= 0 else target[start:]
        target = target[slash:] if slash >= 0 else "/"
    if not target.startswith("/") or any(c.isspace() or ord(c) < 0x21 for c in target):
        raise _BadRequest("malformed request target")
    return method, target, version, authority


def _headers(lines: list[bytes]) -> tuple[set[str], list[str]]:
    """The Content-Length values and Host headers; no Transfer-Encoding is accepted."""
    lengths: set[str] = set()
    hosts: list[str] = []
    for raw in lines:
        line = raw.decode("latin-1")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _BadRequest("malformed header")
        value = value.strip(" \t")
        lowered = name.lower()
        if lowered == "transfer-encoding":
            raise _BadRequest("request bodies with transfer-encoding are not accepted")
        if lowered == "content-length":
            lengths.update(v.strip(" \t") for v in value.split(","))
        elif lowered == "host":
            hosts.append(value)
    return lengths, hosts


def _body_length(lengths: set[str]) -> int:
    """The one Content-Length all headers agree on (0 without one)."""
    if not lengths:
        return 0
    if len(lengths) != 1:
        raise _BadRequest("conflicting content-length")
    (text,) = lengths
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # "²" is a digit too
        raise _BadRequest("malformed content-length")
    return int(text)


def health_server_from_settings(
    ops: OpsSettings, metrics: Metrics, health: HealthCheck
) -> HealthServer | None:
    """The configured server, not yet started, or None when `ops.health_port` is 0 (off)."""
    if ops.health_port == 0:
        return None
    return HealthServer(metrics, health, ops.health_port)

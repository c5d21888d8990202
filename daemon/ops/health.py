"""Loopback HTTP for `/healthz` and `/metrics`, with no web framework.

Two read-only endpoints do not justify a dependency, and a hand-written server
lets every limit be explicit: a bounded request head, a read deadline, a cap on
concurrent connections and one request per connection. Whatever a client sends,
the worst it can cost is one small, short-lived task, and `close()` ends them all.
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
_REASONS = {
    200: "OK",
    400: "Bad Request",
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
    __slots__ = ("method", "path")

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path


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
        self._writers: set[asyncio.StreamWriter] = set()
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
        for writer in list(self._writers):
            writer.transport.abort()
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
        self._tasks.add(task)
        self._writers.add(writer)
        clean = False
        try:
            if len(self._tasks) > self._max_connections:
                await self._send(writer, _text(503, "too many connections"), include_body=True)
                await self._linger(reader, writer)
            else:
                await self._serve(reader, writer)
            clean = True
        except (ConnectionError, TimeoutError):
            pass  # the peer went away or stopped reading: nothing left to say
        except Exception:
            log.exception("health server connection failed")
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                request = await self._read_request(reader)
        except TimeoutError:
            await self._send(writer, _text(408, "request timeout"), include_body=True)
            return
        except _BadRequest as err:
            log.debug("health server: bad request: %s", err)
            await self._send(writer, _text(400, f"bad request: {err}"), include_body=True)
            await self._linger(reader, writer)
            return
        if request is None:
            return  # connected and closed without a request
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
            {"status": "ok" if healthy else "unhealthy", "details": details},
            default=str,
            sort_keys=True,
        )
        return _Response(200 if healthy else 503, body.encode("utf-8") + b"\n", JSON_CONTENT_TYPE)

    def _render_metrics(self) -> _Response:
        return _Response(200, self._metrics.render(), METRICS_CONTENT_TYPE)


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
    parts = lines[0].decode("ascii").split(" ")
    if len(parts) != 3:
        raise _BadRequest("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _VERSION.fullmatch(version):
        raise _BadRequest("malformed request line")
    if target.startswith(("http://", "https://")):
        slash = target.find("/", target.index("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    if not target.startswith("/") or any(c.isspace() or ord(c) < 0x21 for c in target):
        raise _BadRequest("malformed request target")
    path = target.split("?", 1)[0].split("#", 1)[0]

    lengths: set[str] = set()
    for raw in lines[1:]:
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
    body_length = 0
    if lengths:
        if len(lengths) != 1:
            raise _BadRequest("conflicting content-length")
        (text,) = lengths
        if not text.isdigit() or len(text) > 12:
            raise _BadRequest("malformed content-length")
        body_length = int(text)
    return _Request(method, path), body_length


def health_server_from_settings(
    ops: OpsSettings, metrics: Metrics, health: HealthCheck
) -> HealthServer | None:
    """The configured server, not yet started, or None when `ops.health_port` is 0 (off)."""
    if ops.health_port == 0:
        return None
    return HealthServer(metrics, health, ops.health_port)

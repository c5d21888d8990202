"""Plain HTTP/1.1 for the fake Interactions endpoint: parse a request head, render a response.

Pure (no sockets) so it is unit-tested; `serve_connection` is the thin loop that
reads requests off a stream the Live port handed over (keep-alive, one request
at a time, bodies by Content-Length only, as httpx sends them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from daemon.errors import EdgeAgentError

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 2**20


class HttpError(EdgeAgentError):
    """A request the fake cannot read: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON (HttpError 400 if it is not)."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"Invalid JSON payload received. {exc}") from None


@dataclass(frozen=True)
class HttpResponse:
    """A JSON response (``body`` None = empty)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def path_of(head: bytes) -> str:
    """The path of a request head's first line ('' when it is not HTTP)."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3:
        return ""
    return parts[1].decode("latin-1").partition("?")[0]


def parse_head(head: bytes) -> HttpRequest:
    """Request line and headers (through the blank line), body not yet read."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:40]!r}")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(411, "chunked bodies are not supported; send Content-Length")
    path, _, query = target.partition("?")
    return HttpRequest(method.upper(), path, parse_qs(query), headers)


def content_length(request: HttpRequest) -> int:
    """The declared body length (0 when absent); HttpError for a bad or huge one."""
    raw = request.headers.get("content-length", "0")
    if not raw.isdigit():
        raise HttpError(400, "bad Content-Length")
    n = int(raw)
    if n > MAX_BODY_BYTES:
        raise HttpError(413, "body too large")
    return n


def render(response: HttpResponse, *, keep_alive: bool) -> bytes:
    """Status line, headers and JSON body as bytes."""
    body = b"" if response.body is None else json.dumps(response.body).encode()
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "Content-Length": str(len(body)),
        "Connection": "keep-alive" if keep_alive else "close",
        **response.headers,
    }
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


def google_error(status: int, message: str) -> HttpResponse:
    """An error body shaped like Google's: ``{"error": {code, message, status}}``."""
    names = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
             503: "UNAVAILABLE"}
    return HttpResponse(status, {"error": {"code": status, "message": message,
                                           "status": names.get(status, "UNKNOWN")}})


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """Answer requests on one connection until the client closes it or asks to."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            try:
                request = parse_head(head)
                body = await reader.readexactly(content_length(request))
                request = HttpRequest(request.method, request.path, request.query,
                                      request.headers, body)
            except HttpError as exc:
                writer.write(render(google_error(exc.status, exc.message), keep_alive=False))
                await writer.drain()
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            response = await handler(request)
            keep = request.headers.get("connection", "").lower() != "close"
            writer.write(render(response, keep_alive=keep))
            await writer.drain()
            if not keep:
                return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), timeout=2.0)

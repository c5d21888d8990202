"""The fake Interactions service: routes, the API key, records, and the connections.

It does not listen by itself: :class:`simulator.live_server.FakeLiveServer`
hands it every request whose path is ``/{version}/interactions...`` on the
Live port (``http_router=``), as the real endpoint serves both on one host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.interactions.http import (
    HttpRequest,
    HttpResponse,
    google_error,
    serve_connection,
)
from simulator.interactions.store import (
    ApiError,
    InteractionStore,
    Outcome,
    StoredInteraction,
    TaskScript,
    to_json,
)
from simulator.interactions.turns import ModelTurn

_ROUTE = re.compile(r"/(v1(?:alpha|beta)?)/interactions(?:/([A-Za-z0-9_.-]+)(/cancel)?)?")


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake answered."""

    at: float
    method: str
    path: str
    status: int
    body: Any


class FakeInteractions:
    """The REST side of the fake endpoint: create, get, cancel, delete.

    Args:
        api_key: the accepted ``x-goog-api-key``; None accepts any.
        default_script: what an interaction does unless :meth:`queue` says otherwise.
    """

    def __init__(self, *, api_key: str | None = "fake-key",
                 default_script: TaskScript | None = None) -> None:
        self.api_key = api_key
        self.store = InteractionStore(default_script or TaskScript())
        self.requests: list[RequestRecord] = []
        self._fail_next: list[tuple[int, str | None, str]] = []
        self._changed = asyncio.Condition()
        self._serving: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------ test controls

    def queue(self, *scripts: TaskScript) -> None:
        """The next interactions created follow these scripts, in order."""
        self.store.queue(*scripts)

    def queue_turns(self, *turns: ModelTurn) -> None:
        """The next spoken turns (model interactions with audio input) follow these."""
        self.store.turn_scripts.extend(turns)

    def fail_next(self, *statuses: int, method: str | None = None,
                  message: str = "Injected failure.") -> None:
        """The next requests (any route, or only those of `method`) answer these HTTP
        statuses, in order, with `message` as Google's reason."""
        self._fail_next.extend((status, method, message) for status in statuses)

    async def finish(self, ident: str, outcome: Outcome | None = None) -> None:
        """End a held interaction now (as scripted, or as ``outcome``)."""
        self.store.finish(ident, time.monotonic(), outcome)
        await self._notify()

    @property
    def interactions(self) -> dict[str, StoredInteraction]:
        """Every interaction not deleted, by id."""
        return self.store.interactions

    @property
    def deleted(self) -> dict[str, StoredInteraction]:
        """Every interaction deleted by a client, by id, as it was then."""
        return self.store.deleted

    def count(self, method: str, suffix: str = "") -> int:
        """How many requests of ``method`` whose path ends with ``suffix`` were answered."""
        return sum(1 for r in self.requests if r.method == method and r.path.endswith(suffix))

    async def wait_until(self, predicate: Callable[[], bool], within: float = 30.0) -> None:
        """Wait (bounded) until ``predicate()`` holds; re-checked after every request."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    # --------------------------------------------------------- the router hooks

    def claims(self, path: str) -> bool:
        """Whether a request path belongs to this service (else it is the Live socket's)."""
        return _ROUTE.fullmatch(path) is not None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one handed-over connection until it closes."""
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        self._writers.add(writer)
        try:
            await serve_connection(reader, writer, self.handle)
        finally:
            self._serving.discard(task)
            self._writers.discard(writer)

    async def close(self) -> None:
        """Drop every open connection and wait (bounded) for their loops to end."""
        for writer in list(self._writers):
            writer.transport.abort()  # each loop then reads EOF and ends by itself
        tasks = list(self._serving)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            for task in stuck:
                task.cancel()

    # ------------------------------------------------------------------ routes

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request (never raises) and record it."""
        try:
            response = self._route(request)
        except ApiError as exc:
            response = google_error(exc.status, exc.message)
        except Exception as exc:  # a bug here must not kill the connection
            response = google_error(500, f"fake Interactions bug: {exc!r}")
        body: Any = None
        with contextlib.suppress(Exception):
            body = request.json()
        self.requests.append(RequestRecord(time.monotonic(), request.method, request.path,
                                           response.status, body))
        await self._notify()
        return response

    def _route(self, request: HttpRequest) -> HttpResponse:
        match = _ROUTE.fullmatch(request.path)
        if match is None:
            raise ApiError(404, f"No route for {request.path}.")
        self._check_key(request)
        for i, (status, only, message) in enumerate(self._fail_next):
            if only is None or only == request.method:
                del self._fail_next[i]
                raise ApiError(status, message)
        ident, cancel = match.group(2), match.group(3)
        now = time.monotonic()
        method = request.method
        if ident is None and method == "POST":
            return HttpResponse(200, to_json(self.store.create(request.json(), now)))
        if ident is not None and cancel and method == "POST":
            return HttpResponse(200, to_json(self.store.cancel(ident, now)))
        if ident is not None and not cancel and method == "GET":
            return HttpResponse(200, to_json(self.store.read(ident, now)))
        if ident is not None and not cancel and method == "DELETE":
            self.store.delete(ident)
            return HttpResponse(200, {})
        raise ApiError(405, f"{method} is not allowed on {request.path}.")

    def _check_key(self, request: HttpRequest) -> None:
        if self.api_key is None:
            return
        key = request.headers.get("x-goog-api-key") or request.query.get("key", [""])[0]
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ApiError(403, "API key not valid. Please pass a valid API key.")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

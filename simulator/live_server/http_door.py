"""Plain HTTP on the Live port: requests a router claims leave the WebSocket path.

The real endpoint serves the Live socket and the REST APIs on one host and
port; so does the fake. websockets' request parser refuses bodies, so the
head is read first: a path the router claims (``/v1beta/interactions...``)
gets the transport as an asyncio stream; anything else goes on to websockets
untouched. With no router the Live server does not use this class at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from simulator.live_server.connection import FrameHookConnection

_MAX_HEAD = 64 * 1024


class HttpRouter(Protocol):
    """What serves the claimed requests (``simulator.interactions.FakeInteractions``)."""

    def claims(self, path: str) -> bool:
        """Whether a request path is this router's."""
        ...

    def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        """Serve one handed-over connection."""
        ...

    async def close(self) -> None:
        """Drop its connections (the Live server is stopping)."""
        ...


class _Detached(asyncio.Transport):
    """Left behind for websockets once the real transport went to the router."""

    def abort(self) -> None:
        """Nothing to abort: the router owns the socket now."""

    def close(self) -> None:
        """Nothing to close: the router owns the socket now."""

    def is_closing(self) -> bool:
        """Always: websockets must not write here."""
        return True


class HttpDoorConnection(FrameHookConnection):
    """A server connection that first looks at the request head (see the module)."""

    router: HttpRouter | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytearray | None = bytearray()

    def data_received(self, data: bytes) -> None:
        """Buffer the head, then hand over or pass everything on to websockets."""
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        if b"\r\n\r\n" not in self._head and len(self._head) < _MAX_HEAD:
            return
        buffered, self._head = bytes(self._head), None
        line = buffered.split(b"\r\n", 1)[0].split(b" ")
        path = line[1].decode("latin-1").partition("?")[0] if len(line) == 3 else ""
        if self.router is not None and self.router.claims(path):
            self._hand_over(self.router, buffered)
        else:
            super().data_received(buffered)

    def _hand_over(self, router: HttpRouter, buffered: bytes) -> None:
        transport = self.transport
        reader = asyncio.StreamReader(limit=_MAX_HEAD)
        stream = asyncio.StreamReaderProtocol(reader, router.serve)
        transport.set_protocol(stream)
        stream.connection_made(transport)
        stream.data_received(buffered)
        # websockets' handshake wakes, finds no request, and aborts this stub.
        self.transport = _Detached()
        if not self.connection_lost_waiter.done():
            self.connection_lost_waiter.set_result(None)


def door_factory(router: HttpRouter) -> type[HttpDoorConnection]:
    """A ``create_connection`` class for ``serve()`` whose connections know ``router``."""
    return type("BoundHttpDoorConnection", (HttpDoorConnection,), {"router": router})

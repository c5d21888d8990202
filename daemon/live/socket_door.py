"""The one door to google-genai's private websocket, and what the link needs through it.

The SDK sends and receives the Live API's messages, but it keeps its websocket
private (`AsyncSession._ws`). The link needs that socket for three things the
SDK does not offer: ping-confirmed delivery (a pong proves the server read what
was sent before the ping, so unconfirmed answers are resent after a resume),
raw audio frames (the SDK's per-call validation costs more CPU than the rest of
the uplink, bench/live_uplink.py) written at once when nothing needs waiting for
(`send_text_now`: no coroutine or sender task per message, bench/uplink_peers.py),
and aborting a stalled connection.

This module is the only place that touches the SDK's private attributes. When
a new SDK release no longer has them, it says so instead of failing quietly:
a WARNING once, `edge_live_sdk_socket_unavailable_total` per connection, and
`check()` for `edge-agent doctor`. The link then works on without pings (what
it sent is taken as delivered), as it must on any SDK.

The link talks to `LiveSocket`, not to websockets or the SDK, so another
transport (picows, say) can stand behind it; `SdkSocket` is the implementation
behind google-genai's session.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from typing import Any, Protocol, cast

from google.genai import live as genai_live
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.protocol import State

from daemon.ops.metrics import Metrics

log = logging.getLogger(__name__)

UNAVAILABLE = (
    "the installed google-genai keeps no websockets connection at AsyncSession._ws; "
    "without it no ping confirms what was sent (tool answers and audio are taken as "
    "delivered), and audio goes through the SDK's slower path"
)


class LiveSocket(Protocol):
    """The transport under a Live session, as far as the link uses it directly.

    Errors on a closed socket are websockets' `ConnectionClosed`, as from the SDK.
    """

    @property
    def is_open(self) -> bool:
        """True while messages can be sent."""
        ...

    @property
    def close_replied(self) -> bool:
        """The peer answered a close: it read everything sent before it."""
        ...

    async def send_text(self, frame: bytes) -> None:
        """Send one text frame as it is (a message already encoded, UTF-8)."""
        ...

    def send_text_now(self, frame: bytes) -> bool:
        """Write one text frame (UTF-8) at once if that needs no waiting; False if not
        (closing, flow control, another send under way): then use `send_text`.

        Lets the link send from the caller's turn of the event loop instead of
        waking a sender task per message (bench/uplink_peers.py).
        """
        ...

    async def ping(self) -> asyncio.Future[float]:
        """Send a ping; the future is done when its pong arrives (with the round trip).

        A pong proves the peer read everything sent before the ping.
        """
        ...

    async def close(self) -> None:
        """Close cleanly (1000) and wait for the peer's reply, briefly."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        ...


class SdkSocket:
    """`LiveSocket` over the websockets connection inside a google-genai session."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @property
    def is_open(self) -> bool:
        """True while the websocket is open."""
        return self._ws.state is State.OPEN

    @property
    def close_replied(self) -> bool:
        """The peer's close frame arrived."""
        return self._ws.protocol.close_rcvd is not None

    async def send_text(self, frame: bytes) -> None:
        """One text frame, as websockets sends it."""
        await self._ws.send(frame, text=True)

    def send_text_now(self, frame: bytes) -> bool:
        """What websockets' `send` does when it need not wait, without its coroutine and
        context manager: the frame from its Sans-I/O protocol, written to the transport."""
        ws = self._ws
        if (
            ws.protocol.state is not State.OPEN
            or ws.paused  # above the write buffer's high-water mark: send() would wait
            or ws.send_in_progress is not None
            or ws.transport.is_closing()
        ):
            return False
        ws.protocol.send_text(frame)
        ws.send_data()
        return True

    async def ping(self) -> asyncio.Future[float]:
        """websockets' ping; its waiter is done at the pong."""
        return asyncio.ensure_future(await self._ws.ping())

    async def close(self) -> None:
        """websockets' close handshake (1000), bounded by its close_timeout."""
        await self._ws.close()

    def abort(self) -> None:
        """Abort the TCP connection under the websocket."""
        self._ws.transport.abort()


def sdk_websocket(session: genai_live.AsyncSession) -> ClientConnection | None:
    """The websockets connection inside an SDK session, or None if it is not there."""
    try:
        ws = session._ws  # noqa: SLF001 - the SDK offers no pings or raw frames; see above
    except AttributeError:
        return None
    return ws if isinstance(ws, ClientConnection) else None


class SocketDoor:
    """Opens the door on each new session and reports, once, when it stays shut."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._warned = False

    def open(self, session: genai_live.AsyncSession) -> LiveSocket | None:
        """The session's socket, or None (counted, and logged the first time)."""
        ws = sdk_websocket(session)
        if ws is not None:
            return SdkSocket(ws)
        self._metrics.sdk_socket_unavailable.inc()
        if not self._warned:
            self._warned = True
            log.warning("%s (google-genai %s)", UNAVAILABLE, _sdk_version())
        return None


def check() -> tuple[bool, str]:
    """Whether the installed SDK still has what the link needs, for `edge-agent doctor`.

    Offline: a session is built around a stand-in socket (the SDK's constructor
    only stores it), and the SDK's connect must be websockets' asyncio client.
    """
    version = _sdk_version()
    probe = object()
    try:
        session = genai_live.AsyncSession(api_client=cast(Any, None), websocket=cast(Any, probe))
        kept = session._ws is probe  # noqa: SLF001 - the attribute the link depends on
    except Exception:  # a changed constructor or no attribute: the door is shut either way
        kept = False
    connects = getattr(genai_live, "ws_connect", None)  # the SDK's own name for its connect
    if not kept or connects is not websockets_connect:
        return False, f"google-genai {version}: {UNAVAILABLE}"
    return True, f"google-genai {version}: ping-confirmed delivery available"


def _sdk_version() -> str:
    try:
        return importlib.metadata.version("google-genai")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"

"""ATT notifications from the virtual radio's HCI socket straight to their subscriber.

Why: Bumble's host takes every notification through some fifteen Python layers (HCI
parse, ACL reassembly, L2CAP, an event emitter, ATT parse, the GATT client, a
`datetime.now()` for a value cache nobody reads) and formats each packet for debug
logs even with debug logging off. For one glasses stream that was about a third of
the daemon's CPU. `NotificationRouter` sits between the transport and Bumble's host:
a complete, unfragmented ATT Handle Value Notification, on a connection Bumble knows
and has no half-reassembled PDU for, to a handle one of our clients subscribed to, is
recognised from its first 12 bytes and handed to that subscriber. Every other packet
- commands, events, fragments, other PDUs, unknown handles - goes to Bumble
unchanged. Both paths are synchronous, so packets keep their order.

This is the virtual radio only: with BlueZ, the kernel and bluetoothd do this work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

__all__ = ["NotificationRouter"]

# H4 ACL packet: type, handle + flags (u16), length (u16), L2CAP length (u16), CID (u16),
# then the ATT PDU: opcode, attribute handle (u16), value.
_H4_ACL: Final = 0x02
_ATT_CID: Final = 0x0004
_ATT_HANDLE_VALUE_NOTIFICATION: Final = 0x1B
_HEADER: Final = 12
_PB_FIRST: Final = (0b00, 0b10)  # first fragment of an L2CAP PDU (non-flushable, flushable)

Deliver = Callable[[bytes], None]


class _Host(Protocol):
    """What the router needs of Bumble's `Host`: the sink it stands in front of."""

    connections: dict[int, Any]

    def on_packet(self, packet: bytes) -> None: ...


class NotificationRouter:
    """The packet sink of an HCI transport, in front of Bumble's host (see module doc)."""

    def __init__(self, host: _Host) -> None:
        self.host = host
        # connection handle -> (Bumble's host connection it was made for, value handle ->
        # subscriber); the connection object guards against a reused handle.
        self._routes: dict[int, tuple[Any, dict[int, Deliver]]] = {}
        self.routed = 0  # notifications delivered here, past Bumble's host

    def on_packet(self, packet: bytes) -> None:
        """One HCI packet from the controller: ours if it is a routed notification."""
        if (
            self._routes
            and len(packet) >= _HEADER
            and packet[0] == _H4_ACL
            and packet[9] == _ATT_HANDLE_VALUE_NOTIFICATION
            and (packet[7] | packet[8] << 8) == _ATT_CID
        ):
            flags = packet[1] | packet[2] << 8
            route = self._routes.get(flags & 0x0FFF)
            size = len(packet) - 5
            if (
                route is not None
                and (flags >> 12) & 0b11 in _PB_FIRST
                and (packet[3] | packet[4] << 8) == size
                and (packet[5] | packet[6] << 8) == size - 4
            ):
                deliver = route[1].get(packet[10] | packet[11] << 8)
                conn = self.host.connections.get(flags & 0x0FFF)
                if deliver is not None and conn is route[0] and conn.assembler.current_data is None:
                    self.routed += 1
                    deliver(packet[_HEADER:])
                    return
        self.host.on_packet(packet)

    def on_transport_lost(self) -> None:
        """The transport source tells its sink; Bumble's host must hear it."""
        lost = getattr(self.host, "on_transport_lost", None)
        if lost is not None:
            lost()

    def route(self, connection_handle: int, value_handle: int, deliver: Deliver) -> None:
        """Deliver notifications of `value_handle` on this connection to `deliver`."""
        conn = self.host.connections.get(connection_handle)
        if conn is None:
            return  # not (or no longer) connected: Bumble's path reports it
        current = self._routes.get(connection_handle)
        if current is None or current[0] is not conn:
            current = self._routes[connection_handle] = (conn, {})
        current[1][value_handle] = deliver

    def unroute(self, connection_handle: int, value_handle: int | None = None) -> None:
        """Stop routing one handle, or (None) everything on the connection."""
        if value_handle is None:
            self._routes.pop(connection_handle, None)
            return
        current = self._routes.get(connection_handle)
        if current is not None:
            current[1].pop(value_handle, None)
            if not current[1]:
                del self._routes[connection_handle]

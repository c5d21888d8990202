"""NotificationRouter: which HCI packets it hands to our subscribers, and which to Bumble.

Against Bumble's real `Host` (no controller, no transport): what the router passes on
must reach Bumble exactly as if the router were not there.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from bumble import hci
from bumble.core import PhysicalTransport
from bumble.host import Connection, DataPacketQueue, Host

from daemon.peripherals.ble.bumble_notify import NotificationRouter

pytestmark = pytest.mark.timeout(30)

HANDLE = 0x0040  # connection handle
VALUE = 0x0012  # attribute value handle


def acl(payload: bytes, *, handle: int = HANDLE, pb: int = 0b10) -> bytes:
    """One H4 ACL packet carrying `payload` (an L2CAP PDU or a piece of one)."""
    return struct.pack("<BHH", 0x02, handle | pb << 12, len(payload)) + payload


def l2cap(att: bytes, cid: int = 0x0004) -> bytes:
    return struct.pack("<HH", len(att), cid) + att


def notification(value: bytes, attribute: int = VALUE) -> bytes:
    return struct.pack("<BH", 0x1B, attribute) + value


class Bumble:
    """Bumble's host with one LE connection; keeps the L2CAP PDUs it would dispatch."""

    def __init__(self) -> None:
        self.host = Host()
        self.host.ready = True  # as after its reset; its sending side is never used here
        self.host.le_acl_packet_queue = DataPacketQueue(27, 64, self.host.send_hci_packet)
        self.conn = Connection(self.host, HANDLE, hci.Address("F0:F1:F2:F3:F4:F5"),
                               PhysicalTransport.LE)
        self.host.connections[HANDLE] = self.conn
        self.pdus: list[tuple[int, bytes]] = []
        self.host.on("l2cap_pdu", lambda _handle, cid, pdu: self.pdus.append((cid, pdu)))


@pytest.fixture
def bumble() -> Bumble:
    return Bumble()


def routed(bumble: Bumble) -> tuple[NotificationRouter, list[bytes]]:
    router = NotificationRouter(bumble.host)
    got: list[bytes] = []
    router.route(HANDLE, VALUE, got.append)
    return router, got


def test_a_complete_notification_goes_to_the_subscriber_not_to_bumble(bumble: Bumble) -> None:
    router, got = routed(bumble)
    router.on_packet(acl(l2cap(notification(b"\x01\x02\x00opus"))))
    router.on_packet(acl(l2cap(notification(b"")), pb=0b00))  # empty value, non-flushable
    assert got == [b"\x01\x02\x00opus", b""]
    assert router.routed == 2 and bumble.pdus == []


@pytest.mark.parametrize(
    "packet",
    [
        acl(l2cap(notification(b"x", attribute=VALUE + 1))),  # a handle nobody routed
        acl(l2cap(notification(b"x")), handle=HANDLE + 1),  # another connection
        acl(l2cap(bytes([0x1D]) + struct.pack("<H", VALUE) + b"x")),  # an indication
        acl(l2cap(bytes([0x0B]) + b"read response")),  # a response to a request
        acl(l2cap(notification(b"x"), cid=0x0006)),  # SMP, not ATT
    ],
)
def test_everything_else_reaches_bumble_unchanged(bumble: Bumble, packet: bytes) -> None:
    router, got = routed(bumble)
    router.on_packet(packet)
    assert got == [] and router.routed == 0
    if packet[1] | (packet[2] & 0x0F) << 8 == HANDLE:
        assert bumble.pdus == [(packet[7] | packet[8] << 8, packet[9:])]


def test_fragments_are_reassembled_by_bumble_and_then_routing_resumes(bumble: Bumble) -> None:
    router, got = routed(bumble)
    pdu = l2cap(notification(b"0123456789" * 3))
    router.on_packet(acl(pdu[:20]))  # first fragment: the L2CAP length says more comes
    # A whole notification while Bumble holds half a PDU goes to Bumble too, which
    # decides (it drops the half); the router never reorders around a partial PDU.
    router.on_packet(acl(l2cap(notification(b"whole"))))
    assert got == [] and bumble.pdus == [(4, notification(b"whole"))]
    router.on_packet(acl(pdu[:20]))
    router.on_packet(acl(pdu[20:], pb=0b01))  # continuation completes it in Bumble
    assert bumble.pdus[-1] == (4, notification(b"0123456789" * 3))
    router.on_packet(acl(l2cap(notification(b"next"))))
    assert got == [b"next"]


@pytest.mark.parametrize("cut", ["short", "long"])
def test_lengths_that_do_not_add_up_go_to_bumble(bumble: Bumble, cut: str) -> None:
    router, got = routed(bumble)
    pdu = l2cap(notification(b"value"))
    bad = pdu[:-1] if cut == "short" else pdu + b"!"  # L2CAP length no longer matches
    router.on_packet(acl(bad))
    assert got == []


def test_a_reused_connection_handle_is_not_routed_to_the_old_subscriber(bumble: Bumble) -> None:
    router, got = routed(bumble)
    # The link dropped and a new one got the same handle before anyone unrouted.
    bumble.host.connections[HANDLE] = Connection(
        bumble.host, HANDLE, hci.Address("E0:E1:E2:E3:E4:E5"), PhysicalTransport.LE
    )
    router.on_packet(acl(l2cap(notification(b"x"))))
    assert got == [] and len(bumble.pdus) == 1


def test_unroute_one_handle_or_the_whole_connection(bumble: Bumble) -> None:
    router, got = routed(bumble)
    other: list[bytes] = []
    router.route(HANDLE, VALUE + 2, other.append)
    router.unroute(HANDLE, VALUE)
    router.on_packet(acl(l2cap(notification(b"a"))))
    router.on_packet(acl(l2cap(notification(b"b", attribute=VALUE + 2))))
    assert got == [] and other == [b"b"]
    router.unroute(HANDLE)
    router.on_packet(acl(l2cap(notification(b"c", attribute=VALUE + 2))))
    assert other == [b"b"] and len(bumble.pdus) == 2
    router.route(HANDLE + 7, VALUE, got.append)  # no such connection: nothing routed
    router.on_packet(acl(l2cap(notification(b"d")), handle=HANDLE + 7))
    assert got == []


def test_events_and_transport_loss_reach_bumble(bumble: Bumble) -> None:
    seen: list[Any] = []

    class Host:  # the sink protocol only
        connections: dict[int, Any] = {}

        def on_packet(self, packet: bytes) -> None:
            seen.append(packet)

        def on_transport_lost(self) -> None:
            seen.append("lost")

    router = NotificationRouter(Host())
    event = bytes(hci.HCI_Command_Complete_Event(1, hci.HCI_RESET_COMMAND, b"\x00"))
    router.on_packet(event)
    router.on_transport_lost()
    assert seen == [event, "lost"]

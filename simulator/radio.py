"""Virtual BLE radio: one Bumble `LocalLink`, one virtual controller per participant.

Why a hub: Bumble 0.0.236 has no link relay, so processes that should hear each other
over the air (the daemon, one or more virtual glasses) each open an HCI transport to a
controller that lives here, and the controllers share one `LocalLink`. Participant
``i`` is served on ``tcp-server:127.0.0.1:PORT``; a process joins with
``Device.with_hci`` over ``tcp-client:127.0.0.1:PORT``.

`LocalLink` has no supervision timeout: a killed peer would stay "connected" forever.
The hub emulates it. When a participant's HCI socket goes away, its controller stops
advertising and scanning at once (a dead radio is silent) and, `supervision_timeout`
seconds later, terminates its connections with reason 0x08 (connection timeout), so
the peer's host sees an ordinary link loss. A new client on the same port gets a fresh
controller (a restarted device), and the old one's links are ended right away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from bumble import hci, ll
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport.common import PacketParser

log = logging.getLogger(__name__)

DEFAULT_SUPERVISION_TIMEOUT: Final = 1.0
MAX_LATENCY: Final = 1.0
LOOPBACK: Final = "127.0.0.1"


@dataclass(slots=True)
class RadioStats:
    """Counters for tests and the `sim radio` log."""

    attaches: int = 0  # HCI clients that connected
    detaches: int = 0  # HCI clients that went away
    superseded: int = 0  # a client replaced by a newer one on the same port
    supervision_timeouts: int = 0  # links ended because a participant vanished
    bad_hci: int = 0  # unparseable HCI bytes from a client (connection closed)


class _Controller(Controller):
    """Bumble's virtual controller plus what a real one does on LE Create Connection Cancel.

    Bumble 0.0.236 answers the command but keeps the pending connection and never sends
    the LE Connection Complete event with status 0x02 that ends it, so a host that gives
    up on an absent peer waits forever and cannot connect again.
    """

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending, self.pending_le_connection = self.pending_le_connection, None
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # After the Command Complete that our return value becomes (both go via call_soon).
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


class _HciSocket(asyncio.Protocol):
    """One TCP client speaking H4 HCI to a participant's controller.

    With a radio `latency`, what the host sends reaches its controller that much later,
    in order (a busy radio: the air is slower than loopback). Races that loopback hides,
    such as a notification still in flight when its subscription ends, then happen
    every time instead of once in a while.
    """

    def __init__(self, slot: _Participant) -> None:
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.parser = PacketParser()
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    # host <- controller
    def on_packet(self, packet: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(packet)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.slot.attach(self)

    def data_received(self, data: bytes) -> None:
        latency = self.slot.radio.latency
        if not latency:
            self._feed(data)
            return
        loop = asyncio.get_running_loop()
        self._delayed.append((loop.time() + latency, data))
        if self._timer is None:
            self._timer = loop.call_at(self._delayed[0][0], self._release)

    def _release(self) -> None:
        """Feed every delayed piece that is due, oldest first; then wait for the next."""
        self._timer = None
        loop = asyncio.get_running_loop()
        while self._delayed and self._delayed[0][0] <= loop.time():
            self._feed(self._delayed.popleft()[1])
        if self._delayed and self.transport is not None:
            self._timer = loop.call_at(self._delayed[0][0], self._release)

    def _feed(self, data: bytes) -> None:
        if self.transport is None:  # gone while its bytes were in the air
            return
        try:
            self.parser.feed_data(data)
        except Exception:  # bad framing: this client is not speaking HCI
            self.slot.radio.stats.bad_hci += 1
            log.warning("participant %d: bad HCI bytes; closing", self.slot.index)
            self._delayed.clear()
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._delayed.clear()
        self.slot.detach(self)
        self.transport = None


@dataclass(eq=False)
class _Participant:
    """One port of the hub: at most one live controller plus dying ones."""

    radio: VirtualRadio
    index: int
    server: asyncio.Server | None = None
    port: int = 0
    socket: _HciSocket | None = None
    controller: Controller | None = None
    dying: dict[Controller, asyncio.TimerHandle] = field(default_factory=dict)

    @property
    def public_address(self) -> hci.Address:
        return hci.Address(
            f"F0:EA:00:00:00:{self.index + 1:02X}", hci.Address.PUBLIC_DEVICE_ADDRESS
        )

    def attach(self, sock: _HciSocket) -> None:
        radio = self.radio
        radio.stats.attaches += 1
        old = self.socket
        if old is not None:  # a newer client wins: the old one is treated as gone
            radio.stats.superseded += 1
            self.detach(old)
            if old.transport is not None:
                old.transport.close()
        for ctrl in list(self.dying):  # a restarted device: end the old links now
            self._expire(ctrl)
        ctrl = _Controller(f"P{self.index}", link=radio.link, public_address=self.public_address)
        sock.parser.set_packet_sink(ctrl)
        ctrl.host = sock
        self.socket, self.controller = sock, ctrl
        log.debug("participant %d: attached", self.index)

    def detach(self, sock: _HciSocket) -> None:
        if sock is not self.socket:
            return
        self.radio.stats.detaches += 1
        ctrl, self.socket, self.controller = self.controller, None, None
        if ctrl is None:
            return
        ctrl.host = None
        _silence(ctrl)
        loop = asyncio.get_running_loop()
        self.dying[ctrl] = loop.call_later(self.radio.supervision_timeout, self._expire, ctrl)
        if self.radio.closing:  # the hub is going away: no timers left behind
            self._expire(ctrl)
        log.debug("participant %d: detached", self.index)

    def _expire(self, ctrl: Controller) -> None:
        """The supervision timeout ran out: end every link of a vanished controller."""
        handle = self.dying.pop(ctrl, None)
        if handle is not None:
            handle.cancel()
        reason = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
        for peer, conn in list(ctrl.le_connections.items()):
            self.radio.stats.supervision_timeouts += 1
            with contextlib.suppress(Exception):  # the peer may be gone as well
                conn.send_ll_control_pdu(ll.TerminateInd(reason))
            ctrl.le_connections.pop(peer, None)
        with contextlib.suppress(KeyError):
            self.radio.link.remove_controller(ctrl)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.socket is not None and self.socket.transport is not None:
            self.socket.transport.close()
        for ctrl in list(self.dying):
            self._expire(ctrl)
        if self.controller is not None:
            _silence(self.controller)
            with contextlib.suppress(KeyError):
                self.radio.link.remove_controller(self.controller)
            self.controller = None


def _silence(ctrl: Controller) -> None:
    """Stop everything a dead radio would stop sending at once."""
    ctrl.le_legacy_advertiser.stop()
    for adv_set in ctrl.advertising_sets.values():
        adv_set.stop()
    ctrl.le_scan_enable = False
    ctrl.pending_le_connection = None


class VirtualRadio:
    """The hub, in process: ``async with VirtualRadio(participants=2) as radio``.

    `transport(i)` is the Bumble transport string participant ``i`` opens. Ports are
    ephemeral unless `port_base` is given (then ``port_base + i``). Loopback only.
    `latency` delays every packet a host sends by that many seconds, in order.
    """

    def __init__(
        self,
        participants: int = 2,
        *,
        port_base: int = 0,
        host: str = LOOPBACK,
        supervision_timeout: float = DEFAULT_SUPERVISION_TIMEOUT,
        latency: float = 0.0,
    ) -> None:
        if participants < 1:
            raise ValueError("a radio needs at least one participant")
        if not 0.0 <= latency <= MAX_LATENCY:
            raise ValueError(f"latency must be 0..{MAX_LATENCY:g} s")
        self.host = host
        self.port_base = port_base
        self.supervision_timeout = max(0.0, supervision_timeout)
        self.latency = latency
        self.stats = RadioStats()
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self._slots = [_Participant(self, i) for i in range(participants)]
        self.closing = False

    async def start(self) -> None:
        """Listen on one port per participant."""
        loop = asyncio.get_running_loop()
        try:
            for slot in self._slots:
                port = self.port_base + slot.index if self.port_base else 0
                server = await loop.create_server(
                    functools.partial(_HciSocket, slot), self.host, port, reuse_address=True
                )
                slot.server = server
                slot.port = server.sockets[0].getsockname()[1]
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drop every participant and stop listening."""
        self.closing = True
        for slot in self._slots:
            slot.close()
        for slot in self._slots:
            if slot.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(slot.server.wait_closed(), 2.0)

    async def __aenter__(self) -> VirtualRadio:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def participants(self) -> int:
        """How many HCI sockets the hub offers."""
        return len(self._slots)

    def port(self, index: int) -> int:
        """TCP port of participant `index`."""
        return self._slots[index].port

    def transport(self, index: int) -> str:
        """Bumble transport string for participant `index` (``tcp-client:HOST:PORT``)."""
        return f"tcp-client:{self.host}:{self._slots[index].port}"

    def transports(self) -> list[str]:
        """Bumble transport strings of every participant, in order."""
        return [self.transport(i) for i in range(len(self._slots))]

    def connected(self, index: int) -> bool:
        """Whether a client is attached to participant `index` right now."""
        return self._slots[index].socket is not None

    def describe(self) -> dict[str, Any]:
        """The hub's ports and timing (the JSON line `sim radio` prints)."""
        return {
            "transports": self.transports(),
            "ports": [s.port for s in self._slots],
            "supervision_timeout": self.supervision_timeout,
            "latency": self.latency,
        }


# ============================================================================ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent sim radio",
        description="Virtual BLE radio hub: one Bumble controller per participant on "
        "loopback TCP. Prints one JSON line with the transport strings.",
    )
    p.add_argument("--ports", type=int, default=2, help="number of participants (default 2)")
    p.add_argument(
        "--port-base", type=int, default=0, help="first TCP port (default: ephemeral ports)"
    )
    p.add_argument(
        "--supervision-timeout",
        type=float,
        default=DEFAULT_SUPERVISION_TIMEOUT,
        help="seconds before a vanished participant's links end (default 1.0)",
    )
    p.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help=f"seconds added to every packet a participant sends, 0..{MAX_LATENCY:g} "
        "(default 0)",
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with VirtualRadio(
        args.ports,
        port_base=args.port_base,
        supervision_timeout=args.supervision_timeout,
        latency=args.latency,
    ) as radio:
        print(json.dumps(radio.describe()), flush=True)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``edge-agent sim radio``: serve the hub until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    if not 1 <= args.ports <= 64:
        print("edge-agent sim radio: --ports: must be between 1 and 64", file=sys.stderr)
        return 2
    if args.port_base and not 1024 <= args.port_base <= 65535 - args.ports:
        print("edge-agent sim radio: --port-base: must leave room in 1024..65535", file=sys.stderr)
        return 2
    if args.supervision_timeout < 0:
        print("edge-agent sim radio: --supervision-timeout: must be >= 0", file=sys.stderr)
        return 2
    if not 0 <= args.latency <= MAX_LATENCY:
        print(f"edge-agent sim radio: --latency: must be 0..{MAX_LATENCY:g}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(f"edge-agent sim radio: cannot listen: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A bleak backend over Bumble, for the simulator's virtual radio.

Why: bleak ships no Bumble backend, and the daemon must drive virtual glasses through
exactly the bleak API it uses on a real BlueZ radio. `BumbleAdapter` owns one Bumble
`Device` on one HCI transport (``tcp-client:127.0.0.1:PORT`` from `simulator.radio`);
`BumbleScanner` and `BumbleClient` implement bleak's `BaseBleakScanner` /
`BaseBleakClient` on top of it. `bind(adapter)` returns subclasses bound to one adapter,
so callers only ever pass ``backend=cls`` to `BleakScanner` / `BleakClient`.

Behaviour mirrors BlueZ where it matters to the daemon: the MTU is exchanged during
`connect` (BlueZ does so on its own), services are discovered before `connect`
returns, the disconnected callback fires on every disconnection, and a link lost
mid-request surfaces as `BleakError`, never as a stray `CancelledError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final, TypeVar, cast

from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import att, core, hci
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR as _CCCD
from bumble.keys import KeyStore, MemoryKeyStore
from bumble.transport import open_transport
from bumble.transport.common import Transport

from daemon.peripherals.ble.bumble_notify import NotificationRouter

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_MTU: Final = 517  # what BlueZ asks for; the peripheral answers with its own limit
OPEN_TIMEOUT: Final = 5.0
DISCONNECT_TIMEOUT: Final = 3.0
_UUID16_TYPES: Final = (
    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)
_SERVICE_DATA_TYPES: Final = {
    AdvertisingData.SERVICE_DATA_16_BIT_UUID: 2,
    AdvertisingData.SERVICE_DATA_32_BIT_UUID: 4,
    AdvertisingData.SERVICE_DATA_128_BIT_UUID: 16,
}


def uuid_str(value: core.UUID) -> str:
    """A Bumble UUID as bleak's lower-case 128-bit string."""
    return str(uuid_mod.UUID(bytes=bytes(reversed(value.to_bytes(force_128=True)))))


def parse_address(text: str) -> hci.Address:
    """``AA:BB:...`` (random, the LE default) or ``AA:BB:.../P`` (public)."""
    try:
        return hci.Address(text.strip().upper(), hci.Address.RANDOM_DEVICE_ADDRESS)
    except (ValueError, core.InvalidArgumentError):
        raise BleakError(f"not a Bluetooth address: {text!r}") from None


def advertisement_data(adv: Advertisement) -> AdvertisementData:
    """Bumble's parsed advertisement as bleak's `AdvertisementData`."""
    data = adv.data
    name: str | None = None
    for kind in (AdvertisingData.COMPLETE_LOCAL_NAME, AdvertisingData.SHORTENED_LOCAL_NAME):
        raw = data.get(kind, raw=True)
        if isinstance(raw, bytes):
            name = raw.decode("utf-8", "replace")
            break
    uuids: list[str] = []
    for kind in _UUID16_TYPES:
        for raw in data.get_all(kind, raw=True):
            size = 2 if kind <= 0x03 else 4 if kind <= 0x05 else 16
            for i in range(0, len(raw) - size + 1, size):
                text = uuid_str(core.UUID.from_bytes(raw[i : i + size]))
                if text not in uuids:  # a scan response may repeat the advertisement
                    uuids.append(text)
    manufacturer: dict[int, bytes] = {}
    for raw in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA, raw=True):
        if len(raw) >= 2:
            manufacturer[int.from_bytes(raw[:2], "little")] = bytes(raw[2:])
    service_data: dict[str, bytes] = {}
    for kind, size in _SERVICE_DATA_TYPES.items():
        for raw in data.get_all(kind, raw=True):
            if len(raw) >= size:
                service_data[uuid_str(core.UUID.from_bytes(raw[:size]))] = bytes(raw[size:])
    tx_raw = data.get(AdvertisingData.TX_POWER_LEVEL, raw=True)
    tx_power = int.from_bytes(tx_raw[:1], "little", signed=True) if tx_raw else None
    return AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=int(adv.rssi),
        platform_data=(adv,),
    )


def _encrypted(conn: Connection) -> bool:
    """Read afresh each time (a plain attribute check would be narrowed by mypy)."""
    return bool(conn.is_encrypted)


def _not_cancelled_by_caller() -> bool:
    task = asyncio.current_task()
    return task is None or task.cancelling() == 0


async def _gatt(what: str, op: Awaitable[_T]) -> _T:
    """Run one Bumble GATT operation, mapping its failures to bleak's exceptions."""
    try:
        return await op
    except att.ATT_Error as exc:
        raise BleakGATTProtocolError(int(exc.error_code)) from exc
    except asyncio.CancelledError:
        # Bumble cancels a pending request's future when the link drops; that must not
        # look like the caller's task being cancelled.
        if _not_cancelled_by_caller():
            raise BleakError(f"{what}: disconnected") from None
        raise
    except (core.TimeoutError, TimeoutError):
        raise BleakError(f"{what}: timed out") from None
    except (core.BaseBumbleError, RuntimeError, ValueError) as exc:
        raise BleakError(f"{what}: {exc}") from exc


class BumbleAdapter:
    """One Bumble `Device` over one HCI transport, shared by a backend's scanner and clients.

    Opened lazily on first use, reopened after the transport is lost (the radio
    restarted), closed by `close()`. The bond key store outlives reopening, like a
    host's bond database outlives an adapter reset.
    """

    def __init__(
        self,
        transport: str,
        *,
        name: str = "edge-agent",
        address: str | None = None,
        mtu: int = DEFAULT_MTU,
    ) -> None:
        self.transport_spec = transport
        self.name = name
        self.address = parse_address(address) if address else hci.Address.generate_static_address()
        self.mtu = max(att.ATT_DEFAULT_MTU, min(mtu, 517))
        self.keystore: KeyStore = MemoryKeyStore()
        self._lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._scan_callbacks: set[Callable[[Advertisement], None]] = set()
        self._clients: set[BumbleClient] = set()
        self.router: NotificationRouter | None = None  # of the open device
        self.opens = 0
        self.transport_losses = 0

    @property
    def is_open(self) -> bool:
        """Whether the Bumble device is powered on."""
        return self._device is not None

    async def open(self) -> Device:
        """The powered-on device, opening the transport first if needed."""
        async with self._lock:
            if self._device is not None:
                return self._device
            try:
                transport = await asyncio.wait_for(
                    open_transport(self.transport_spec), OPEN_TIMEOUT
                )
            except (OSError, TimeoutError, core.BaseBumbleError, ValueError) as exc:
                raise BleakError(
                    f"virtual radio at {self.transport_spec!r} is not reachable: {exc}"
                ) from exc
            device = Device.with_hci(self.name, self.address, transport.source, transport.sink)
            # Notifications to our subscribers skip Bumble's host (see bumble_notify).
            router = NotificationRouter(device.host)
            transport.source.set_packet_sink(router)
            # Identify by the address used on the air: the virtual controller also has a
            # public address, which pairing would otherwise hand out as the identity, and
            # a bond stored under it is never found when the peer connects again.
            device.config.identity_address_type = hci.Address.RANDOM_DEVICE_ADDRESS
            device.keystore = self.keystore
            device.on(device.EVENT_ADVERTISEMENT, self._on_advertisement)
            try:
                await asyncio.wait_for(device.power_on(), OPEN_TIMEOUT)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await transport.close()
                if isinstance(exc, Exception):
                    raise BleakError(f"virtual radio: power on failed: {exc}") from exc
                raise
            transport.source.terminated.add_done_callback(
                functools.partial(self._on_transport_lost, device)
            )
            self._device, self._transport, self.router = device, transport, router
            self.opens += 1
            if self._scan_callbacks:
                await device.start_scanning(filter_duplicates=False)
            return device

    def _on_transport_lost(self, device: Device, _done: object = None) -> None:
        if device is not self._device:
            return
        self.transport_losses += 1
        log.warning("virtual radio transport %s lost", self.transport_spec)
        self._device, transport = None, self._transport
        self._transport = None
        for client in list(self._clients):
            client.link_lost(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)
        self.router = None
        if transport is not None:  # the socket is gone already; release it synchronously
            for end in (transport.source, transport.sink):
                with contextlib.suppress(Exception):
                    getattr(end, "close", lambda: None)()

    async def close(self) -> None:
        """Disconnect every client, stop scanning, power off, close the transport."""
        async with self._lock:
            for client in list(self._clients):
                with contextlib.suppress(Exception):
                    await client.disconnect()
            self._scan_callbacks.clear()
            device, transport = self._device, self._transport
            self._device = self._transport = self.router = None
            if device is not None:
                with contextlib.suppress(Exception):
                    if device.is_scanning:
                        await asyncio.wait_for(device.stop_scanning(), 1.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(device.power_off(), 1.0)
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()

    # ------------------------------------------------------------------ scanning
    def _on_advertisement(self, adv: Advertisement) -> None:
        for callback in list(self._scan_callbacks):
            try:
                callback(adv)
            except Exception:  # a scanner's callback must not stop the others
                log.exception("scanner callback failed")

    async def start_scan(self, callback: Callable[[Advertisement], None]) -> None:
        """Deliver advertisements to `callback` (scanning starts with the first)."""
        device = await self.open()
        first = not self._scan_callbacks
        self._scan_callbacks.add(callback)
        if first and not device.is_scanning:
            try:
                await device.start_scanning(filter_duplicates=False)
            except Exception as exc:
                self._scan_callbacks.discard(callback)
                raise BleakError(f"scan start failed: {exc}") from exc

    async def stop_scan(self, callback: Callable[[Advertisement], None]) -> None:
        """Stop delivering to `callback` (scanning stops with the last)."""
        self._scan_callbacks.discard(callback)
        device = self._device
        if not self._scan_callbacks and device is not None and device.is_scanning:
            with contextlib.suppress(Exception):
                await device.stop_scanning()

    # ---------------------------------------------------------------- connecting
    async def connect(self, address: hci.Address, within: float) -> Connection:
        """One LE connection at a time (the controller allows one pending create)."""
        device = await self.open()
        async with self._connect_lock:
            try:
                return await device.connect(address, timeout=within)
            except asyncio.CancelledError:
                await asyncio.shield(self._abort_connect(device, address))
                raise
            except (core.TimeoutError, TimeoutError):
                raise TimeoutError(f"no connection to {address.to_string(False)}") from None
            except (core.BaseBumbleError, hci.HCI_Error) as exc:
                raise BleakError(f"connect to {address.to_string(False)} failed: {exc}") from exc

    async def _abort_connect(self, device: Device, address: hci.Address) -> None:
        """A cancelled connect must leave neither a pending create nor an orphan link."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                device.send_sync_command(hci.HCI_LE_Create_Connection_Cancel_Command()), 1.0
            )
        owned = {c.connection for c in self._clients}
        for conn in list(device.connections.values()):
            if conn.peer_address == address and conn not in owned:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.disconnect(), 1.0)

    async def has_bond(self, address: str) -> bool:
        """Whether the key store holds a bond with `address` (as pairing stored it), of
        either address type: a device copying a bonded address under the other type
        must meet "the host holds a bond" (and fail it), never "the host lost it", which
        would let it pair anew."""
        peer: hci.Address | None = None
        for client in self._clients:
            conn = client.connection
            if conn is not None and client.address.upper() == address.upper():
                peer = conn.peer_address
        if peer is None:
            try:
                peer = parse_address(address)
            except BleakError:
                return False
        bare = str(peer).split("/", 1)[0]
        for name in dict.fromkeys((str(peer), bare, f"{bare}/P")):
            if await self.keystore.get(name) is not None:
                return True
        return False

    def register(self, client: BumbleClient) -> None:
        """A client with a live connection (matched on transport loss)."""
        self._clients.add(client)

    def unregister(self, client: BumbleClient) -> None:
        """The client's connection ended."""
        self._clients.discard(client)


# ==================================================================== scanner
class BumbleScanner(BaseBleakScanner):
    """bleak scanner over a `BumbleAdapter` (class attribute or ``adapter=`` kwarg)."""

    adapter: ClassVar[BumbleAdapter | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        adapter: BumbleAdapter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        chosen = adapter or type(self).adapter
        if chosen is None:
            raise BleakError("BumbleScanner needs an adapter (use bind() or adapter=)")
        self._adapter: BumbleAdapter = chosen
        self._scanning = False

    async def start(self) -> None:
        """bleak: start scanning."""
        self.seen_devices = {}
        await self._adapter.start_scan(self._on_advertisement)
        self._scanning = True

    async def stop(self) -> None:
        """bleak: stop scanning."""
        if self._scanning:
            self._scanning = False
            await self._adapter.stop_scan(self._on_advertisement)

    def _on_advertisement(self, adv: Advertisement) -> None:
        data = advertisement_data(adv)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = adv.address.to_string(False)
        device = self.create_or_update_device(address, address, data.local_name, adv.address, data)
        self.call_detection_callbacks(device, data)


# ===================================================================== client
class BumbleClient(BaseBleakClient):
    """bleak client over a `BumbleAdapter`: one LE connection to one peripheral."""

    adapter: ClassVar[BumbleAdapter | None] = None

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        services: set[str] | None = None,
        adapter: BumbleAdapter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        chosen = adapter or type(self).adapter
        if chosen is None:
            raise BleakError("BumbleClient needs an adapter (use bind() or adapter=)")
        self._adapter: BumbleAdapter = chosen
        if isinstance(address_or_ble_device, BLEDevice):
            details = address_or_ble_device.details
            self._peer_address = (
                details if isinstance(details, hci.Address) else parse_address(self.address)
            )
            self._name = address_or_ble_device.name or self.address
        else:
            self._peer_address = parse_address(address_or_ble_device)
            self._name = self.address
        self._wanted_services = services
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    # ------------------------------------------------------------------- state
    @property
    def name(self) -> str:
        """bleak: the peer's advertised name (or its address)."""
        return self._name

    @property
    def connection(self) -> Connection | None:
        """The Bumble connection while connected (the adapter matches peers by it)."""
        return self._connection

    @property
    def mtu_size(self) -> int:
        """bleak: the ATT MTU (23 until exchanged)."""
        conn = self._connection
        return int(conn.att_mtu) if conn is not None else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        """bleak: whether the LE connection is up."""
        return self._connection is not None

    def _require(self) -> tuple[Connection, Peer]:
        if self._connection is None or self._peer is None:
            raise BleakError("Not connected")
        return self._connection, self._peer

    # ------------------------------------------------------------ connectivity
    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """bleak: connect, exchange the MTU, pair if asked, discover services."""
        if self._connection is not None:
            return
        conn = await self._adapter.connect(self._peer_address, self._timeout)
        self._connection, self._peer = conn, Peer(conn)
        self._adapter.register(self)
        conn.on(conn.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            async with asyncio.timeout(self._timeout):
                await _gatt("MTU exchange", self._peer.request_mtu(self._adapter.mtu))
                if pair:
                    await self.pair()
                self.services = await self._discover()
        except BaseException:
            await asyncio.shield(self.disconnect())
            raise

    async def _discover(self) -> BleakGATTServiceCollection:
        _, peer = self._require()
        collection = BleakGATTServiceCollection()
        services = await _gatt("service discovery", peer.discover_services())
        for svc in services:
            svc_uuid = uuid_str(svc.uuid)
            if self._wanted_services and svc_uuid not in self._wanted_services:
                continue
            service = BleakGATTService(svc, svc.handle, svc_uuid)
            collection.add_service(service)
            chars = await _gatt("characteristic discovery", svc.discover_characteristics())
            for ch in chars:
                props = sorted(gatt_char_props_to_strs(int(ch.properties)))
                characteristic = BleakGATTCharacteristic(
                    ch, ch.handle, uuid_str(ch.uuid), props, self._max_write_size, service
                )
                collection.add_characteristic(characteristic)
                descriptors = await _gatt("descriptor discovery", ch.discover_descriptors())
                for desc in descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, uuid_str(desc.type), characteristic)
                    )
        return collection

    def _max_write_size(self) -> int:
        return self.mtu_size - 3

    async def disconnect(self) -> None:
        """bleak: disconnect and wait (bounded) for the event."""
        conn = self._connection
        if conn is None:
            return
        done = asyncio.get_running_loop().create_future()

        def _done(*_: Any) -> None:
            if not done.done():
                done.set_result(None)

        conn.on(conn.EVENT_DISCONNECTION, _done)
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.disconnect(), DISCONNECT_TIMEOUT)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(done, DISCONNECT_TIMEOUT)
        finally:
            conn.remove_listener(conn.EVENT_DISCONNECTION, _done)
            if self._connection is conn:  # no event came (radio gone): forget it anyway
                self.link_lost(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)

    def _on_disconnection(self, reason: int) -> None:
        self.link_lost(reason)

    def link_lost(self, reason: int) -> None:
        """The link is gone (the peer, the radio, or an unanswered disconnect): forget
        it, once, and tell bleak through the disconnected callback."""
        conn = self._connection
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_listener(conn.EVENT_DISCONNECTION, self._on_disconnection)
        router = self._adapter.router
        if router is not None:
            router.unroute(conn.handle)
        self._connection = self._peer = None
        self._subscribers.clear()
        self._adapter.unregister(self)
        log.debug("disconnected from %s (reason 0x%02X)", self.address, reason)
        callback = self._disconnected_callback
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("disconnected callback failed")

    # ---------------------------------------------------------------- pairing
    async def pair(self, *args: Any, existing_bond_only: bool = False, **kwargs: Any) -> None:
        """Encrypt with a stored bond if there is one, else pair (Just Works) and bond.

        `existing_bond_only` (pinned glasses): a missing or rejected bond is an error,
        never a new pairing, or a device copying the pinned address would just bond.
        That is what BlueZ does for a bonded device.
        """
        conn, _ = self._require()
        if _encrypted(conn):
            return
        keys = await self._adapter.keystore.get(str(conn.peer_address))
        if keys is None and existing_bond_only:
            raise BleakError("this host holds no bond with the device")
        if keys is not None:
            try:
                await _gatt("encrypt", conn.encrypt())
                if _encrypted(conn):
                    return
                if existing_bond_only:
                    raise BleakError("the stored bond did not encrypt the link")
            except BleakError as exc:
                self._require()  # the peer dropped the link: nothing more to try
                if existing_bond_only:
                    raise BleakError(f"the stored bond was rejected: {exc}") from exc
                log.info("stored bond with %s rejected (%s); pairing again", self.address, exc)
        await _gatt("pairing", conn.pair())
        if not _encrypted(conn):
            raise BleakError("pairing finished but the link is not encrypted")

    async def unpair(self) -> None:
        """bleak: forget the stored bond with the peer."""
        with contextlib.suppress(KeyError):
            await self._adapter.keystore.delete(str(self._peer_address))

    # -------------------------------------------------------------------- I/O
    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """bleak: read a characteristic's value."""
        _, peer = self._require()
        value = await _gatt("read", peer.read_value(characteristic.handle))
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """bleak: read a descriptor's value."""
        _, peer = self._require()
        return bytearray(await _gatt("read descriptor", peer.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """bleak: write a characteristic; never longer than MTU - 3 without response."""
        _, peer = self._require()
        payload = bytes(data)
        if not response and len(payload) > self._max_write_size():
            raise BleakError(
                f"write without response of {len(payload)} bytes exceeds "
                f"{self._max_write_size()} (MTU {self.mtu_size})"
            )
        await _gatt("write", peer.write_value(characteristic.handle, payload, response))

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """bleak: write a descriptor (with response)."""
        _, peer = self._require()
        await _gatt("write descriptor", peer.write_value(descriptor.handle, bytes(data), True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """bleak: subscribe; a failing callback never breaks Bumble."""
        _, peer = self._require()

        def deliver(value: bytes) -> None:
            try:
                callback(bytearray(value))
            except Exception:  # never let a callback break Bumble's packet handling
                log.exception("notification callback failed")

        old = self._subscribers.pop(characteristic.handle, None)
        if old is not None:
            with contextlib.suppress(BleakError):
                await _gatt("unsubscribe", peer.unsubscribe(characteristic.obj, old))
        self._subscribers[characteristic.handle] = deliver
        self._route(characteristic.handle, deliver)  # before the first can arrive
        try:
            await _gatt("subscribe", peer.subscribe(characteristic.obj, deliver))
        except BaseException:
            self._subscribers.pop(characteristic.handle, None)
            self._route(characteristic.handle, None)
            raise

    def _route(self, value_handle: int, deliver: Callable[[bytes], None] | None) -> None:
        """Notifications of `value_handle` past Bumble's host (None: no longer)."""
        router, conn = self._adapter.router, self._connection
        if router is None or conn is None:
            return
        if deliver is None:
            router.unroute(conn.handle, value_handle)
        else:
            router.route(conn.handle, value_handle, deliver)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Tell the peer first, forget the callback last.

        Bumble's own unsubscribe drops the callback before it writes the CCCD, so what
        the peer sent before it took the write (a streaming microphone always has
        something in flight) arrived to no subscriber and logged a warning. ATT keeps
        order on a link: once the write is answered nothing more can come.
        """
        _, peer = self._require()
        subscriber = self._subscribers.get(characteristic.handle)
        if subscriber is None:
            return
        cccd = characteristic.obj.get_descriptor(_CCCD)
        if cccd is not None:
            await _gatt("unsubscribe", peer.write_value(cccd, b"\x00\x00", with_response=True))
        self._subscribers.pop(characteristic.handle, None)
        self._route(characteristic.handle, None)
        await _gatt("unsubscribe", peer.unsubscribe(characteristic.obj, subscriber))


def bind(adapter: BumbleAdapter) -> tuple[type[BumbleScanner], type[BumbleClient]]:
    """Scanner and client classes bound to `adapter`, for ``backend=`` in bleak."""
    scanner = type("BumbleScanner", (BumbleScanner,), {"adapter": adapter})
    client = type("BumbleClient", (BumbleClient,), {"adapter": adapter})
    return cast(type[BumbleScanner], scanner), cast(type[BumbleClient], client)

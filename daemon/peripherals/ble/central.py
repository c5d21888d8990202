"""Finding, connecting and keeping connected one wearable, over bleak's public API only.

Why a supervisor of our own: the link to a pair of glasses drops all the time (out of
range, battery, firmware restarts), and BlueZ adds its own pains - devices it forgot
("not found"), `InProgress` errors, an MTU reported as 23 until acquired. The answers
here are backend-neutral: a fresh scan before every connect, every failure counted by
reason and followed by exponential backoff with full jitter, the MTU read from what
the backend exposes publicly, bonding through `BleakClient.pair()`. bleak-retry-connector
is not used because it depends on BlueZ's D-Bus API.

`BleCentral.run(session)` loops: scan -> connect -> `session(link)` (the media code,
returning why it ended) -> disconnect -> backoff -> scan again, until cancelled.
Which device a scan may take, and whether it must prove a bond, is `Pinning`'s call:
once the user's glasses are pinned, look-alikes are refused and counted; a bond the host
itself lost is renewed only with the pinned address, once per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from daemon.backoff import Backoff
from daemon.errors import EdgeAgentError
from daemon.peripherals.ble.backends import BleBackend
from daemon.peripherals.ble.pinning import Pinning, clean_name
from daemon.peripherals.ble.profile import DeviceProfile

log = logging.getLogger(__name__)

LinkState = Literal["idle", "scanning", "connecting", "connected", "backoff", "stopped"]
DISCONNECT_TIMEOUT: Final = 3.0
DEFAULT_ATT_MTU: Final = 23  # what an MTU reads as before the exchange (or BlueZ's acquire)
REFUSED_PER_SCAN: Final = 64  # look-alike addresses remembered per scan (each counted once)


async def bounded(aw: Awaitable[Any], seconds: float, what: str) -> None:
    """Run a clean-up step for at most `seconds`, whatever it does with cancellation.

    asyncio.wait_for waits for a timed-out step to finish cancelling; a stack that
    swallows the cancellation (seen with Bumble mid-GATT-request) would then hang
    the daemon's stop. Here the step is abandoned instead, and the caller's own
    cancellation still goes through at once.
    """
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.add_done_callback(_consume)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        log.warning("%s did not finish in %.1f s; abandoned", what, seconds)
        return
    _consume(task)


def reraise_pending_cancel() -> None:
    """Raise CancelledError if this task was asked to stop and the request got lost.

    A cancel that lands inside a Bumble HCI or GATT request, or in an asyncio.wait_for
    whose step finished at the same moment (Python 3.11), can surface as a timeout, a
    BleakError or even a normal return; a loop that goes on after those must still
    stop when asked.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished clean-up step's outcome so nothing is left unobserved."""
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.debug("clean-up step failed: %s", task.exception())


class SetupError(EdgeAgentError, ConnectionError):
    """A connection came up but cannot be used; `reason` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The advertisement that picked the device for this connection attempt."""

    device: BLEDevice
    name: str | None
    address: str
    rssi: int | None
    service_uuids: tuple[str, ...] = ()


@dataclass(slots=True)
class LinkStats:
    """Connection supervision counters (cumulative)."""

    scans: int = 0
    scan_misses: int = 0  # a scan ended without seeing the device
    connect_attempts: int = 0
    connects: int = 0  # links that became usable
    reconnects: int = 0  # usable links after the first
    connect_failures: dict[str, int] = field(default_factory=dict)  # by reason
    disconnects: dict[str, int] = field(default_factory=dict)  # by reason
    backoff_seconds: float = 0.0
    last_connect_seconds: float | None = None  # scan start to usable link


class Link:
    """One usable connection, handed to the session until it ends."""

    def __init__(
        self, client: BleakClient, found: ScanResult, mtu: int, lost: asyncio.Event
    ) -> None:
        self.client = client
        self.found = found
        self.mtu = mtu
        self.lost = lost  # set by the backend's disconnected callback
        self.connected_at = time.monotonic()
        self.healthy = False  # the session saw media flow: reset the backoff afterwards


def effective_mtu(client: BleakClient) -> int:
    """The ATT MTU as far as public bleak API tells: BlueZ reports 23 in `mtu_size`
    until the MTU is acquired, but its characteristics' write sizes follow the real one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mtu = client.mtu_size
    with contextlib.suppress(BleakError):
        for service in client.services:
            for char in service.characteristics:
                mtu = max(mtu, char.max_write_without_response_size + 3)
    return mtu


class BleCentral:
    """Scan, connect, bond and reconnect one wearable described by `profile`."""

    def __init__(
        self,
        profile: DeviceProfile,
        backend: BleBackend,
        *,
        address: str = "",
        scan_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        mtu_timeout: float = 2.0,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
        pinning: Pinning | None = None,
    ) -> None:
        """`address` pins explicitly when no `pinning` is given (PinError if malformed)."""
        self.profile = profile
        self.backend = backend
        self.pinning = pinning or Pinning(profile.name, configured=address)
        self.scan_timeout = scan_timeout
        self.connect_timeout = connect_timeout
        self.mtu_timeout = mtu_timeout
        self.stats = LinkStats()
        self._unseen_scans = 0
        self.state: LinkState = "idle"
        self.last_found: ScanResult | None = None
        self._backoff = Backoff(backoff_initial, max(backoff_cap, backoff_initial), rng=rng)

    # ------------------------------------------------------------------ helpers
    def _count(self, table: dict[str, int], reason: str) -> None:
        table[reason] = table.get(reason, 0) + 1

    # --------------------------------------------------------------------- scan
    async def scan(self) -> ScanResult | None:
        """A fresh scan (never a cached device: BlueZ forgets devices); None on timeout.

        A look-alike that is not the pinned device is refused once per scan each.
        """
        self.stats.scans += 1
        found: asyncio.Future[ScanResult] = asyncio.get_running_loop().create_future()
        refused: set[str] = set()

        def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
            if found.done():
                return
            looks = self.profile.matches_advertisement(adv.local_name, adv.service_uuids)
            verdict = self.pinning.decide(device.address, looks)
            if verdict == "ignore":
                return
            if verdict == "refuse":
                address = device.address.upper()
                if address not in refused:
                    if len(refused) < REFUSED_PER_SCAN:
                        refused.add(address)
                    self.pinning.refuse(address, "device")
                return
            found.set_result(
                ScanResult(
                    device,
                    adv.local_name or device.name,
                    device.address,
                    adv.rssi,
                    tuple(adv.service_uuids),
                )
            )

        scanner = BleakScanner(on_advertisement, backend=self.backend.scanner)
        await scanner.start()
        try:
            reraise_pending_cancel()
            async with asyncio.timeout(self.scan_timeout):
                return await found
        except TimeoutError:
            self.stats.scan_misses += 1
            return None
        finally:
            # Not wait_for: on Python 3.11 it returns normally when the stop finishes in
            # the same step as a cancel of ours, and the cancelled supervisor scans on.
            await bounded(scanner.stop(), 2.0, "BLE scan stop")

    # ------------------------------------------------------------------ connect
    async def connect(self, found: ScanResult) -> Link:
        """Connect, check the MTU, bond if the profile requires it. Raises on failure."""
        lost = asyncio.Event()
        client = BleakClient(
            found.device,
            disconnected_callback=lambda _c: lost.set(),
            timeout=self.connect_timeout,
            backend=self.backend.client,
        )
        try:
            async with asyncio.timeout(self.connect_timeout + 1.0):
                await client.connect()
            mtu = await self._acquire_mtu(client, lost)
            if mtu < self.profile.min_mtu:
                raise SetupError(
                    "mtu", f"MTU {mtu} is below the profile's minimum {self.profile.min_mtu}"
                )
            if self.profile.bonding_required:
                await self._bond(client, found.address)
        except BaseException:
            await bounded(client.disconnect(), DISCONNECT_TIMEOUT, "BLE disconnect")
            raise
        return Link(client, found, mtu, lost)

    async def _bond(self, client: BleakClient, address: str) -> None:
        """Bond; pinned glasses that bonded must use the bond this host already holds.

        Unless this host holds no bond at all for them (its bond store lost it, or the
        virtual host restarted): then the device at the pinned address is paired anew,
        once per run, as `Pinning.may_rebond` allows. A bond the host holds but the
        device cannot use is always refused.
        """
        keep = self.pinning.must_keep_bond(address)
        renew = False
        try:
            if keep:
                held = await self.backend.bonded(client)
                renew = held is False and self.pinning.may_rebond(address)
                if held is None:
                    raise BleakError("cannot tell whether this host holds its bond")
                if held is False and not renew:
                    raise BleakError("this host holds no bond with it (lost again after "
                                     "it was renewed in this run; restart to renew it once "
                                     "more)")
            async with asyncio.timeout(self.connect_timeout):
                if keep and not renew:
                    await client.pair(existing_bond_only=True)
                else:
                    await client.pair()
            if renew:
                if await self.backend.bonded(client) is not True:
                    raise BleakError("paired anew, but this host kept no bond")
                self.pinning.rebonded(address)
        except (BleakError, TimeoutError, NotImplementedError) as exc:
            if keep:
                detail = str(exc) or type(exc).__name__
                if renew:  # the host had lost the bond; pairing anew did not work either
                    detail = f"this host had lost the bond, and pairing anew failed: {detail}"
                self.pinning.refuse(address, "bond", detail)
                raise SetupError("pin_bond", f"the pinned bond was not proven: {detail}") from exc
            raise SetupError("bond", f"bonding failed: {exc}") from exc

    async def _acquire_mtu(self, client: BleakClient, lost: asyncio.Event) -> int:
        """The negotiated MTU; waits a little while it still reads as the default 23."""
        deadline = time.monotonic() + self.mtu_timeout
        mtu = effective_mtu(client)
        while (
            mtu == DEFAULT_ATT_MTU < self.profile.min_mtu
            and time.monotonic() < deadline
            and not lost.is_set()
        ):
            await asyncio.sleep(0.05)
            mtu = effective_mtu(client)
        return mtu

    async def close(self, link: Link) -> None:
        """Disconnect `link`; bounded, never raises, survives a cancelled caller."""
        await bounded(link.client.disconnect(), DISCONNECT_TIMEOUT, "BLE disconnect")

    # ---------------------------------------------------------------- supervise
    async def _establish(self) -> Link | None:
        started = time.monotonic()
        self.state = "scanning"
        try:
            found = await self.scan()
        except Exception as exc:  # the adapter or radio itself failed
            self._unseen_scans = 0  # back off: a failing scan must not spin
            self._count(self.stats.connect_failures, "scan_error")
            log.warning("BLE scan failed: %s", exc)
            return None
        if found is None:
            self._unseen_scans += 1
            log.log(
                logging.INFO if self._unseen_scans == 1 else logging.DEBUG,
                "BLE: no %s seen in %.1f s; still scanning",
                self.profile.display_name,
                self.scan_timeout,
            )
            return None
        self._unseen_scans = 0
        self.last_found = found
        self.state = "connecting"
        self.stats.connect_attempts += 1
        try:
            link = await self.connect(found)
        except SetupError as exc:
            self._count(self.stats.connect_failures, exc.reason)
            # A refused pinned bond was warned about by Pinning, at most once a minute.
            level = logging.INFO if exc.reason == "pin_bond" else logging.WARNING
            log.log(level, "BLE %s: %s", found.address, exc)
            return None
        except TimeoutError:
            self._count(self.stats.connect_failures, "timeout")
            log.warning("BLE %s: connect timed out", found.address)
            return None
        except Exception as exc:  # BleakError, D-Bus and OS errors: back off and rescan
            self._count(self.stats.connect_failures, "error")
            log.warning("BLE %s: connect failed: %s", found.address, exc)
            return None
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.last_connect_seconds = time.monotonic() - started
        log.info(
            "BLE connected to %s (%s) in %.2f s, MTU %d",
            clean_name(found.name),
            found.address,
            self.stats.last_connect_seconds,
            link.mtu,
        )
        return link

    async def _pause(self) -> None:
        delay = self._backoff.next_delay()
        if delay <= 0:
            return
        self.state = "backoff"
        self.stats.backoff_seconds += delay
        await asyncio.sleep(delay)

    async def run(self, session: Callable[[Link], Awaitable[str]]) -> None:
        """Keep a link up until cancelled; `session(link)` returns why the link ended."""
        try:
            while True:
                reraise_pending_cancel()
                link = await self._establish()
                if link is None:
                    if self._unseen_scans == 0:  # seen but failed: back off
                        await self._pause()
                    # Not seen: scan again at once. The scan window paces the loop,
                    # and glasses coming back are found within one window, not
                    # after a backoff that grew while they were away.
                    continue
                self.state = "connected"
                reason = "session_error"
                try:
                    reason = await session(link)
                except Exception:
                    log.exception("BLE session failed")
                finally:
                    await self.close(link)
                self._count(self.stats.disconnects, reason)
                log.info("BLE link to %s ended: %s", link.found.address, reason)
                if link.healthy:
                    self._backoff.reset()
                await self._pause()
        finally:
            self.state = "stopped"

"""Can the daemon reach the glasses? The radio (BlueZ or the virtual one), then a short scan.

The scan goes through bleak's public scanner on the configured backend, as the
daemon's central does, and judges what it hears with the daemon's own rules: the
profile's advertisement match and the pin (`Pinning.decide`), so pinned glasses
are "seen" only at their address and a look-alike is named as one. On the
virtual radio the doctor takes a random host address, never the daemon's.
BlueZ errors reach us as bleak raises them (no system bus, BlueZ not running, no
adapter, adapter off, access denied); `classify_radio` turns each into a line and
what to do, and is pure.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
)

from daemon.config import BlePeripheralSettings
from daemon.doctor.report import Check
from daemon.live.failures import brief
from daemon.ops.state import StateStore
from daemon.peripherals.ble.backends import VIRTUAL_PREFIX, BackendError, BleBackend, open_backend
from daemon.peripherals.ble.central import bounded
from daemon.peripherals.ble.pinning import PinError, Pinning, clean_name
from daemon.peripherals.ble.profile import DeviceProfile, ProfileError, load_profile

RADIO = "bluetooth"
GLASSES = "glasses"
SCAN_LIMIT = 5.0
START_LIMIT = 5.0
SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"  # the default, as dbus-fast has it
BLUEZ_ADVICE = "install and start BlueZ: apt-get install bluez; systemctl enable --now bluetooth"
_REASONS = {
    BleakBluetoothNotAvailableReason.NO_BLUETOOTH: (
        "BlueZ runs, but no Bluetooth adapter is present",
        "plug in or enable an adapter (rfkill list; rfkill unblock bluetooth)",
    ),
    BleakBluetoothNotAvailableReason.POWERED_OFF: (
        "the Bluetooth adapter is powered off",
        "power it on: bluetoothctl power on (and rfkill unblock bluetooth)",
    ),
    BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE: (
        "the Bluetooth adapter cannot scan for Bluetooth LE devices",
        "use a Bluetooth 4.0 (LE) or later adapter",
    ),
}
DENIED_ADVICE = ("let the service user use BlueZ: add it to the bluetooth group "
                 "(usermod -aG bluetooth edge-agent) and check the D-Bus policy")


@dataclass(frozen=True, slots=True)
class Heard:
    """A device that matched the profile in the scan."""

    address: str
    name: str | None
    rssi: int | None


async def check_glasses(
    ble: BlePeripheralSettings, state_dir: Path | None, *, scan_limit: float = SCAN_LIMIT
) -> list[Check]:
    """The radio, then the configured glasses in one short scan."""
    try:
        profile = load_profile(ble.profile)
        pinning = Pinning(profile.name, StateStore(state_dir), configured=ble.address)
        backend = open_backend(ble.backend)  # no state dir: the virtual host is not the daemon
    except (ProfileError, PinError, BackendError) as exc:
        key = "peripheral.ble.address" if isinstance(exc, PinError) else "peripheral.ble"
        return [Check.fail(GLASSES, f"{key}: {exc}", "fix it in the configuration")]
    limit = min(scan_limit, ble.scan_timeout)
    try:
        heard, others = await _scan(profile, backend, pinning, limit)
    except Exception as exc:  # the radio itself: bleak, D-Bus and OS errors
        return [classify_radio(exc, ble.backend)]
    finally:
        await bounded(backend.aclose(), 2.0, "BLE backend close")
    return [_radio_ok(ble.backend), glasses_check(profile, pinning, heard, others, limit)]


async def _scan(
    profile: DeviceProfile, backend: BleBackend, pinning: Pinning, limit: float
) -> tuple[Heard | None, dict[str, Heard]]:
    """The glasses the daemon would take, or None; and the look-alikes it would refuse."""
    found: asyncio.Future[Heard] = asyncio.get_running_loop().create_future()
    refused: dict[str, Heard] = {}

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        if found.done() or not profile.matches_advertisement(adv.local_name, adv.service_uuids):
            return
        heard = Heard(device.address.upper(), adv.local_name or device.name, adv.rssi)
        if pinning.decide(device.address, True) == "take":
            found.set_result(heard)
        elif len(refused) < 16:
            refused[heard.address] = heard

    scanner = BleakScanner(on_advertisement, backend=backend.scanner)
    async with asyncio.timeout(START_LIMIT):
        await scanner.start()
    try:
        async with asyncio.timeout(limit):
            return await found, refused
    except TimeoutError:
        return None, refused
    finally:
        await bounded(scanner.stop(), 2.0, "BLE scan stop")


def _radio_ok(backend: str) -> Check:
    if backend.startswith(VIRTUAL_PREFIX):
        return Check.ok(RADIO, f"the virtual radio at {backend[len(VIRTUAL_PREFIX):]} answers")
    return Check.ok(RADIO, "BlueZ runs on the system D-Bus; a powered adapter scans")


def glasses_check(
    profile: DeviceProfile, pinning: Pinning, heard: Heard | None, refused: dict[str, Heard],
    limit: float,
) -> Check:
    """Seen, only look-alikes seen, or nothing seen, with what to do."""
    pinned = pinning.pin.address if pinning.pin is not None else ""
    if heard is not None:
        rssi = f", RSSI {heard.rssi} dBm" if heard.rssi is not None else ""
        return Check.ok(GLASSES, f"{clean_name(heard.name)} {heard.address} seen{rssi}")
    if refused:
        names = ", ".join(f"{clean_name(h.name)} {h.address}" for h in refused.values())
        why = pinning.blocked or f"not the pinned {pinned}"
        return Check.fail(GLASSES, f"only look-alikes seen ({names}): {why}",
                          "to use other glasses: edge-agent devices --unpair, then restart")
    target = f"{profile.display_name} {pinned}" if pinned else profile.display_name
    return Check.fail(GLASSES, f"no {target} seen in a {limit:.0f} s scan",
                      "switch the glasses on and bring them close (connected glasses do not "
                      "advertise: stop a running edge-agent first)")


def classify_radio(exc: BaseException, backend: str) -> Check:
    """Why the radio could not scan, and what to do."""
    if backend.startswith(VIRTUAL_PREFIX):
        return Check.fail(RADIO, f"the virtual radio is not reachable ({brief(exc)})",
                          "start it (edge-agent sim radio) or fix peripheral.ble.backend")
    if isinstance(exc, BleakBluetoothNotAvailableError):
        if exc.reason in _REASONS:
            detail, advice = _REASONS[exc.reason]
            return Check.fail(RADIO, detail, advice)
        return Check.fail(RADIO, f"BlueZ refused access ({exc})", DENIED_ADVICE)
    if isinstance(exc, BleakDBusError):
        if exc.dbus_error.endswith(("ServiceUnknown", "NameHasNoOwner")):
            return Check.fail(RADIO, "BlueZ is not running on the system D-Bus",
                              "start it: systemctl enable --now bluetooth")
        if exc.dbus_error.endswith("AccessDenied"):
            return Check.fail(RADIO, f"D-Bus denied access to BlueZ ({exc})", DENIED_ADVICE)
        return Check.fail(RADIO, f"BlueZ: {exc}", "look at journalctl -u bluetooth")
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        bus = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS
        return Check.fail(RADIO, f"no system D-Bus at {bus}, so no BlueZ and no Bluetooth "
                                 f"adapter ({type(exc).__name__})", BLUEZ_ADVICE)
    if isinstance(exc, TimeoutError):
        return Check.fail(RADIO, f"BlueZ did not start a scan within {START_LIMIT:.0f} s",
                          "restart it: systemctl restart bluetooth")
    return Check.fail(RADIO, f"the scan failed ({brief(exc)})", BLUEZ_ADVICE)

"""How the doctor words the radio's and the glasses' state: no D-Bus, BlueZ not running,
no adapter, adapter off, access denied, the virtual radio down; seen, look-alike, unseen."""

from __future__ import annotations

import pytest
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
)

from daemon.doctor.ble import Heard, classify_radio, glasses_check
from daemon.ops.state import StateStore
from daemon.peripherals.ble.pinning import Pinning
from daemon.peripherals.ble.profile import load_profile

R = BleakBluetoothNotAvailableReason
A, B = "C0:11:22:33:44:55", "C0:66:77:88:99:AA"


@pytest.mark.parametrize(("exc", "detail", "advice"), [
    (FileNotFoundError(2, "No such file or directory"), "no system D-Bus at ",
     "install and start BlueZ"),
    (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []),
     "BlueZ is not running on the system D-Bus", "systemctl enable --now bluetooth"),
    (BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", []),
     "D-Bus denied access to BlueZ", "bluetooth group"),
    (BleakBluetoothNotAvailableError("No Bluetooth adapters found.", R.NO_BLUETOOTH),
     "BlueZ runs, but no Bluetooth adapter is present", "rfkill"),
    (BleakBluetoothNotAvailableError("off", R.POWERED_OFF),
     "the Bluetooth adapter is powered off", "bluetoothctl power on"),
    (BleakBluetoothNotAvailableError("classic", R.NO_BLE_CENTRAL_ROLE),
     "the Bluetooth adapter cannot scan for Bluetooth LE devices", "4.0"),
    (BleakBluetoothNotAvailableError("denied", R.DENIED_BY_SYSTEM),
     "BlueZ refused access", "bluetooth group"),
    (TimeoutError(), "BlueZ did not start a scan within", "systemctl restart bluetooth"),
])
def test_bluez_faults(exc: BaseException, detail: str, advice: str) -> None:
    check = classify_radio(exc, "bluez")
    assert check.name == "bluetooth" and check.status == "fail"
    assert check.detail.startswith(detail), check.detail
    assert advice in check.advice


def test_the_virtual_radio_down() -> None:
    check = classify_radio(ConnectionRefusedError(111, "refused"), "virtual:tcp-client:x:1")
    assert check.detail.startswith("the virtual radio is not reachable (ConnectionRefusedError")
    assert "edge-agent sim radio" in check.advice


def test_glasses_seen_look_alike_or_not() -> None:
    omi = load_profile("omi")
    free = Pinning("omi")
    seen = glasses_check(omi, free, Heard(A, "Omi", -48), {}, 5)
    assert (seen.status, seen.detail) == ("ok", f"Omi {A} seen, RSSI -48 dBm")
    pinned = Pinning("omi", StateStore(None), configured=A)
    alike = glasses_check(omi, pinned, None, {B: Heard(B, "Omi", -60)}, 5)
    assert alike.status == "fail"
    assert alike.detail == f"only look-alikes seen (Omi {B}): not the pinned {A}"
    assert "devices --unpair" in alike.advice
    unseen = glasses_check(omi, pinned, None, {}, 5)
    assert unseen.detail == f"no {omi.display_name} {A} seen in a 5 s scan"
    assert "stop a running edge-agent first" in unseen.advice

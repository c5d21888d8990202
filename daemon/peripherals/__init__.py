"""Where media comes from and where replies go; `make_peripheral` picks by config."""

from __future__ import annotations

from daemon.config import PeripheralSettings
from daemon.peripherals.base import Peripheral


class PeripheralUnavailable(Exception):
    """The configured peripheral cannot be used here; the message names the key."""


def make_peripheral(settings: PeripheralSettings) -> Peripheral:
    if settings.kind == "file":
        from daemon.peripherals.file import FilePeripheral, WavError

        fs = settings.file
        try:
            return FilePeripheral(
                fs.input,
                fs.output,
                realtime=fs.realtime,
                chunk_ms=fs.chunk_ms,
                tail_silence=fs.tail_silence,
            )
        except WavError as exc:
            raise PeripheralUnavailable(f"peripheral.file.input: {exc}") from None
    if settings.kind == "ble":
        from daemon.peripherals.ble.backends import BackendError
        from daemon.peripherals.ble.peripheral import BlePeripheral
        from daemon.peripherals.ble.profile import ProfileError, load_profile

        bs = settings.ble
        try:
            profile = load_profile(bs.profile)
        except ProfileError as exc:
            raise PeripheralUnavailable(f"peripheral.ble.profile: {exc}") from None
        try:
            return BlePeripheral(profile, bs.backend, address=bs.address)
        except BackendError as exc:
            raise PeripheralUnavailable(f"peripheral.ble.{exc}") from None
    if settings.kind == "kiosk":
        from daemon.peripherals.audio_device import AudioDeviceError
        from daemon.peripherals.kiosk import KioskPeripheral

        ks = settings.kiosk
        try:
            return KioskPeripheral(ks.input_device, ks.output_device)
        except AudioDeviceError as exc:
            raise PeripheralUnavailable(f"peripheral.kiosk: {exc}") from None
    raise PeripheralUnavailable(f"peripheral.kind: {settings.kind!r} is not supported")

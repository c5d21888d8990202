"""Where media comes from and where replies go; `make_peripheral` picks by config."""

from __future__ import annotations

from daemon.config import ConfigError, PeripheralSettings
from daemon.ops.state import StateStore
from daemon.peripherals.base import Peripheral


class PeripheralUnavailable(ConfigError):
    """The configured peripheral cannot be used here; the message names the key.

    A ConfigError, so every caller that maps bad configuration to exit 2 maps this too.
    """


def make_peripheral(settings: PeripheralSettings, *, state: StateStore | None = None) -> Peripheral:
    """The configured peripheral; `state` keeps what must survive a restart (pinned glasses)."""
    if settings.kind == "file":
        from daemon.peripherals.file import FilePeripheral

        fs = settings.file
        return FilePeripheral(  # checks its files now: PeripheralUnavailable naming the key
            fs.input,
            fs.output,
            realtime=fs.realtime,
            chunk_ms=fs.chunk_ms,
            tail_silence=fs.tail_silence,
        )
    if settings.kind == "ble":
        from daemon.peripherals.ble.backends import BackendError
        from daemon.peripherals.ble.peripheral import BlePeripheral, PhotoUnavailable
        from daemon.peripherals.ble.pinning import PinError
        from daemon.peripherals.ble.profile import ProfileError, load_profile

        bs = settings.ble
        try:
            profile = load_profile(bs.profile)
        except ProfileError as exc:
            raise PeripheralUnavailable(f"peripheral.ble.profile: {exc}") from None
        fallback = None
        if bs.local_output:
            from daemon.peripherals.audio_device import AudioDeviceError, Speaker

            try:
                fallback = Speaker("" if bs.local_output == "default" else bs.local_output,
                                   24_000)
                fallback.open()
            except AudioDeviceError as exc:
                raise PeripheralUnavailable(f"peripheral.ble.local_output: {exc}") from None
        try:
            ble = BlePeripheral(
                profile,
                bs.backend,
                address=bs.address,
                silence_timeout=bs.silence_timeout,
                scan_timeout=bs.scan_timeout,
                connect_timeout=bs.connect_timeout,
                backoff_initial=bs.backoff_initial,
                backoff_cap=bs.backoff_max,
                speaker_fallback=fallback,
                state=state,
            )
        except BackendError as exc:
            raise PeripheralUnavailable(f"peripheral.ble.{exc}") from None
        except PinError as exc:
            raise PeripheralUnavailable(f"peripheral.ble.address: {exc}") from None
        if bs.photo_interval:
            try:
                ble.set_photo_interval(bs.photo_interval)
            except PhotoUnavailable as exc:
                raise PeripheralUnavailable(f"peripheral.ble.photo_interval: {exc}") from None
        return ble
    if settings.kind == "kiosk":
        from daemon.peripherals.audio_device import AudioDeviceError
        from daemon.peripherals.kiosk import KioskPeripheral

        ks = settings.kiosk
        try:
            return KioskPeripheral(ks.input_device, ks.output_device)
        except AudioDeviceError as exc:
            raise PeripheralUnavailable(f"peripheral.kiosk: {exc}") from None
    raise PeripheralUnavailable(f"peripheral.kind: {settings.kind!r} is not supported")

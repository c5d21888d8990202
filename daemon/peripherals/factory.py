"""`make_peripheral`: the peripheral the configuration asks for, checked at start.

Why here and lazy: each kind pulls in its own stack (bleak and Bumble, PyAudio, WAV
files), imported only when configured; every reason it cannot be used becomes one
`PeripheralUnavailable` line naming the key, which the CLI turns into exit 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.config import BlePeripheralSettings, PeripheralSettings
from daemon.ops.state import StateStore
from daemon.peripherals.base import Peripheral, PeripheralUnavailable

if TYPE_CHECKING:
    from daemon.peripherals.audio_device import SoundCardSpeaker

__all__ = ["make_peripheral"]


def make_peripheral(settings: PeripheralSettings, *, state: StateStore | None = None) -> Peripheral:
    """The configured peripheral; `state` keeps what must survive a restart (pinned glasses)."""
    if settings.kind == "file":
        return _file_peripheral(settings)
    if settings.kind == "ble":
        return _ble_peripheral(settings.ble, state)
    if settings.kind == "kiosk":
        return _kiosk_peripheral(settings)
    raise PeripheralUnavailable(f"peripheral.kind: {settings.kind!r} is not supported")


def _file_peripheral(settings: PeripheralSettings) -> Peripheral:
    from daemon.peripherals.file import FilePeripheral

    fs = settings.file
    return FilePeripheral(  # checks its files now: PeripheralUnavailable naming the key
        fs.input,
        fs.output,
        realtime=fs.realtime,
        chunk_ms=fs.chunk_ms,
        tail_silence=fs.tail_silence,
    )


def _ble_peripheral(bs: BlePeripheralSettings, state: StateStore | None) -> Peripheral:
    from daemon.peripherals.ble.backends import BackendError
    from daemon.peripherals.ble.peripheral import BlePeripheral, PhotoUnavailable
    from daemon.peripherals.ble.pinning import PinError
    from daemon.peripherals.ble.profile import ProfileError, load_profile

    try:
        profile = load_profile(bs.profile)
    except ProfileError as exc:
        raise PeripheralUnavailable(f"peripheral.ble.profile: {exc}") from None
    if bs.listen == "push_to_talk" and not profile.can_talk:
        raise PeripheralUnavailable(
            f"peripheral.ble.listen: push_to_talk needs a talk gesture, and profile "
            f"{profile.name!r} names none ([tap] talk_events or frame_protocol.talk)")
    fallback = _local_output(bs.local_output) if bs.local_output else None
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
            listen=bs.listen,
            push_to_talk_max_hold=bs.push_to_talk_max_hold,
            push_to_talk_preroll=bs.push_to_talk_preroll_ms / 1000,
            earcons=bs.earcons,
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


def _local_output(device: str) -> SoundCardSpeaker:
    """The sound card that plays replies the glasses cannot (`peripheral.ble.local_output`)."""
    from daemon.peripherals.audio_device import AudioDeviceError, SoundCardSpeaker

    try:
        speaker = SoundCardSpeaker("" if device == "default" else device, 24_000)
        speaker.open()
    except AudioDeviceError as exc:
        raise PeripheralUnavailable(f"peripheral.ble.local_output: {exc}") from None
    return speaker


def _kiosk_peripheral(settings: PeripheralSettings) -> Peripheral:
    from daemon.audio import FrontEndUnavailable
    from daemon.peripherals.audio_device import AudioDeviceError
    from daemon.peripherals.kiosk import KioskPeripheral

    ks = settings.kiosk
    try:
        return KioskPeripheral(ks.input_device, ks.output_device, block_ms=ks.block_ms,
                               settings=ks)
    except AudioDeviceError as exc:
        raise PeripheralUnavailable(f"peripheral.kiosk: {exc}") from None
    except FrontEndUnavailable as exc:
        raise PeripheralUnavailable(f"peripheral.kiosk.{exc}") from None

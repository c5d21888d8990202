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
    raise PeripheralUnavailable(
        f"peripheral.kind: {settings.kind!r} is not available in this build yet"
    )

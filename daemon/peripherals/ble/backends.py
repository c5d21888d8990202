"""The one place that knows which bleak backend is in use.

`peripheral.ble.backend` is ``bluez`` (bleak's platform backend, a real radio) or
``virtual:<bumble transport>`` (the simulator's radio, through our Bumble backend).
Everything else in the daemon gets a `BleBackend` and passes its classes to bleak's
public `BleakScanner(..., backend=...)` / `BleakClient(..., backend=...)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

VIRTUAL_PREFIX = "virtual:"


class BackendError(ValueError):
    """`peripheral.ble.backend` names no usable backend (message is one line)."""


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class BleBackend:
    """Scanner/client classes for bleak (None = bleak's platform default) and a closer."""

    name: str
    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
    _close: Callable[[], Awaitable[None]] = _nothing

    @property
    def virtual(self) -> bool:
        return self.name.startswith(VIRTUAL_PREFIX)

    async def aclose(self) -> None:
        """Release the radio (for the virtual backend: power off the Bumble device)."""
        await self._close()


def open_backend(backend: str) -> BleBackend:
    """The backend named by `backend` (``bluez`` or ``virtual:<transport>``)."""
    if backend == "bluez":
        return BleBackend("bluez")
    if backend.startswith(VIRTUAL_PREFIX):
        transport = backend[len(VIRTUAL_PREFIX) :].strip()
        if not transport:
            raise BackendError(
                "backend: 'virtual:' needs a Bumble transport, e.g. "
                "virtual:tcp-client:127.0.0.1:9001"
            )
        from daemon.peripherals.ble.bumble_backend import BumbleAdapter, bind

        adapter = BumbleAdapter(transport)
        scanner, client = bind(adapter)
        return BleBackend(backend, scanner, client, adapter.close)
    raise BackendError(
        f"backend: unknown value {backend!r} (expected bluez or virtual:<transport>)"
    )

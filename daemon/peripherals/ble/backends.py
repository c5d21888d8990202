"""The one place that knows which bleak backend is in use.

`peripheral.ble.backend` is ``bluez`` (bleak's platform backend, a real radio) or
``virtual:<bumble transport>`` (the simulator's radio, through our Bumble backend).
Everything else in the daemon gets a `BleBackend` and passes its classes to bleak's
public `BleakScanner(..., backend=...)` / `BleakClient(..., backend=...)`.

The virtual host keeps its bonds in memory only (no key is ever written to disk), but
its own address is derived from the state directory, so a restarted daemon is the same
host to the glasses: they recognise it, and the pinned glasses it re-bonds with (see
`pinning`) replace their old bond for it instead of collecting one per restart.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bleak import BleakClient
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from daemon.errors import EdgeAgentError

VIRTUAL_PREFIX = "virtual:"
_HOST_ADDRESS_SALT = b"edge-agent virtual host address\0"


class BackendError(EdgeAgentError, ValueError):
    """`peripheral.ble.backend` names no usable backend (message is one line)."""


async def _nothing() -> None:
    return None


async def _bluez_bonded(client: BleakClient) -> bool | None:
    """BlueZ's "Paired" property of the connected device, None if it cannot be read.

    bleak has no public call for it, so this reads bleak's BlueZ internals; if they
    move (or this is not BlueZ) the answer is None and pinned bonded glasses are
    refused with that reason rather than paired anew.
    """
    try:
        from bleak.backends.bluezdbus.manager import get_global_bluez_manager

        path = getattr(getattr(client, "_backend", None), "_device_path", None)
        if not isinstance(path, str):
            return None
        manager = await get_global_bluez_manager()
        return bool(manager.is_paired(path))
    except Exception:
        return None


def virtual_host_address(state_dir: Path) -> str:
    """The virtual host's static random address for a state directory: the same on
    every restart that uses that directory, different for another one. Derived from
    the directory's absolute path (not a secret, and nothing is stored)."""
    path = os.path.abspath(os.fspath(state_dir))  # lexical: no I/O, the dir may not exist
    digest = bytearray(hashlib.sha256(_HOST_ADDRESS_SALT + os.fsencode(path)).digest()[:6])
    digest[0] |= 0xC0  # static random: the two top bits set (MSB first in the string)
    if digest in (bytearray(b"\xc0" + bytes(5)), bytearray(b"\xff" * 6)):
        digest[5] ^= 0x01  # a random part of all zeros or all ones is not allowed
    return ":".join(f"{b:02X}" for b in digest)


@dataclass(frozen=True, slots=True)
class BleBackend:
    """Scanner/client classes for bleak (None = bleak's platform default), a closer,
    and the host's bond lookup (pinned bonded glasses must use the bond they have).
    `host_address` is the virtual host's own address ("" for a real radio)."""

    name: str
    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
    _close: Callable[[], Awaitable[None]] = _nothing
    _bonded: Callable[[BleakClient], Awaitable[bool | None]] = _bluez_bonded
    host_address: str = ""

    @property
    def virtual(self) -> bool:
        """Whether this is the simulator's radio, not a real adapter."""
        return self.name.startswith(VIRTUAL_PREFIX)

    async def aclose(self) -> None:
        """Release the radio (for the virtual backend: power off the Bumble device)."""
        await self._close()

    async def bonded(self, client: BleakClient) -> bool | None:
        """Whether this host holds a bond with the connected peer (None: cannot tell)."""
        return await self._bonded(client)


def open_backend(backend: str, *, state_dir: Path | None = None) -> BleBackend:
    """The backend named by `backend` (``bluez`` or ``virtual:<transport>``).

    `state_dir` (the daemon's state directory, if any) fixes the virtual host's address
    across restarts; without it the virtual host takes a new random address per run.
    """
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

        address = virtual_host_address(state_dir) if state_dir is not None else None
        adapter = BumbleAdapter(transport, address=address)
        scanner, client = bind(adapter)

        async def bonded(bleak_client: BleakClient) -> bool | None:
            return await adapter.has_bond(bleak_client.address)

        host = adapter.address.to_string(False)
        return BleBackend(backend, scanner, client, adapter.close, bonded, host)
    raise BackendError(
        f"backend: unknown value {backend!r} (expected bluez or virtual:<transport>)"
    )

"""The glasses' side of one connection, and the one way to notify over it.

Why apart: the microphone, the camera, taps and the battery all send notifications
on the same link and must agree on what the firmware would do - never more than
MTU - 3 bytes (Bumble would cut it silently; here it is counted), nothing to a link
that is gone, nothing unencrypted on a bonded profile - so that lives here once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bumble import gatt
from bumble.device import Connection, Device

from daemon.errors import EdgeAgentError
from simulator.glasses.report import GlassesStats

__all__ = ["CentralLink", "LinkGone", "Notifier"]

log = logging.getLogger(__name__)


class CentralLink:
    """State of one connection from a central; everything here dies with it."""

    def __init__(self, conn: Connection, *, needs_start: bool, needs_encryption: bool) -> None:
        self.conn = conn
        self.needs_encryption = needs_encryption
        self.gone = asyncio.Event()
        self.subscribed: set[int] = set()
        self.mic_on = not needs_start  # profiles with audio.control wait for "start"
        self.stream_ok = asyncio.Event()
        self.audio_index = 0
        self.photo_index = 0
        self.held: bytes | None = None  # a notification waiting to be sent out of order
        self.photo_commands: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=16)
        self.speaker_remaining: int | None = None  # bytes left in the current utterance

    @property
    def secure(self) -> bool:
        """Whether the characteristics may be served (a bonded profile: encrypted only)."""
        return not self.needs_encryption or self.conn.is_encrypted

    def update_stream_gate(self, audio_handle: int) -> None:
        """The microphone streams while it is on and the audio characteristic subscribed."""
        if self.mic_on and audio_handle in self.subscribed:
            self.stream_ok.set()
        else:
            self.stream_ok.clear()


class LinkGone(EdgeAgentError, ConnectionError):
    """The connection ended: unwinds the per-connection TaskGroup."""


class Notifier:
    """The glasses' characteristics, and notifications on them as the firmware sends them.

    `on_audio_notify` is a measurement hook (bench/ble_pipeline.py): called with every
    notification on the audio characteristic and `time.monotonic()` just before it is
    handed to the BLE stack. Unset, it costs one attribute test per notification.
    """

    def __init__(
        self, stats: GlassesStats, on_audio_notify: Callable[[bytes, float], None] | None
    ) -> None:
        self.stats = stats
        self.on_audio_notify = on_audio_notify
        self.device: Device | None = None  # while powered on
        self.chars: dict[str, gatt.Characteristic[bytes]] = {}  # by UUID (gatt.py)
        self.audio: gatt.Characteristic[bytes] | None = None  # the audio characteristic

    async def notify(
        self, link: CentralLink, char: gatt.Characteristic[bytes], value: bytes
    ) -> None:
        """Notify `value` on `char` to the link's central; a gone link gets nothing."""
        device = self.device
        if device is None or link.gone.is_set():
            return
        limit = int(link.conn.att_mtu) - 3
        if len(value) > limit:  # what the stack would do anyway, counted here
            self.stats.truncated += 1
            value = value[:limit]
        hook = self.on_audio_notify
        if hook is not None and char is self.audio:
            hook(value, time.monotonic())
        try:
            await device.notify_subscriber(link.conn, char, value)
        except Exception as exc:  # the link went away under us
            log.debug("notify failed: %s", exc)

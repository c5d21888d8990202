"""The virtual glasses' camera: photo commands in, the profile's photo chunks out.

Why it follows the firmware: one-shot, stop and interval commands arrive on the photo
control characteristic in the profile's encoding; the photo (a given JPEG or a
synthetic one) goes out as omi chunks (with the orientation byte omiGlass sends) or
Frame data messages, interleaved with the audio as the firmware's queue does. A photo
nobody listens for is skipped and counted; the `photo-drop-at` fault drops chunks.
"""

from __future__ import annotations

import asyncio

from daemon.peripherals.ble.framing import FrameFlags, frame_data_messages, omi_photo_chunks
from daemon.peripherals.ble.profile import DeviceProfile
from simulator.glasses.connection import CentralLink, Notifier
from simulator.glasses.report import Report

__all__ = ["GlassesCamera"]


class GlassesCamera:
    """Takes the same photo whenever asked, and sends it as the profile frames it."""

    def __init__(
        self,
        profile: DeviceProfile,
        jpeg: bytes,
        *,
        drop_chunks_at: frozenset[int],
        notifier: Notifier,
        report: Report,
    ) -> None:
        self.profile = profile
        self.jpeg = jpeg
        self.drop_chunks_at = drop_chunks_at
        self.notifier = notifier
        self.report = report

    async def serve(self, link: CentralLink) -> None:
        """Carry out the link's photo commands (and its interval) until it ends."""
        interval: float | None = None
        while True:
            try:
                async with asyncio.timeout(interval):
                    kind, seconds = await link.photo_commands.get()
            except TimeoutError:
                await self._send_photo(link)
                continue
            if kind == "shot":
                await self._send_photo(link)
            elif kind == "interval":
                interval = float(seconds)
                await self._send_photo(link)
            else:
                interval = None

    def command(self, link: CentralLink, value: bytes) -> bool:
        """A write to the photo control characteristic; False if it is no command."""
        control = self.profile.photo.control
        assert control is not None
        width = 2 if control.interval_encoding == "u16le" else 1
        if value == control.one_shot:
            command: tuple[str, int] = ("shot", 0)
        elif value == control.stop:
            command = ("stop", 0)
        elif (
            value.startswith(control.interval_prefix)
            and len(value) == len(control.interval_prefix) + width
        ):
            raw = value[len(control.interval_prefix) :]
            seconds = int.from_bytes(raw, "little", signed=control.interval_encoding == "i8")
            if not control.interval_min_s <= seconds <= control.interval_max_s:
                return False
            command = ("interval", seconds)
        else:
            return False
        self.report.command(f"photo_{command[0]}")
        try:
            link.photo_commands.put_nowait(command)
        except asyncio.QueueFull:
            self.report.command("photo_queue_full")
        return True

    async def _send_photo(self, link: CentralLink) -> None:
        p, stats = self.profile, self.report.stats
        uuid = p.characteristics.photo_data
        char = self.notifier.chars.get(uuid) if uuid else None
        if char is None or char.handle not in link.subscribed or not link.secure:
            stats.photos_skipped += 1
            return
        mtu = int(link.conn.att_mtu)
        if p.photo.framing == "omi":
            orientation = 1 if p.photo.orientation_byte else None
            chunks = omi_photo_chunks(self.jpeg, orientation, p.photo.chunk_bytes or 200)
        else:
            chunks = frame_data_messages(p.frame_flags or FrameFlags(), "photo", self.jpeg, mtu - 5)
        for i, chunk in enumerate(chunks):
            index = link.photo_index
            link.photo_index += 1
            if index in self.drop_chunks_at:
                stats.photo_chunks_dropped += 1
                continue
            await self.notifier.notify(link, char, chunk)
            stats.photo_chunks += 1
            if i % 8 == 7:
                await asyncio.sleep(0.001)  # let audio interleave, like the firmware's queue
        stats.photos_sent += 1
        self.report.emit("photo", bytes=len(self.jpeg), chunks=len(chunks))

"""The glasses' speaker queue: the model's voice in the device's format, paced out.

Why a queue of its own: the model sends 24 kHz PCM faster than real time, and the
device plays its own rate (Opus-encoded if the profile says so) from writes no larger
than one ATT packet. `push` resamples (and encodes) into a bounded queue, counting
every drop by reason; `write_out`, run by the connection's session, writes it in
MTU-sized pieces at most `lead` ahead of real time, with the profile's length prefix
before each utterance and silence finishing one cut short by an interruption. The
queue outlives a connection so its counters add up; `clear` empties it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from daemon.media.opus import OpusEncoder, OpusError
from daemon.media.resample import Resampler
from daemon.media.types import SAMPLE_WIDTH, pcm_duration
from daemon.peripherals.ble.central import reraise_pending_cancel
from daemon.peripherals.ble.profile import DownlinkSpec

__all__ = ["PlaybackQueue", "PlaybackStats", "SpeakerWrite"]

SEGMENT_SECONDS: Final = 1.0  # longest length-prefixed utterance written at once
TAIL_FLUSH_SECONDS: Final = 0.15  # no new model audio for this long: flush the resampler

# Writes one piece to the speaker characteristic; False if the write failed.
SpeakerWrite = Callable[[bytes], Awaitable[bool]]


@dataclass(slots=True)
class PlaybackStats:
    """Downlink counters; `dropped_seconds` by reason."""

    queued_seconds: float = 0.0
    written_seconds: float = 0.0
    writes: int = 0
    write_errors: int = 0
    utterances: int = 0  # length prefixes written
    padding_seconds: float = 0.0  # silence finishing an utterance cut by an interruption
    fallback_seconds: float = 0.0
    dropped_seconds: dict[str, float] = field(default_factory=dict)


class PlaybackQueue:
    """Model audio in the device's format, waiting for the speaker characteristic."""

    def __init__(
        self,
        downlink: DownlinkSpec,
        *,
        max_seconds: float = 60.0,
        lead: float = 0.1,
        opus_bitrate: int = 24_000,
    ) -> None:
        self.downlink = downlink
        self.max_seconds = max_seconds
        self.lead = max(0.0, lead)
        self.opus_bitrate = opus_bitrate
        self.stats = PlaybackStats()
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._queued_seconds = 0.0
        self._play_clock = 0.0  # when what was written will have played
        self._resampler: Resampler | None = None
        self._encoder: OpusEncoder | None = None
        self._carry = b""  # PCM short of a whole Opus frame
        self._wakeup: asyncio.Event | None = None  # set while `write_out` runs

    # ------------------------------------------------------------------ in
    def drop(self, reason: str, seconds: float) -> None:
        """Count audio that will not be played, by reason."""
        if seconds > 0:
            dropped = self.stats.dropped_seconds
            dropped[reason] = dropped.get(reason, 0.0) + seconds

    def push(self, pcm: bytes, rate: int, mtu: int) -> None:
        """Queue model audio for a speaker on a link with this MTU; never blocks."""
        seconds = pcm_duration(len(pcm), rate)
        if self._queued_seconds + seconds > self.max_seconds:
            self.drop("overflow", seconds)
            return
        if self._resampler is None or self._resampler.in_rate != rate:
            self._resampler = Resampler(rate, self.downlink.rate)
        self._queue_device_pcm(self._resampler.process(pcm), mtu)
        self.stats.queued_seconds += seconds
        if self._wakeup is not None:
            self._wakeup.set()

    def clear(self, reason: str) -> float:
        """Drop everything queued (counted under `reason`); returns the seconds dropped."""
        seconds = self._queued_seconds
        self._queue.clear()
        self._queued_bytes = 0
        self._queued_seconds = 0.0
        self._carry = b""
        if self._resampler is not None:
            self._resampler.reset()
        self.drop(reason, seconds)
        return seconds

    def pending_seconds(self) -> float:
        """Queued audio plus what was written but has not played yet."""
        return self._queued_seconds + max(0.0, self._play_clock - time.monotonic())

    def close(self) -> None:
        """Release the Opus encoder (made again if audio is queued later)."""
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def _queue_device_pcm(self, device_pcm: bytes, mtu: int) -> None:
        dl = self.downlink
        if dl.kind == "opus":
            self._queue_opus(device_pcm, mtu)
        elif device_pcm:
            self._queue.append(device_pcm)
            self._queued_bytes += len(device_pcm)
            self._queued_seconds += pcm_duration(len(device_pcm), dl.rate)

    def _queue_opus(self, pcm: bytes, mtu: int) -> None:
        dl = self.downlink
        if self._encoder is None:
            self._encoder = OpusEncoder(dl.rate, dl.frame_ms, bitrate=self.opus_bitrate)
        encoder = self._encoder
        data = self._carry + pcm
        step = encoder.frame_bytes
        offset = 0
        limit = mtu - 3
        while len(data) - offset >= step:
            try:
                packet = encoder.encode(data[offset : offset + step])
            except OpusError:
                packet = b""
            offset += step
            if not packet or len(packet) > limit:
                self.drop("oversize", dl.frame_ms / 1000)
                continue
            self._queue.append(packet)
            self._queued_bytes += len(packet)
            self._queued_seconds += dl.frame_ms / 1000
        self._carry = data[offset:]

    def _flush_tail(self, mtu: int) -> bool:
        """Queue what the resampler (and the Opus frame carry) still holds; True if any."""
        tail = self._resampler.flush() if self._resampler is not None else b""
        if self.downlink.kind == "opus" and (tail or self._carry):
            size = self._encoder.frame_bytes if self._encoder is not None else 0
            data = self._carry + tail
            tail = data + bytes(-len(data) % size) if size else data
            self._carry = b""
        self._queue_device_pcm(tail, mtu)
        return bool(self._queue)

    # ----------------------------------------------------------------- out
    async def write_out(self, write: SpeakerWrite, mtu: int) -> None:
        """Write queued audio in MTU-sized pieces, at most `lead` ahead of real time.

        Runs until cancelled (the connection's session owns it).
        """
        dl = self.downlink
        # Exactly chunk_bytes per write when the profile fixes it (setup checked that
        # it fits the MTU), else as much as one write carries; never a long write.
        limit = dl.chunk_bytes or mtu - 3
        limit = max(SAMPLE_WIDTH, limit - limit % SAMPLE_WIDTH)
        play_clock = 0.0
        remaining = 0  # bytes still owed to the current length-prefixed utterance
        self._wakeup = wakeup = asyncio.Event()
        try:
            while True:
                if not self._queue:
                    await self._pad(write, remaining, limit)
                    remaining = 0
                    await self._idle(wakeup, mtu)
                    continue
                if dl.length_prefix == "u32le" and remaining == 0:
                    remaining = self._segment_bytes()
                    await self._write(write, remaining.to_bytes(4, "little"))
                    self.stats.utterances += 1
                data, seconds = self._take(remaining, limit)
                remaining = max(0, remaining - len(data))
                now = time.monotonic()
                ahead = play_clock - now
                if ahead > self.lead:
                    await asyncio.sleep(ahead - self.lead)
                    now = time.monotonic()
                if await self._write(write, data):
                    self.stats.written_seconds += seconds
                else:
                    self.drop("write_error", seconds)
                play_clock = max(play_clock, now) + seconds
                self._play_clock = play_clock
        finally:
            self._wakeup = None

    async def _write(self, write: SpeakerWrite, data: bytes) -> bool:
        if await write(data):
            self.stats.writes += 1
            return True
        self.stats.write_errors += 1
        reraise_pending_cancel()
        return False

    async def _pad(self, write: SpeakerWrite, remaining: int, limit: int) -> None:
        """Finish an utterance the queue ran out of (an interruption) with silence."""
        dl = self.downlink
        if not remaining or dl.kind != "pcm16":
            return
        self.stats.padding_seconds += pcm_duration(remaining, dl.rate)
        while remaining:
            piece = min(limit, remaining)
            await self._write(write, bytes(piece))
            remaining -= piece

    async def _idle(self, wakeup: asyncio.Event, mtu: int) -> None:
        """Wait for audio; when the reply pauses, play the resampler's tail too."""
        wakeup.clear()
        try:
            async with asyncio.timeout(TAIL_FLUSH_SECONDS):
                await wakeup.wait()
        except TimeoutError:
            if not self._flush_tail(mtu):
                await wakeup.wait()

    def _take(self, remaining: int, limit: int) -> tuple[bytes, float]:
        """The next write's bytes and the seconds they play."""
        dl = self.downlink
        if dl.kind == "opus":
            return self._take_packet(), dl.frame_ms / 1000
        data = self._take_pcm(min(limit, remaining) if remaining else limit)
        return data, pcm_duration(len(data), dl.rate)

    def _segment_bytes(self) -> int:
        """Length of the next length-prefixed utterance: what is queued, at most 1 s."""
        dl = self.downlink
        if dl.kind == "opus":
            count = max(1, int(SEGMENT_SECONDS * 1000 / dl.frame_ms))
            return sum(len(p) for _, p in zip(range(count), self._queue, strict=False))
        return min(self._queued_bytes, int(SEGMENT_SECONDS * dl.rate) * SAMPLE_WIDTH)

    def _take_packet(self) -> bytes:
        packet = self._queue.popleft()
        self._queued_bytes -= len(packet)
        self._queued_seconds = (
            max(0.0, self._queued_seconds - self.downlink.frame_ms / 1000)
            if self._queue
            else 0.0  # no float residue: an empty queue holds exactly nothing
        )
        return packet

    def _take_pcm(self, size: int) -> bytes:
        out = bytearray()
        while self._queue and len(out) < size:
            head = self._queue.popleft()
            need = size - len(out)
            if len(head) > need:
                self._queue.appendleft(head[need:])
                head = head[:need]
            out += head
        self._queued_bytes -= len(out)
        self._queued_seconds = (
            max(0.0, self._queued_seconds - pcm_duration(len(out), self.downlink.rate))
            if self._queue
            else 0.0  # no float residue: an empty queue holds exactly nothing
        )
        return bytes(out)

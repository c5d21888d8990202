"""The virtual glasses' microphone: a WAV streamed as the profile's codec and framing.

Why it behaves like firmware: the daemon's reconnect, watchdog and loss handling are
only tested if the stream does what real glasses do. It never stops on its own: once
the WAV has played (event ``audio_end``) it streams silence, encoded in the codec,
until a fault silences it; with `loop` the WAV repeats instead. The WAV position
belongs to the glasses, not to a connection: a reconnect goes on where the last
connection stopped, unless `rewind_on_connect`. Frames are paced in real time on an
absolute schedule (Opus 20 ms, PCM16/PCM8, µ-law; omi packet ids with wraparound, or
the Frame message layer); nothing streams below the profile's `min_mtu`. The
notification faults (drop, duplicate, reorder, malformed) act here.
"""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
import soxr
from bumble import gatt

from daemon.media.codecs import CodecSpec, mulaw_encode, pcm16_to_pcm8
from daemon.media.opus import OpusEncoder
from daemon.media.types import SAMPLE_WIDTH
from daemon.peripherals.ble.framing import (
    FrameFlags,
    frame_data_messages,
    omi_audio_notifications,
)
from daemon.peripherals.ble.profile import DeviceProfile
from simulator.glasses.connection import CentralLink, Notifier
from simulator.glasses.faults import FaultClock, Faults
from simulator.glasses.report import Report

__all__ = ["GlassesMicrophone", "resample"]


def resample(pcm: bytes, src: int, dst: int) -> bytes:
    """16-bit mono PCM from `src` to `dst` Hz."""
    if src == dst or not pcm:
        return pcm
    out = soxr.resample(np.frombuffer(pcm, dtype="<i2"), src, dst)
    return bytes(np.asarray(out, dtype="<i2").tobytes())


class _Encoder:
    """One connection's microphone stream: PCM at the codec rate to codec frames."""

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = spec
        self.frame_bytes = spec.frame_samples * SAMPLE_WIDTH
        self._opus = OpusEncoder(spec.rate, spec.frame_ms) if spec.kind == "opus" else None

    def encode(self, pcm: bytes) -> bytes:
        if len(pcm) < self.frame_bytes:
            pcm = pcm + bytes(self.frame_bytes - len(pcm))
        if self._opus is not None:
            return self._opus.encode(pcm)
        if self.spec.kind == "mulaw":
            return mulaw_encode(pcm)
        if self.spec.kind == "pcm8":
            return pcm16_to_pcm8(pcm)
        return pcm

    def close(self) -> None:
        if self._opus is not None:
            self._opus.close()


class GlassesMicrophone:
    """The stream of one wearable's microphone, across its connections."""

    def __init__(
        self,
        profile: DeviceProfile,
        codec: CodecSpec,
        pcm: bytes,
        *,
        loop: bool,
        rewind_on_connect: bool,
        faults: Faults,
        packet_id_start: int,
        notifier: Notifier,
        clock: FaultClock,
        report: Report,
    ) -> None:
        """`pcm` is at the codec's rate already (see `resample`)."""
        self.profile = profile
        self.codec = codec
        self.pcm = pcm
        self.loop = loop
        self.rewind_on_connect = rewind_on_connect
        self.faults = faults
        self.notifier = notifier
        self.clock = clock
        self.report = report
        self._position = 0  # bytes of `pcm` streamed (wraps with `loop`)
        self._audio_ended = False  # `audio_end` emitted: silence from now on
        self._rng = random.Random(faults.seed)
        self._packet_id = packet_id_start % 0x10000
        self._silent_until: float | None = None

    def go_silent(self, seconds: float | None = None) -> None:
        """Stop sending audio (stay connected) for `seconds`, or until the link ends."""
        self._silent_until = float("inf") if seconds is None else time.monotonic() + seconds

    def link_ended(self) -> None:
        """A silence lasts at most until its link ends."""
        self._silent_until = None

    async def stream(self, link: CentralLink) -> None:
        """Stream to `link` while the gate is open, until the link's tasks end."""
        spec = self.codec
        encoder = _Encoder(spec)
        frame_s, frame_bytes = spec.frame_ms / 1000, encoder.frame_bytes
        if self.rewind_on_connect:
            self._position, self._audio_ended = 0, False
        try:
            while True:
                await link.stream_ok.wait()
                while link.conn.att_mtu < self.profile.min_mtu or not link.secure:  # noqa: ASYNC110 - two Bumble states, no event for both
                    await asyncio.sleep(0.01)  # firmware: nothing useful below min_mtu
                self.report.emit("streaming", mtu=int(link.conn.att_mtu))
                await self._paced(link, encoder, frame_s, frame_bytes)
        finally:
            encoder.close()

    async def _paced(
        self, link: CentralLink, encoder: _Encoder, frame_s: float, frame_bytes: int
    ) -> None:
        """One frame every `frame_s` on an absolute schedule, while the gate is open."""
        start = asyncio.get_running_loop().time()
        k = 0
        while link.stream_ok.is_set():
            due = start + k * frame_s
            delay = due - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not link.stream_ok.is_set():
                break
            k += 1
            self.clock.advance(frame_s)
            chunk = self._next_pcm(frame_bytes)
            if self._silent_until is not None:
                if time.monotonic() < self._silent_until:
                    continue
                self._silent_until = None
            await self._send_frame(link, encoder.encode(chunk), not chunk)

    def _next_pcm(self, size: int) -> bytes:
        """The next frame of the WAV (padded by the encoder), b"" for silence after it."""
        if self._position >= len(self.pcm):
            if self.loop and self.pcm:
                self._position = 0
            else:
                if not self._audio_ended:
                    self._audio_ended = True
                    self.report.emit("audio_end")
                return b""
        chunk = self.pcm[self._position : self._position + size]
        self._position += size
        return chunk

    def _audio_char(self) -> gatt.Characteristic[bytes]:
        char = self.notifier.audio
        assert char is not None  # the services are built before anything streams
        return char

    async def _send_frame(self, link: CentralLink, frame: bytes, silence: bool = False) -> None:
        p = self.profile
        mtu = int(link.conn.att_mtu)
        stats = self.report.stats
        stats.audio_frames += 1
        stats.silence_frames += silence
        if p.audio.framing == "omi":
            notes, self._packet_id = omi_audio_notifications(self._packet_id, frame, mtu - 6)
        else:
            flags = p.frame_flags or FrameFlags()
            notes = frame_data_messages(flags, "audio", frame, mtu - 5, final=False)
        char = self._audio_char()
        for note in notes:
            await self._send_faulty(link, char, note)

    async def _send_faulty(
        self, link: CentralLink, char: gatt.Characteristic[bytes], note: bytes
    ) -> None:
        f, rng, stats = self.faults, self._rng, self.report.stats
        notify = self.notifier.notify
        index = link.audio_index
        link.audio_index += 1
        if index in f.malformed_at or (f.malformed and rng.random() < f.malformed):
            await self.send_malformed(link)
        if index in f.drop_at or (f.drop and rng.random() < f.drop):
            stats.dropped += 1
            return
        if link.held is None and (
            index in f.reorder_at or (f.reorder and rng.random() < f.reorder)
        ):
            link.held = note
            stats.reordered += 1
            return
        await notify(link, char, note)
        stats.audio_notifications += 1
        if index in f.duplicate_at or (f.duplicate and rng.random() < f.duplicate):
            await notify(link, char, note)
            stats.duplicated += 1
        if link.held is not None:
            held, link.held = link.held, None
            await notify(link, char, held)
            stats.audio_notifications += 1

    async def send_malformed(self, link: CentralLink) -> None:
        """A notification no decoder can use: too short for its header."""
        bad = bytes([0x01]) if self.profile.audio.framing == "frame" else b"\xab\xcd"
        await self.notifier.notify(link, self._audio_char(), bad)
        self.report.stats.malformed_sent += 1

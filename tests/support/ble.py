"""The daemon's BLE side for tests: a `Sink` that keeps what a `BlePeripheral` hands
over and lets a test wait for it, `make_ble` on the virtual radio, `running`, `tone`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from daemon.media.types import AudioChunk, VideoFrame
from daemon.peripherals.ble.peripheral import BlePeripheral
from daemon.peripherals.ble.profile import load_profile


class Sink:
    """A MediaSink that keeps everything and lets the test wait for it."""

    def __init__(self) -> None:
        self.chunks: list[AudioChunk] = []
        self.frames: list[VideoFrame] = []
        self.paused = 0
        self.taps = 0
        self.ended = 0  # speech_ended: the peripheral closed the utterance (push-to-talk)
        self.native = bytearray()  # device-rate PCM before resampling (`native_hook`)
        self._changed = asyncio.Event()

    def native_hook(self, pcm: bytes, _rate: int) -> None:
        self.native += pcm
        self._changed.set()

    def audio(self, chunk: AudioChunk) -> None:
        assert chunk.rate == 16_000
        self.chunks.append(chunk)
        self._changed.set()

    def video(self, frame: VideoFrame) -> None:
        self.frames.append(frame)
        self._changed.set()

    def input_paused(self) -> None:
        self.paused += 1
        self._changed.set()

    def backlog_seconds(self) -> float:
        return 0.0

    def user_tap(self) -> None:
        self.taps += 1
        self._changed.set()

    def speech_ended(self) -> None:
        self.ended += 1
        self._changed.set()

    @property
    def seconds(self) -> float:
        return sum(c.duration for c in self.chunks)

    @property
    def pcm(self) -> bytes:
        return b"".join(c.pcm for c in self.chunks)

    async def until(self, condition: Callable[[], bool], within: float = 10) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(peripheral: BlePeripheral, sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(peripheral.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def make_ble(profile: str, transport: str, **kwargs: Any) -> BlePeripheral:
    options: dict[str, Any] = {
        "scan_timeout": 2.0,
        "backoff_initial": 0.1,
        "backoff_cap": 0.5,
        "silence_timeout": 3.0,
    }
    options.update(kwargs)
    return BlePeripheral(load_profile(profile), "virtual:" + transport, **options)


def tone(seconds: float, rate: int, freqs: tuple[float, ...] = (440.0, 1250.0)) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave_ = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    return (wave_ * 9000).astype("<i2").tobytes()


class FakeSpeaker:
    """A local speaker the glasses fall back to when they have none."""

    def __init__(self) -> None:
        self.played: list[tuple[int, int]] = []

    def play(self, pcm: bytes, rate: int) -> None:
        self.played.append((len(pcm), rate))

    def flush_playback(self) -> float:
        return 0.25

    def playback_pending(self) -> float:
        return 0.5

"""WAV in, WAV out: the peripheral for the demo, tests and benchmarks.

Input is streamed in fixed chunks, paced in real time (like a microphone) or
as fast as the link takes it. Output plays on a virtual clock when real time,
so an interruption drops the unplayed rest exactly as a speaker would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import wave
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

from daemon.media.types import SAMPLE_WIDTH, UPLINK_RATE, AudioChunk, pcm_duration
from daemon.media.wav import WavError, read_wav
from daemon.ops.lograte import seldom
from daemon.peripherals.base import MediaSink, Peripheral, PeripheralUnavailable

log = logging.getLogger(__name__)

MAX_PLAYBACK_SECONDS = 120.0
BACKLOG_LIMIT = 0.5


def _read_input(path: Path) -> bytes:
    """Read at construction, where a bad file is a configuration error (exit 2)."""
    try:
        return read_wav(path, UPLINK_RATE)[0]
    except WavError as exc:
        raise PeripheralUnavailable(f"peripheral.file.input: {exc}") from None
    except OSError as exc:
        raise PeripheralUnavailable(
            f"peripheral.file.input: cannot read {path} ({exc.strerror or type(exc).__name__})"
        ) from None


def _open_output(path: Path) -> BinaryIO:
    """Created at construction, so an unwritable place fails at start, not mid-run.

    Opened here rather than by `wave.open(name)`, whose half-built writer reports
    a failed open a second time from its finaliser.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("wb")
    except OSError as exc:
        raise PeripheralUnavailable(
            f"peripheral.file.output: cannot create {path} "
            f"({exc.strerror or type(exc).__name__})"
        ) from None


def file_problems(input_path: Path | None, output_path: Path | None) -> list[str]:
    """What `run` would refuse in these files (one line each, naming the key), found
    without writing to the output (`doctor`)."""
    out: list[str] = []
    if input_path is not None:
        try:
            _read_input(input_path)
        except PeripheralUnavailable as exc:
            out.append(str(exc))
    if output_path is not None and (why := _output_unusable(output_path)) is not None:
        out.append(f"peripheral.file.output: cannot create {output_path} ({why})")
    return out


def _output_unusable(path: Path) -> str | None:
    """Why the output could not be written, tried without touching what is there."""
    try:
        if path.is_dir():
            return "it is a directory"
        if path.exists():
            with path.open("ab"):  # appending nothing: the file stays as it is
                return None
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        probe = parent / f".edge-agent-probe-{os.getpid()}"
        with probe.open("xb"):
            pass
        probe.unlink()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


class FilePeripheral(Peripheral):
    """Raises PeripheralUnavailable (a ConfigError naming the key) for a bad input or
    output file."""

    kind = "file"

    def __init__(
        self,
        input_path: Path | None,
        output_path: Path | None,
        *,
        realtime: bool = True,
        chunk_ms: int = 20,
        tail_silence: float = 2.0,
        output_rate: int = 24_000,
    ) -> None:
        self._pcm = _read_input(input_path) if input_path is not None else b""
        self._input_path = input_path
        self._output_path = output_path
        self._realtime = realtime
        self._chunk_bytes = UPLINK_RATE * SAMPLE_WIDTH * chunk_ms // 1000
        self._tail = b"\0" * (int(tail_silence * UPLINK_RATE) * SAMPLE_WIDTH)
        self._out_rate = output_rate
        self._writer: wave.Wave_write | None = None
        self._out_file: BinaryIO | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._play_clock = 0.0
        self._sent_seconds = 0.0
        self._played_seconds = 0.0
        self._overflow_seconds = 0.0  # model audio dropped at MAX_PLAYBACK_SECONDS
        self._overflow_chunks = 0
        self._converting = False  # the rate conversion was logged (once)
        self.finished = False
        if output_path is not None:
            self._out_file = _open_output(output_path)
            self._writer = wave.open(self._out_file, "wb")  # noqa: SIM115 - lives with self
            self._writer.setnchannels(1)
            self._writer.setsampwidth(SAMPLE_WIDTH)
            self._writer.setframerate(output_rate)

    async def run(self, sink: MediaSink) -> None:
        """Stream the input WAV, then hold playback open until cancelled."""
        try:
            await self._stream(self._pcm + self._tail, sink)
            self.finished = True
            sink.input_paused()
            await asyncio.Future()  # hold playback open until the Agent stops us
        finally:
            self.close()

    async def _stream(self, pcm: bytes, sink: MediaSink) -> None:
        step = self._chunk_bytes
        chunk_s = pcm_duration(step, UPLINK_RATE)
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), step)):
            if self._realtime:
                due = start + i * chunk_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                while sink.backlog_seconds() > BACKLOG_LIMIT:  # noqa: ASYNC110 - polled
                    await asyncio.sleep(0.002)
            sink.audio(AudioChunk(pcm[offset : offset + step], UPLINK_RATE, time.monotonic()))
            self._sent_seconds += chunk_s
            if not self._realtime and i % 8 == 7:
                await asyncio.sleep(0)
            self._drain_playback()

    def play(self, pcm: bytes, rate: int) -> None:
        """Write model audio to the output WAV (on a virtual clock if real time)."""
        if rate != self._out_rate:
            if not self._converting:  # every chunk is converted: said once
                self._converting = True
                log.warning("model audio at %d Hz, output file is %d Hz; converting", rate,
                            self._out_rate)
            import numpy as np  # only here: the model speaks 24 kHz, the output's default
            import soxr

            samples = soxr.resample(np.frombuffer(pcm, "<i2"), rate, self._out_rate)
            pcm = np.asarray(samples, dtype="<i2").tobytes()
        if not self._realtime:
            self._write(pcm)
            return
        if not self._queue and self._play_clock < time.monotonic():
            self._play_clock = time.monotonic()
        seconds = pcm_duration(len(pcm), self._out_rate)
        if self.playback_pending() + seconds > MAX_PLAYBACK_SECONDS:
            self._overflow(seconds)
            return
        self._queue.append(pcm)
        self._queued_bytes += len(pcm)
        self._drain_playback()

    def _overflow(self, seconds: float) -> None:
        """Count audio dropped at the bound; logged seldom, the figure is in `status`."""
        self._overflow_seconds += seconds
        self._overflow_chunks += 1
        if seldom(self._overflow_chunks):
            log.warning("playback queue full (%.0f s): %.2f s of model audio dropped so far "
                        "(%d chunks)", MAX_PLAYBACK_SECONDS, self._overflow_seconds,
                        self._overflow_chunks)

    def _drain_playback(self) -> None:
        """Write out what a real speaker would have played by now."""
        now = time.monotonic()
        while self._queue and self._play_clock <= now:
            pcm = self._queue.popleft()
            self._queued_bytes -= len(pcm)
            self._write(pcm)
            self._play_clock += pcm_duration(len(pcm), self._out_rate)

    def flush_playback(self) -> float:
        """Drop what a real speaker would not have played yet."""
        self._drain_playback()
        dropped = pcm_duration(self._queued_bytes, self._out_rate)
        self._queue.clear()
        self._queued_bytes = 0
        self._play_clock = time.monotonic()
        return dropped

    def playback_pending(self) -> float:
        """Seconds not yet played on the virtual clock (0 if not real time)."""
        self._drain_playback()
        queued = pcm_duration(self._queued_bytes, self._out_rate)
        return max(queued, self._play_clock - time.monotonic()) if self._realtime else 0.0

    def _write(self, pcm: bytes) -> None:
        self._played_seconds += pcm_duration(len(pcm), self._out_rate)
        if self._writer is not None:
            self._writer.writeframes(pcm)

    def close(self) -> None:
        """Write out what was still queued and close the output."""
        if self._writer is not None:
            for pcm in self._queue:  # what was still queued at a clean stop is written out
                self._writer.writeframes(pcm)
            self._queue.clear()
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._out_file is not None:
            with contextlib.suppress(Exception):
                self._out_file.close()  # a writer given a file object leaves it open
            self._out_file = None

    def status(self) -> dict[str, Any]:
        """Input progress, seconds played and dropped (keyed as the glasses' playback, so
        /metrics shows one `playback.dropped_seconds.overflow` whatever the peripheral)."""
        return {
            "kind": self.kind,
            "input": str(self._input_path) if self._input_path else None,
            "input_sent_s": round(self._sent_seconds, 2),
            "input_finished": self.finished,
            "played_s": round(self._played_seconds, 2),
            "playback": {"dropped_seconds": {"overflow": round(self._overflow_seconds, 3)}},
        }

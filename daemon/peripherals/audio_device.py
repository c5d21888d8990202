"""Local sound devices through PyAudio (PortAudio): a microphone and a speaker.

PortAudio calls back on its own thread; the microphone hands each block to the
event loop with call_soon_threadsafe, and the speaker pulls from a bounded
buffer the loop fills. Both convert rates with a stateful resampler when the
device cannot run at the rate the daemon needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from daemon.errors import EdgeAgentError
from daemon.media.resample import Resampler
from daemon.media.types import SAMPLE_WIDTH, pcm_duration

log = logging.getLogger(__name__)


class AudioDeviceError(EdgeAgentError, OSError):
    """No such device, or it cannot be opened; the message says which and why."""


@dataclass(slots=True)
class AudioDeviceStats:
    """Counters of one sound device, for the kiosk's status."""
    blocks: int = 0
    overflows: int = 0  # PortAudio input overflow flags
    underruns: int = 0  # the speaker wanted audio and had some, but not enough
    dropped_blocks: int = 0  # the event loop fell behind the microphone
    dropped_seconds: float = 0.0  # playback audio over the buffer bound
    reopens: int = 0


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """PortAudio probes ALSA and JACK and prints to fd 2; keep that off the log."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_pa_lock = threading.Lock()
_pa: Any = None


def portaudio() -> Any:
    """The one PyAudio instance (PortAudio must be initialised once per process)."""
    global _pa
    with _pa_lock:
        if _pa is None:
            try:
                import pyaudio
            except ImportError as exc:  # pragma: no cover - packaging problem
                raise AudioDeviceError(f"PyAudio is not installed ({exc})") from None
            with _quiet_stderr():
                _pa = pyaudio.PyAudio()
        return _pa


def list_devices() -> list[dict[str, Any]]:
    """Every PortAudio device with its info (`edge-agent devices --audio`)."""
    pa = portaudio()
    return [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]


def find_device(name: str, *, output: bool) -> dict[str, Any]:
    """The device whose name contains `name` ("" = the system default)."""
    pa = portaudio()
    key = "maxOutputChannels" if output else "maxInputChannels"
    kind = "output" if output else "input"
    try:
        if not name:
            with _quiet_stderr():
                info: dict[str, Any] = (
                    pa.get_default_output_device_info() if output
                    else pa.get_default_input_device_info()
                )
            return info
    except OSError:
        raise AudioDeviceError(f"no default {kind} device") from None
    candidates = [d for d in list_devices() if d[key] > 0]
    for dev in candidates:
        if name.lower() in str(dev["name"]).lower():
            return dev
    have = ", ".join(repr(d["name"]) for d in candidates) or "none"
    raise AudioDeviceError(f"no {kind} device matching {name!r} (have: {have})")


def _open_rate(dev: dict[str, Any], want: int, *, output: bool) -> int:
    """`want` if the device takes it, else its default rate (we resample)."""
    import pyaudio

    pa = portaudio()
    kwargs: dict[str, Any] = {"rate": want}
    if output:
        kwargs.update(output_device=dev["index"], output_channels=1, output_format=pyaudio.paInt16)
    else:
        kwargs.update(input_device=dev["index"], input_channels=1, input_format=pyaudio.paInt16)
    try:
        with _quiet_stderr():
            pa.is_format_supported(**kwargs)
        return want
    except ValueError:
        return int(dev["defaultSampleRate"])


class SoundCardMicrophone:
    """Captures mono 16-bit PCM at `rate`, in blocks of `block_ms`, from a local device."""

    def __init__(self, device: str, rate: int, block_ms: int, *, max_backlog: int = 50) -> None:
        self._device_name = device
        self.rate = rate
        self.block_ms = block_ms
        self._max_backlog = max_backlog
        self._backlog = 0
        self.stats = AudioDeviceStats()
        self._stream: Any = None

    async def blocks(self) -> asyncio.Queue[bytes]:
        """Open the device; blocks arrive on the returned queue until close()."""
        import pyaudio

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        dev = find_device(self._device_name, output=False)
        dev_rate = _open_rate(dev, self.rate, output=False)
        resampler = Resampler(dev_rate, self.rate)
        frames = dev_rate * self.block_ms // 1000

        def deliver(pcm: bytes) -> None:
            self._backlog -= 1
            out = resampler.process(pcm)
            if out:
                queue.put_nowait(out)

        def callback(data: bytes | None, _n: int, _t: Any, status: int) -> tuple[None, int]:
            if status & pyaudio.paInputOverflow:
                self.stats.overflows += 1
            if data:
                if self._backlog >= self._max_backlog:
                    self.stats.dropped_blocks += 1
                else:
                    self._backlog += 1
                    self.stats.blocks += 1
                    loop.call_soon_threadsafe(deliver, data)
            return None, pyaudio.paContinue

        try:
            with _quiet_stderr():
                self._stream = portaudio().open(
                    format=pyaudio.paInt16, channels=1, rate=dev_rate, input=True,
                    input_device_index=dev["index"], frames_per_buffer=frames,
                    stream_callback=callback,
                )
        except OSError as exc:
            raise AudioDeviceError(f"cannot open input {dev['name']!r}: {exc}") from None
        log.info("microphone %r open at %d Hz", dev["name"], dev_rate)
        return queue

    @property
    def active(self) -> bool:
        """Whether the input stream is open and running."""
        return self._stream is not None and bool(self._stream.is_active())

    def close(self) -> None:
        """Stop and close the input stream; safe to call twice."""
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.stop_stream()
            stream.close()


class SoundCardSpeaker:
    """Plays mono 16-bit PCM on a local device from a bounded buffer; silence when dry.

    `rate` is what the device is asked to run at; audio at any other rate is
    resampled to what it was opened at (the model may not always speak 24 kHz).
    """

    def __init__(self, device: str, rate: int, *, max_seconds: float = 60.0) -> None:
        self._device_name = device
        self.rate = rate
        self._max_bytes = int(max_seconds * rate) * SAMPLE_WIDTH
        self._buf: deque[bytes] = deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self._resampler: Resampler | None = None
        self._dev_rate = rate  # until open() learns the rate the device runs at
        self.stats = AudioDeviceStats()
        self._stream: Any = None
        self.played_seconds = 0.0
        self.on_drained: Callable[[], None] | None = None

    def open(self) -> None:
        """Open the output stream at the rate the device can run."""
        import pyaudio

        dev = find_device(self._device_name, output=True)
        dev_rate = _open_rate(dev, self.rate, output=True)
        self._resampler = None  # made for the rate of the first audio played
        self._dev_rate = dev_rate
        frames = dev_rate // 50

        def callback(_in: Any, n: int, _t: Any, _status: int) -> tuple[bytes, int]:
            want = n * SAMPLE_WIDTH
            out = self._take(want)
            return out + b"\0" * (want - len(out)), pyaudio.paContinue

        try:
            with _quiet_stderr():
                self._stream = portaudio().open(
                    format=pyaudio.paInt16, channels=1, rate=dev_rate, output=True,
                    output_device_index=dev["index"], frames_per_buffer=frames,
                    stream_callback=callback,
                )
        except OSError as exc:
            raise AudioDeviceError(f"cannot open output {dev['name']!r}: {exc}") from None
        log.info("speaker %r open at %d Hz", dev["name"], dev_rate)

    def _take(self, want: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        with self._lock:
            had = self._buffered > 0
            while self._buf and got < want:
                head = self._buf[0]
                take = head[: want - got]
                parts.append(take)
                got += len(take)
                if len(take) == len(head):
                    self._buf.popleft()
                else:
                    self._buf[0] = head[len(take):]
            self._buffered -= got
            if had and got < want:
                self.stats.underruns += 1
        self.played_seconds += got / (SAMPLE_WIDTH * self._dev_rate)
        return b"".join(parts)

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue audio at `rate` (any positive rate): converted to the device's."""
        tail = b""
        resampler = self._resampler
        if resampler is None or resampler.in_rate != rate or resampler.out_rate != self._dev_rate:
            if resampler is not None:  # the end of the audio at the old rate
                tail = resampler.flush()
            log.debug("speaker: audio at %d Hz, played at %d Hz", rate, self._dev_rate)
            resampler = self._resampler = Resampler(rate, self._dev_rate)
        pcm = tail + resampler.process(pcm)
        with self._lock:
            if self._buffered + len(pcm) > self._max_bytes:
                self.stats.dropped_seconds += pcm_duration(len(pcm), self._dev_rate)
                return
            self._buf.append(pcm)
            self._buffered += len(pcm)

    def flush_playback(self) -> float:
        """Drop what is buffered; returns the seconds dropped."""
        if self._resampler is not None:  # nor the filter's tail of what was cut
            self._resampler.reset()
        with self._lock:
            dropped = self._buffered
            self._buf.clear()
            self._buffered = 0
        return pcm_duration(dropped, self._dev_rate)

    def playback_pending(self) -> float:
        """Seconds buffered and not yet played."""
        with self._lock:
            return pcm_duration(self._buffered, self._dev_rate)

    def close(self) -> None:
        """Stop and close the output stream; safe to call twice."""
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.stop_stream()
            stream.close()


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
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.audio.reference import DeviceClock
from daemon.errors import EdgeAgentError
from daemon.media.resample import Resampler
from daemon.media.types import SAMPLE_WIDTH, UPLINK_RATE, pcm_duration

if TYPE_CHECKING:
    from daemon.audio.reference import FarEndTimeline

log = logging.getLogger(__name__)

RAMP_MS = 5  # a change of the loudspeaker's gain (barge-in) is ramped over this long
REFERENCE_REST_S = 0.1  # nothing played this long: the reference resampler rests


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


def _stamp(clock: DeviceClock, time_info: Any, key: str) -> float:
    """PortAudio's stamp `key` on the monotonic clock; time.monotonic() if it gave none.

    Read right here, time.monotonic() is late by however long the callback waited
    for the interpreter lock; PortAudio's own stamps are not (DeviceClock)."""
    now = time.monotonic()
    try:
        pa_now, stamp = float(time_info["current_time"]), float(time_info[key])
    except (KeyError, TypeError, ValueError):
        return now
    if pa_now <= 0 or stamp <= 0:
        return now
    clock.observe(pa_now, now)
    return clock.to_monotonic(stamp)


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

    async def blocks(self) -> asyncio.Queue[tuple[bytes, float]]:
        """Open the device; (pcm, capture time of its last sample on time.monotonic())
        pairs arrive on the returned queue until close()."""
        import pyaudio

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        dev = find_device(self._device_name, output=False)
        dev_rate = _open_rate(dev, self.rate, output=False)
        resampler = Resampler(dev_rate, self.rate)
        frames = dev_rate * self.block_ms // 1000
        clock = DeviceClock()

        def deliver(pcm: bytes, captured_at: float) -> None:
            self._backlog -= 1
            out = resampler.process(pcm)
            if out:
                queue.put_nowait((out, captured_at))

        def callback(data: bytes | None, n: int, t: Any, status: int) -> tuple[None, int]:
            if status & pyaudio.paInputOverflow:
                self.stats.overflows += 1
            if data:
                if self._backlog >= self._max_backlog:
                    self.stats.dropped_blocks += 1
                else:
                    self._backlog += 1
                    self.stats.blocks += 1
                    at = _stamp(clock, t, "input_buffer_adc_time") + n / dev_rate
                    loop.call_soon_threadsafe(deliver, data, at)
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


class ReferenceWriter:
    """What the loudspeaker plays, resampled to the microphone's rate, onto the timeline.

    soxr hands out its output in bursts (nothing for one block, two blocks' worth
    the next), so each resampled piece is stamped by its own position in the
    stream, not by the block that released it. Once nothing has played for
    REFERENCE_REST_S the resampler is drained (its tail is silence) and rests:
    silent blocks go onto the timeline as zeros without it, and the next sound
    starts a new stream. Most of a kiosk's day is that silence.
    """

    def __init__(self, timeline: FarEndTimeline, dev_rate: int, frames: int) -> None:
        self.timeline = timeline
        self.dev_rate = dev_rate
        self._resampler = Resampler(dev_rate, UPLINK_RATE)
        self._in = self._out = 0  # samples into and out of the resampler (this stream)
        self._silent = 0  # samples of nothing played in a row (device rate)
        self.resting = False
        self._zeros = np.zeros(round(frames * UPLINK_RATE / dev_rate), dtype=np.int16)

    def played(self, out: bytes, at: float, *, silent: bool = False) -> None:
        """The block `out` leaves the loudspeaker at `at`; `silent`: it is all zeros."""
        n = len(out) // SAMPLE_WIDTH
        # (a block that does not resample to a whole number of samples never rests)
        exact = n * UPLINK_RATE == len(self._zeros) * self.dev_rate
        if not (silent and exact):
            self._silent = 0
            self.resting = False
        elif self.resting:
            self.timeline.played(self._zeros, at)
            return
        else:
            self._silent += n
            if self._silent >= self.dev_rate * REFERENCE_REST_S:
                # drained: the tail is silence; the next sound starts a new stream
                self._piece(self._resampler.process(out) + self._resampler.flush(), at, n)
                self._in = self._out = 0
                self.resting = True
                return
        self._piece(self._resampler.process(out), at, n)

    def _piece(self, pcm: bytes, at: float, n: int) -> None:
        """Put resampled audio on the timeline; `n` samples went in at `at`."""
        self._in += n
        m = len(pcm) // SAMPLE_WIDTH
        self._out += m
        if m:
            block_start = (self._in - n) / self.dev_rate
            piece_start = (self._out - m) / UPLINK_RATE
            self.timeline.played(np.frombuffer(pcm, dtype="<i2"), at + piece_start - block_start)


class SoundCardSpeaker:
    """Plays mono 16-bit PCM on a local device from a bounded buffer; silence when dry.

    `rate` is what the device is asked to run at; audio at any other rate is
    resampled to what it was opened at (the model may not always speak 24 kHz).
    """

    def __init__(self, device: str, rate: int, *, max_seconds: float = 60.0,
                 timeline: FarEndTimeline | None = None) -> None:
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
        # What is played, at the microphone's rate and stamped with the time it leaves
        # the loudspeaker: the echo canceller's far end (daemon.audio.reference).
        self.timeline = timeline
        self._reference: ReferenceWriter | None = None
        self._zeros = b""  # one block of silence at the device's rate (set by open)
        self.gain = 1.0  # set by barge-in: ducked or 0; ramped over one callback
        self._gain_now = 1.0
        self.paused = False  # barge-in: play silence and keep the queue
        self.last_sound_at = -1e9  # time.monotonic() of the last block that held audio
        self.quiet_at = -1e9  # when the last lowering of the gain left the loudspeaker

    def open(self) -> None:
        """Open the output stream at the rate the device can run."""
        import pyaudio

        dev = find_device(self._device_name, output=True)
        dev_rate = _open_rate(dev, self.rate, output=True)
        self._resampler = None  # made for the rate of the first audio played
        self._dev_rate = dev_rate
        frames = dev_rate // 100  # 10 ms: a barge-in is heard one short block later
        self._zeros = bytes(frames * SAMPLE_WIDTH)
        self._reference = (ReferenceWriter(self.timeline, dev_rate, frames)
                           if self.timeline is not None else None)
        reference = self._reference
        clock = DeviceClock()

        def callback(_in: Any, n: int, t: Any, _status: int) -> tuple[bytes, int]:
            want = n * SAMPLE_WIDTH
            out = b"" if self.paused and self._gain_now == 0.0 else self._take(want)
            silent = not out  # nothing to play: the block is all zeros
            if silent:
                out = self._zeros if want == len(self._zeros) else bytes(want)
            elif len(out) < want:
                out += bytes(want - len(out))
            at = _stamp(clock, t, "output_buffer_dac_time")
            if self.paused or self.gain != 1.0 or self._gain_now != 1.0:
                was = self._gain_now
                out = self._apply_gain(out)
                if self._gain_now < was:  # ducked or stopped: when it is heard so
                    self.quiet_at = at + RAMP_MS / 1000
            if reference is not None:
                reference.played(out, at, silent=silent)
            return out, pyaudio.paContinue

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

    @property
    def active(self) -> bool:
        """Whether the output stream is open and running."""
        return self._stream is not None and bool(self._stream.is_active())

    def _apply_gain(self, out: bytes) -> bytes:
        """Ramp from the gain in force to the one asked for over the block's first 5 ms
        (no click, and quiet soon), then hold it."""
        target = 0.0 if self.paused else self.gain
        x = np.frombuffer(out, dtype="<i2").astype(np.float32)
        n = min(len(x), max(1, self._dev_rate * RAMP_MS // 1000))
        gains = np.full(len(x), target, dtype=np.float32)
        gains[:n] = np.linspace(self._gain_now, target, n, dtype=np.float32)
        self._gain_now = target
        return bytes(np.clip(x * gains, -32768, 32767).astype("<i2").tobytes())

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
        if got:
            self.last_sound_at = time.monotonic()
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



def describe_devices() -> str:
    """`edge-agent devices --audio`: every device, its directions and default rate,
    and which are the defaults (a kiosk names one by part of its name)."""
    pa = portaudio()
    with _quiet_stderr():
        try:
            default_in = int(pa.get_default_input_device_info()["index"])
        except OSError:
            default_in = -1
        try:
            default_out = int(pa.get_default_output_device_info()["index"])
        except OSError:
            default_out = -1
    lines = ["index  in  out  rate    name"]
    for d in list_devices():
        marks = [m for m, i in (("default input", default_in), ("default output", default_out))
                 if i == d["index"]]
        note = f"  ({', '.join(marks)})" if marks else ""
        lines.append(f"{d['index']:>5}  {d['maxInputChannels']:>2}  {d['maxOutputChannels']:>3}  "
                     f"{int(d['defaultSampleRate']):>6}  {d['name']}{note}")
    if len(lines) == 1:
        lines.append("(none: no sound card, and no PulseAudio or PipeWire plugin)")
    return "\n".join(lines)

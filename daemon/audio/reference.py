"""What the loudspeaker played, at the capture rate, on the monotonic clock.

Why a timeline and not a queue: the echo canceller needs, for each microphone
frame, the samples that were leaving the loudspeaker while that frame was being
captured. The speaker's callback stamps every block it plays with the time its
first sample reaches the converter (PortAudio's DAC time, mapped to
time.monotonic()); the microphone stamps its blocks the same way. Looking the
reference up by time re-anchors on every played block, so a speaker clock that
drifts against the microphone's never accumulates an offset.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


class FarEndTimeline:
    """A ring of the last `seconds` of played audio (int16 at `rate`), anchored in time.

    Written by the speaker's thread (`played`), read by the event loop (`window`).
    Time that no block covered reads as silence.
    """

    def __init__(self, rate: int = 16_000, seconds: float = 2.0) -> None:
        self.rate = rate
        self._size = int(rate * seconds)
        self._ring = np.zeros(self._size, dtype=np.int16)
        self._written = 0  # samples ever written
        self._anchor_index = 0  # the sample index that played at _anchor_time
        self._anchor_time: float | None = None
        self._lock = threading.Lock()
        self.gaps = 0  # a block came later than the timeline's end: silence was filled in
        self.overlaps = 0  # a block came earlier than the end (clock jitter): it overwrote

    def played(self, pcm: Samples, at: float) -> None:
        """`pcm` started leaving the loudspeaker at monotonic time `at`."""
        n = len(pcm)
        if not n:
            return
        with self._lock:
            start = self._written
            if self._anchor_time is not None:
                expected = self._anchor_index + round((at - self._anchor_time) * self.rate)
                # Follow the device clock only when it strays by more than a few ms:
                # small jitter in the stamps must not chop the reference.
                if expected - self._written > self.rate // 100:
                    self.gaps += 1
                    self._write(np.zeros(min(expected - self._written, self._size), np.int16))
                    start = self._written
                elif self._written - expected > self.rate // 100:
                    self.overlaps += 1
            self._anchor_index, self._anchor_time = start, at
            self._write(pcm)

    def _write(self, pcm: Samples) -> None:
        n = len(pcm)
        if n >= self._size:
            pcm = pcm[-self._size :]
            self._written += n - self._size
            n = self._size
        pos = self._written % self._size
        first = min(n, self._size - pos)
        self._ring[pos : pos + first] = pcm[:first]
        self._ring[: n - first] = pcm[first:]
        self._written += n

    def window(self, end: float, n: int) -> Samples:
        """The `n` samples that were playing up to monotonic time `end` (silence if none)."""
        out = np.zeros(n, dtype=np.int16)
        with self._lock:
            if self._anchor_time is None:
                return out
            stop = self._anchor_index + round((end - self._anchor_time) * self.rate)
            start = stop - n
            lo = max(start, self._written - self._size, 0)
            hi = min(stop, self._written)
            if hi <= lo:
                return out
            pos = lo % self._size
            first = min(hi - lo, self._size - pos)  # up to the ring's end, then from its start
            out[lo - start : lo - start + first] = self._ring[pos : pos + first]
            out[lo - start + first : hi - start] = self._ring[: hi - lo - first]
        return out

    def reset(self) -> None:
        """Forget everything played (the speaker was reopened)."""
        with self._lock:
            self._ring[:] = 0
            self._written = 0
            self._anchor_index = 0
            self._anchor_time = None


class DeviceClock:
    """PortAudio's stream times (its own clock) on the monotonic clock.

    PyAudio's callback waits for the interpreter lock before it runs: on a busy
    machine it runs tens to hundreds of ms late, then several in a row. A
    `time.monotonic()` read there is late by that wait and bunches blocks together,
    which misaligns the far end and the microphone (seen as false barge-ins under
    load). PortAudio takes its stamps before the wait, so they stay right; the
    offset between the clocks is the smallest (monotonic - stream time) seen over
    `window_s` (the least delayed callback), which also follows a slow slew.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._mins: deque[tuple[float, float]] = deque()  # (seen at, offset), offsets rising

    def observe(self, stream_now: float, monotonic_now: float) -> None:
        """A callback ran: the stream's time then, and time.monotonic() read in it."""
        offset = monotonic_now - stream_now
        while self._mins and self._mins[-1][1] >= offset:
            self._mins.pop()
        self._mins.append((monotonic_now, offset))
        while self._mins[0][0] < monotonic_now - self.window_s:
            self._mins.popleft()

    def to_monotonic(self, stream_time: float) -> float:
        """A stream time (an ADC or DAC stamp) on the monotonic clock."""
        if not self._mins:
            raise ValueError("no callback observed yet")
        return stream_time + self._mins[0][1]

    def reset(self) -> None:
        """Forget the offset (the stream was reopened)."""
        self._mins.clear()

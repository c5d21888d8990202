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
            idx = np.arange(lo, hi) % self._size
            out[lo - start : hi - start] = self._ring[idx]
        return out

    def reset(self) -> None:
        """Forget everything played (the speaker was reopened)."""
        with self._lock:
            self._ring[:] = 0
            self._written = 0
            self._anchor_index = 0
            self._anchor_time = None

"""Streaming sample-rate conversion of 16-bit mono PCM.

Why stateful: resampling each 20 ms frame on its own leaves edge artefacts at every
frame boundary; `soxr.ResampleStream` keeps its filter history between chunks, so a
stream cut into arbitrary pieces resamples the same as the whole.
"""

from __future__ import annotations

from typing import Any

SAMPLE_WIDTH = 2


class Resampler:
    """`process` 16-bit LE mono PCM bytes from `in_rate` to `out_rate`; identity if equal.

    soxr holds back a few milliseconds of filter delay; `flush` returns that tail at the
    end of a stream (or before a discontinuity) and leaves the resampler ready for a new
    stream. An odd trailing byte is carried to the next call rather than dropped.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"resampler: rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._carry = b""
        self._stream: Any = None
        if in_rate != out_rate:  # soxr and numpy only when rates differ
            self._stream = _new_stream(in_rate, out_rate, quality)

    @property
    def identity(self) -> bool:
        """Whether the rates are equal, so `process` passes audio through untouched."""
        return self._stream is None

    def process(self, pcm: bytes) -> bytes:
        """The resampled audio available so far; an odd trailing byte waits for the next call."""
        data = self._carry + pcm if self._carry else pcm
        if len(data) % SAMPLE_WIDTH:
            self._carry = data[-1:]
            data = data[:-1]
        else:
            self._carry = b""
        if self._stream is None or not data:
            return bytes(data)
        import numpy as np

        samples = np.frombuffer(data, dtype="<i2")
        out = self._stream.resample_chunk(samples, last=False)
        return bytes(np.asarray(out, dtype="<i2").tobytes())

    def flush(self) -> bytes:
        """Drain the filter tail and start afresh (the next `process` is a new stream)."""
        self._carry = b""
        if self._stream is None:
            return b""
        import numpy as np

        out = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        self._stream = _new_stream(self.in_rate, self.out_rate, self._quality)
        return bytes(np.asarray(out, dtype="<i2").tobytes())

    def reset(self) -> None:
        """Drop buffered state without returning it (after a discontinuity)."""
        self._carry = b""
        if self._stream is not None:
            self._stream.clear()


def _new_stream(in_rate: int, out_rate: int, quality: str) -> Any:
    import soxr

    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)

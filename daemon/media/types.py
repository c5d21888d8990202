"""Media values that travel between peripherals, the Agent and the Live link."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_WIDTH = 2  # 16-bit little-endian PCM everywhere
UPLINK_RATE = 16_000
DOWNLINK_RATE = 24_000


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono 16-bit little-endian PCM; `captured_at` is time.monotonic() at capture."""

    pcm: bytes
    rate: int
    captured_at: float

    @property
    def duration(self) -> float:
        """Seconds of audio in the chunk."""
        return len(self.pcm) / (SAMPLE_WIDTH * self.rate)


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One JPEG image; `captured_at` is time.monotonic() when it was complete."""

    jpeg: bytes
    captured_at: float
    width: int = 0
    height: int = 0


def pcm_duration(n_bytes: int, rate: int) -> float:
    """Seconds of 16-bit mono audio in `n_bytes` at `rate`."""
    return n_bytes / (SAMPLE_WIDTH * rate)

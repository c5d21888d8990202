"""WAV files as mono 16-bit PCM at the rate the caller needs."""

from __future__ import annotations

import wave
from pathlib import Path

from daemon.errors import EdgeAgentError
from daemon.media.types import SAMPLE_WIDTH


class WavError(EdgeAgentError, ValueError):
    """The file is missing, unreadable or not 16-bit PCM; the message names it."""


def read_wav(path: Path | str, rate: int | None = None, *, max_seconds: float | None = None) -> (
    tuple[bytes, int]
):
    """The file's PCM, stereo averaged to mono, resampled to `rate` if given."""
    try:
        with wave.open(str(path), "rb") as wf:
            if wf.getsampwidth() != SAMPLE_WIDTH:
                raise WavError(f"{path}: must be 16-bit PCM, is {8 * wf.getsampwidth()}-bit")
            src, channels, frames = wf.getframerate(), wf.getnchannels(), wf.getnframes()
            if max_seconds is not None and frames > src * max_seconds:
                raise WavError(f"{path}: longer than {max_seconds:g} s")
            raw = wf.readframes(frames)
    except FileNotFoundError:
        raise WavError(f"{path}: no such file") from None
    except (wave.Error, EOFError) as exc:
        why = str(exc) or ("it ends too soon" if isinstance(exc, EOFError) else "unreadable")
        raise WavError(f"{path}: not a readable WAV file ({why})") from None
    raw = raw[: len(raw) - len(raw) % SAMPLE_WIDTH]
    if channels == 1 and (rate is None or rate == src):
        return raw, src  # nothing to convert: no numpy
    import numpy as np
    import soxr

    samples = np.frombuffer(raw, dtype="<i2")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
        samples = samples.mean(axis=1).astype("<i2")
    if rate is not None and rate != src and samples.size:
        samples = np.asarray(soxr.resample(samples, src, rate), dtype="<i2")
        src = rate
    return samples.tobytes(), src

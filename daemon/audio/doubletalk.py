"""Is the user speaking over the loudspeaker? Judged from what the daemon plays.

An echo canceller's suppressor, unsure during double talk, may take the user's
voice out with the echo (WebRTC AEC3 does at 0 dB speech-to-echo in a reverberant
room: see bench/RESULTS.md). So barge-in is not judged from the suppressed
signal alone. The daemon knows every sample it plays: `EchoLevelModel` learns, per
frequency band, how the played power shows up in the microphone's power (delay,
gain and reverberation as a short non-negative filter over past frames, adapted
by normalised LMS on powers). Where the microphone holds markedly more than that
expected echo, someone else is talking. `NearEndDetector` asks for that excess
over a few consecutive frames and for the canceller's output to carry energy too.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from daemon.audio.reference import Samples

Floats = npt.NDArray[np.float64]


class EchoLevelModel:
    """Expected echo power per band from the reference's recent band powers."""

    def __init__(self, rate: int = 16_000, frame: int = 160, *, bands: int = 8,
                 memory_ms: int = 500, step: float = 0.3) -> None:
        self.frame = frame
        self._taps = max(1, memory_ms * rate // (1000 * frame))
        self._step = step
        freqs = np.fft.rfftfreq(2 * frame, 1 / rate)
        edges = np.geomspace(150.0, min(7000.0, rate / 2 - 1), bands + 1)
        band_of = np.digitize(freqs, edges) - 1
        # bin -> band sums as one matrix product for the microphone and the reference
        self._to_bands = np.zeros((len(freqs), bands))
        valid = (band_of >= 0) & (band_of < bands)
        self._to_bands[np.flatnonzero(valid), band_of[valid]] = 1.0
        self._bands = bands
        self._window = np.hanning(2 * frame)
        self._x = np.zeros((self._taps, bands))  # newest first
        self._h = np.zeros((self._taps, bands))
        self._noise: Floats | None = None
        self.learned = 0  # frames the model learned from (the reference was playing)
        # rows: microphone, reference; the previous frame then this one (50 % overlap)
        self._pair = np.zeros((2, 2 * frame))
        self._ref_silent = True  # the reference's two frames are all zero (no FFT needed)

    def _powers(self, mic: Samples, ref: Samples) -> tuple[Floats, Floats]:
        """Band powers of the microphone and the reference over their last two frames;
        one FFT call for both, and none for a reference that has been silent for two."""
        f = self.frame
        pair = self._pair
        pair[:, :f] = pair[:, f:]
        pair[0, f:] = mic
        pair[1, f:] = ref
        was_silent, self._ref_silent = self._ref_silent, not ref.any()
        rows = pair[:1] if was_silent and self._ref_silent else pair
        spec = np.fft.rfft(rows * self._window, axis=1)
        bands = (spec.real**2 + spec.imag**2) @ self._to_bands
        return bands[0], (bands[1] if len(bands) > 1 else np.zeros(self._bands))

    def excess(self, mic: Samples, ref: Samples) -> float:
        """Mean over bands of log10(mic / (expected echo + noise)), each clipped to [0, 2].

        Learns from every frame, but an error above three times the expectation is
        clipped, so a talker cannot teach the model that the echo is loud.
        """
        y, x = self._powers(mic, ref)
        xs = self._x
        xs[1:] = xs[:-1]  # shift in place: the newest frame first
        xs[0] = x
        expected = np.einsum("tb,tb->b", self._h, xs)
        # noise floor: follows the minimum down at once, creeps up ~4 dB/s
        noise = y if self._noise is None else np.minimum(self._noise * 1.01, y)
        self._noise = noise = np.maximum(noise, 1.0)
        ratio = y / (expected + 2 * noise)
        score = float(np.mean(np.clip(np.log10(np.maximum(ratio, 1e-6)), 0.0, 2.0)))
        if x.any():
            err = np.minimum(y, 3 * expected + 4 * noise) - expected
            norm = np.einsum("tb,tb->b", xs, xs) + 1e-9
            h = self._h
            h += xs * (self._step * err / norm)
            np.maximum(h, 0.0, out=h)
            self.learned += 1
        return score

    def reset(self) -> None:
        """Forget the echo path (a new device)."""
        self._h[:] = 0.0
        self._x[:] = 0.0
        self.learned = 0


def level_db(x: Samples) -> float:
    """Mean power of int16 samples in dB relative to full scale."""
    if not len(x):
        return -120.0
    f = x.astype(np.float64)
    return 10 * math.log10(float(np.dot(f, f)) / len(f) / (32768.0**2) + 1e-12)


class NearEndDetector:
    """Says when the user talks over the loudspeaker, frame by frame (10 ms).

    Two things must hold for `frames` consecutive frames: the microphone exceeds
    the expected echo (`EchoLevelModel.excess` >= `threshold`), and the echo
    canceller's output is `out_margin_db` above its own floor and no more than
    `kept_db` below the microphone (the canceller did not find it all to be echo:
    a talker keeps most of their level through it, residual echo does not).
    """

    def __init__(self, rate: int = 16_000, frame: int = 160, *, threshold: float = 0.3,
                 frames: int = 3, out_margin_db: float = 15.0, kept_db: float = 20.0,
                 warmup_frames: int = 100) -> None:
        self.model = EchoLevelModel(rate, frame)
        self.warmup_frames = warmup_frames  # the echo path is unknown until it has been heard
        self.threshold = threshold
        self.frames = frames
        self.out_margin_db = out_margin_db
        self.kept_db = kept_db
        self._run = 0
        self._out_floor = -60.0
        self.last_excess = 0.0

    def step(self, mic: Samples, ref: Samples, out: Samples | None, *,
             levels: tuple[float, float] | None = None) -> bool:
        """One frame: True while the user is judged to be talking over the playback.
        `levels`: (microphone, output) in dBFS when the caller has them already."""
        self.last_excess = excess = self.model.excess(mic, ref)
        loud = True
        if out is not None:
            mic_db, out_db = levels if levels is not None else (level_db(mic), level_db(out))
            self._out_floor = min(out_db, self._out_floor + 0.02)  # ~2 dB/s upward creep
            loud = (out_db >= self._out_floor + self.out_margin_db
                    and out_db >= mic_db - self.kept_db)
        self._run = self._run + 1 if excess >= self.threshold and loud else 0
        return self._run >= self.frames and self.model.learned >= self.warmup_frames

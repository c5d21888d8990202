"""Wake word (and stop word) detection with openWakeWord's models from `pyopen-wakeword`.

The models ship inside the wheel (hey_jarvis, alexa, hey_mycroft, hey_rhasspy,
okay_nabu) or come as a path to a `.tflite` file: nothing is downloaded. The
melspectrogram and embedding stages cost ~5.5 % of a core when fed continuously
(one TFLite thread; about 2.5x less with XNNPACK, `daemon.audio.threads`),
so audio is fed only around voice: the last `context_s` before the voice
detector opens, and until `linger_s` after it closes. A detection is
followed by `refractory_s` in which the word is not reported again.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from daemon.audio.reference import Samples
from daemon.audio.threads import openwakeword_one_thread, openwakeword_xnnpack
from daemon.errors import EdgeAgentError

CHUNK = 1280  # 80 ms: openWakeWord's step
BUILTIN = ("hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy", "okay_nabu")


class WakeWordUnavailable(EdgeAgentError, RuntimeError):
    """The wake word model cannot be loaded; the message says which and why."""


class _Features:
    """The shared front half (mel + embedding); one per detector set."""

    def __init__(self) -> None:
        try:
            from pyopen_wakeword import OpenWakeWordFeatures
        except (ImportError, OSError) as exc:
            raise WakeWordUnavailable(f"pyopen-wakeword is not usable ({exc})") from None
        self.engine: Any = OpenWakeWordFeatures.from_builtin()


def _model(name: str) -> Any:
    from pyopen_wakeword import Model, OpenWakeWord

    if name in BUILTIN:
        return OpenWakeWord.from_builtin(Model(name))
    path = Path(name)
    if path.suffix != ".tflite" or not path.is_file():
        raise WakeWordUnavailable(
            f"{name!r} is neither a built-in model ({', '.join(BUILTIN)}) nor a .tflite file")
    return OpenWakeWord.from_model(path)


class WakeWords:
    """Scores one or more words on the same audio; `feed` 10 ms frames with the VAD's verdict."""

    def __init__(self, words: dict[str, str], *, threshold: float = 0.5,
                 refractory_s: float = 2.0, context_s: float = 0.8, linger_s: float = 0.5,
                 frame: int = 160, rate: int = 16_000) -> None:
        self._features = _Features().engine
        try:
            self._models = {label: _model(name) for label, name in words.items()}
        except (OSError, ValueError) as exc:
            raise WakeWordUnavailable(f"cannot load {words}: {exc}") from None
        # TFLite's own thread pool costs ~1.5x the CPU of one thread (daemon.audio.threads)
        self.one_thread = openwakeword_one_thread(self._features, list(self._models.values()))
        self.xnnpack = self.one_thread and openwakeword_xnnpack(self._features)
        self.threshold = threshold
        self.refractory_s = refractory_s
        self._context: deque[Samples] = deque(maxlen=int(context_s * rate) // frame)
        self._linger_frames = int(linger_s * rate) // frame
        self._quiet = self._linger_frames
        self._pending = np.zeros(0, dtype=np.int16)
        self._last_hit: dict[str, float] = {}
        self.fed_frames = 0
        self.frames = 0
        self.scores: dict[str, float] = dict.fromkeys(words, 0.0)

    def feed(self, frame: Samples, voice: bool, now: float) -> list[str]:
        """The words heard in this frame (usually none)."""
        self.frames += 1
        self._quiet = 0 if voice else self._quiet + 1
        if self._quiet > self._linger_frames:
            self._context.append(frame)
            return []
        if self._context:  # voice began: the second before it first
            chunks = [*self._context, frame]
            self._context.clear()
        else:
            chunks = [frame]
        heard: list[str] = []
        for c in chunks:
            heard += self._score(c, now)
        return heard

    def _score(self, frame: Samples, now: float) -> list[str]:
        self.fed_frames += 1
        self._pending = np.concatenate([self._pending, frame])
        heard: list[str] = []
        while len(self._pending) >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            for emb in self._features.process_streaming(chunk.tobytes()):
                for label, model in self._models.items():
                    for p in model.process_streaming(emb):
                        self.scores[label] = max(self.scores[label] * 0.9, float(p))
                        if p >= self.threshold and self._ready(label, now):
                            self._last_hit[label] = now
                            heard.append(label)
        return heard

    def _ready(self, label: str, now: float) -> bool:
        return now - self._last_hit.get(label, -1e9) >= self.refractory_s

"""Real speech for audio tests (`simulator.soundcard.speech`); a machine without
libespeak-ng skips the test that asks for it (scripts/bootstrap installs espeak-ng)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from simulator.soundcard import speech as _speech
from simulator.soundcard.speech import (
    MODEL_TEXT,
    MODEL_VOICE,
    USER_TEXTS,
    USER_VOICE,
    SpeechUnavailable,
    to_int16,
)

__all__ = ["MODEL_TEXT", "MODEL_VOICE", "USER_TEXTS", "USER_VOICE", "speak", "to_int16"]


def speak(text: str, voice: str = MODEL_VOICE, rate: int = 16_000,
          **kw: Any) -> npt.NDArray[np.float64]:
    """`simulator.soundcard.speech.speak`, or a skip where espeak-ng is missing."""
    try:
        return _speech.speak(text, voice, rate, **kw)
    except SpeechUnavailable as exc:
        pytest.skip(str(exc))

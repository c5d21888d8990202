"""Real speech for the kiosk's demo and tests, made in-process by libespeak-ng (Debian `espeak-ng`).

Echo cancellers and voice detectors behave very differently on speech than on
tones (a canceller that keeps a voice through double talk may crush a harmonic
test signal), so the front end is tested with speech. libespeak-ng is called
through ctypes, not as a program, so unit tests (which start no process) can use
it. Deterministic for one espeak-ng build; cached per process.
"""

from __future__ import annotations

import ctypes
import functools
import threading

import numpy as np
import numpy.typing as npt
import soxr

from daemon.errors import EdgeAgentError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)
_lock = threading.Lock()


class SpeechUnavailable(EdgeAgentError, RuntimeError):
    """libespeak-ng is missing or cannot start; the message says how to get it."""

# Texts long enough to hold a far end and a talker apart.
MODEL_TEXT = (
    "The weather today is mostly sunny with a light breeze from the west. Later this "
    "afternoon clouds will gather, and there is a chance of rain in the evening. "
    "Temperatures will reach twenty two degrees, and tomorrow looks much the same, with a "
    "cooler night and fog near the river in the early morning."
)
USER_TEXTS = (
    "Stop, wait a moment.",
    "Turn on the kitchen lights please.",
    "No, I meant tomorrow.",
    "Hey, what time is it?",
    "Cancel that.",
    "Play some music instead.",
)
MODEL_VOICE = "en-us"
USER_VOICE = "en-gb+f3"


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL, int]:
    try:  # the Debian soname: ctypes.util.find_library would run ldconfig (a process)
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError as exc:
        raise SpeechUnavailable(f"libespeak-ng is not installed ({exc}); "
                                "scripts/bootstrap installs espeak-ng") from None
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, None, 0)
    if rate <= 0:
        raise SpeechUnavailable("libespeak-ng could not initialise (no espeak-ng-data?)")
    return lib, rate


@functools.lru_cache(maxsize=64)
def _speak(text: str, voice: str, words_per_minute: int) -> tuple[bytes, int]:
    lib, rate = _library()
    chunks: list[bytes] = []

    def collect(wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        if n > 0:
            chunks.append(ctypes.string_at(wav, n * 2))
        return 0

    callback = _CALLBACK(collect)
    with _lock:
        lib.espeak_SetSynthCallback(callback)
        lib.espeak_SetVoiceByName(voice.encode())
        lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        data = text.encode()
        lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
    return b"".join(chunks), rate


def speak(text: str, voice: str = MODEL_VOICE, rate: int = 16_000, *,
          words_per_minute: int = 165, peak: float = 0.5) -> npt.NDArray[np.float64]:
    """`text` spoken by espeak-ng `voice`, as floats at `rate`, peak-normalised to `peak`."""
    pcm, native = _speak(text, voice, words_per_minute)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    if native != rate:
        x = soxr.resample(x, native, rate)
    top = float(np.max(np.abs(x))) if len(x) else 0.0
    return x * (peak / top) if top else x


def to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """Floats in [-1, 1] as int16 samples (clipped)."""
    return np.asarray(np.clip(np.round(x * 32767.0), -32768, 32767), dtype=np.int16)

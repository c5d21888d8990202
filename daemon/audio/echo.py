"""Echo cancellers: the microphone minus what the loudspeaker put into it.

Each takes 10 ms of microphone audio and the 10 ms of reference (what was
playing, from `FarEndTimeline`) and returns the microphone with the echo taken
out. Chosen by measurement (bench/kiosk_frontend.py, bench/RESULTS.md):

- `webrtc`: WebRTC's audio processing (AEC3, optional noise suppression) through
  `aec-audio-processing`. Its own delay estimator finds the echo path's delay.
- `speex`: libspeexdsp's MDF canceller (Debian `libspeexdsp1`) through ctypes,
  kept as the light alternative; it adapts in seconds, not in one.

The libraries are imported when a canceller is made, never at module import:
the daemon pays for them only in kiosk mode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Protocol

import numpy as np

from daemon.audio.reference import Samples
from daemon.errors import EdgeAgentError

FRAME_MS = 10


class CancellerUnavailable(EdgeAgentError, RuntimeError):
    """The echo canceller asked for cannot run here; the message says why."""


class Canceller(Protocol):
    """Removes the loudspeaker's echo from the microphone, 10 ms at a time."""

    name: str
    frame: int  # samples per call

    def process(self, mic: Samples, ref: Samples) -> Samples:
        """`mic` with the echo of `ref` removed; both `frame` samples long."""

    def close(self) -> None:
        """Release the native state."""


class WebRtcCanceller:
    """WebRTC AEC3 (and optionally its noise suppressor); automatic gain off."""

    name = "webrtc"

    def __init__(self, rate: int = 16_000, *, noise_suppression: bool = True) -> None:
        try:
            from aec_audio_processing import AudioProcessor
        except (ImportError, OSError) as exc:
            raise CancellerUnavailable(f"aec-audio-processing is not usable ({exc})") from None
        self.frame = rate * FRAME_MS // 1000
        self._apm: Any = AudioProcessor(
            enable_aec=True, enable_ns=noise_suppression, ns_level=1,
            enable_agc=False, enable_vad=False,
        )
        self._apm.set_stream_format(rate, 1)
        self._apm.set_reverse_stream_format(rate, 1)
        self._apm.set_stream_delay(0)  # the reference is already aligned by time
        # +-1 LSB (-90 dBFS) stands in for a far end of exact zeros: on zeros after
        # speech AEC3's float state decays into subnormal numbers and each frame costs
        # ~15x the CPU (1.5 ms instead of 0.1 ms here), with the same output
        self._dither = np.random.default_rng(0).integers(-1, 2, 100 * self.frame, np.int16)
        self._dither_at = 0

    def process(self, mic: Samples, ref: Samples) -> Samples:
        """One 10 ms frame: the reference first, as the APM expects."""
        if not ref.any():
            k = self._dither_at
            self._dither_at = (k + self.frame) % len(self._dither)
            ref = self._dither[k : k + self.frame]
        self._apm.process_reverse_stream(ref.tobytes())
        out = self._apm.process_stream(mic.tobytes())
        return np.frombuffer(out, dtype=np.int16)

    def close(self) -> None:
        """Dropped with the object (SWIG frees it)."""
        self._apm = None


_SPEEX_ECHO_SET_SAMPLING_RATE = 24
_SPEEX_PREPROCESS_SET_DENOISE = 0
_SPEEX_PREPROCESS_SET_ECHO_STATE = 24


def _speex_library() -> Any:
    try:  # the Debian soname first: find_library runs ldconfig, a process
        lib = ctypes.CDLL("libspeexdsp.so.1")
    except OSError:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("speexdsp") or "libspeexdsp.so")
        except OSError as exc:
            raise CancellerUnavailable(f"libspeexdsp is not installed ({exc})") from None
    vp, i = ctypes.c_void_p, ctypes.c_int
    lib.speex_echo_state_init.restype = vp
    lib.speex_echo_state_init.argtypes = [i, i]
    lib.speex_echo_cancellation.argtypes = [vp, vp, vp, vp]
    lib.speex_echo_ctl.argtypes = [vp, i, vp]
    lib.speex_echo_state_destroy.argtypes = [vp]
    lib.speex_preprocess_state_init.restype = vp
    lib.speex_preprocess_state_init.argtypes = [i, i]
    lib.speex_preprocess_ctl.argtypes = [vp, i, vp]
    lib.speex_preprocess_run.argtypes = [vp, vp]
    lib.speex_preprocess_state_destroy.argtypes = [vp]
    return lib


class SpeexCanceller:
    """libspeexdsp's MDF echo canceller plus its residual-echo suppressor."""

    name = "speex"

    def __init__(self, rate: int = 16_000, *, tail_ms: int = 300) -> None:
        self._lib = _speex_library()
        self.frame = rate * FRAME_MS // 1000
        self._echo = self._lib.speex_echo_state_init(self.frame, rate * tail_ms // 1000)
        value = ctypes.c_int(rate)
        self._lib.speex_echo_ctl(self._echo, _SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(value))
        self._pre = self._lib.speex_preprocess_state_init(self.frame, rate)
        self._lib.speex_preprocess_ctl(self._pre, _SPEEX_PREPROCESS_SET_ECHO_STATE,
                                       ctypes.c_void_p(self._echo))
        off = ctypes.c_int(0)
        self._lib.speex_preprocess_ctl(self._pre, _SPEEX_PREPROCESS_SET_DENOISE, ctypes.byref(off))
        self._out = np.zeros(self.frame, dtype=np.int16)

    def process(self, mic: Samples, ref: Samples) -> Samples:
        """One 10 ms frame through the adaptive filter, then the residual suppressor."""
        m = np.ascontiguousarray(mic, dtype=np.int16)
        r = np.ascontiguousarray(ref, dtype=np.int16)
        out = np.empty(self.frame, dtype=np.int16)
        self._lib.speex_echo_cancellation(self._echo, m.ctypes.data, r.ctypes.data,
                                          out.ctypes.data)
        self._lib.speex_preprocess_run(self._pre, out.ctypes.data)
        return out

    def close(self) -> None:
        """Free the native states; safe to call twice (and after a failed start)."""
        if getattr(self, "_pre", None):
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if getattr(self, "_echo", None):
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __del__(self) -> None:
        self.close()


CANCELLERS = ("webrtc", "speex")


def make_canceller(name: str, rate: int = 16_000, *, noise_suppression: bool = True) -> Canceller:
    """The canceller called `name`; CancellerUnavailable when its library is missing."""
    if name == "webrtc":
        return WebRtcCanceller(rate, noise_suppression=noise_suppression)
    if name == "speex":
        return SpeexCanceller(rate)
    raise CancellerUnavailable(f"no echo canceller called {name!r} (have: {', '.join(CANCELLERS)})")

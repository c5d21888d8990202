"""The kiosk's audio front end: echo out, voice found, silence held back, barge-in.

One call per captured block (16 kHz int16, any multiple of 10 ms), with the
block's capture time and a `FarEndTimeline` of what the loudspeaker played. Per
10 ms frame: the echo mode removes the echo (a canceller fed the true far end),
or gates the microphone while the model speaks (half-duplex), or does nothing
(off: a headset); the voice detector judges the cleaned frame; the gate decides
what goes up; the barge-in machine decides the loudspeaker's gain.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from daemon.audio.bargein import BargeIn, Playback
from daemon.audio.doubletalk import NearEndDetector, level_db
from daemon.audio.echo import Canceller
from daemon.audio.gate import SpeechGate
from daemon.audio.listen import ListenPolicy
from daemon.audio.reference import FarEndTimeline, Samples
from daemon.audio.vad import StreamVad
from daemon.audio.wakeword import WakeWords

RATE = 16_000
FRAME = 160  # 10 ms
FRAME_S = FRAME / RATE
CONVERGED_ERLE_DB = 15.0
THINKING_S = 10.0  # an utterance ended this recently and no answer yet: thinking
LISTENER_EXCESS = 0.1  # expected-echo excess that lets the listener's voice barge in
EXCESS_FRAMES = 5  # ... within the last 50 ms
BARGE_PREROLL_MS = 700  # sent from before a confirmed barge-in's duck (its onset came first)
SILENT_REF_DB = -50.0  # a far end quieter than this plays nothing (no ERLE reading)
LISTENER_REST_FRAMES = 40  # 400 ms of silent far end, past the listener's 300 ms filter


@dataclass(frozen=True, slots=True)
class FrontEndOptions:
    """Tuning of the front end (the `[peripheral.kiosk]` keys map onto these)."""

    echo: str = "webrtc"  # webrtc | speex | half_duplex | off (after "auto" is resolved)
    gate: bool = True  # VAD gating of the uplink (needs a VAD)
    barge_in: bool = True
    preroll_ms: int = 300
    hangover_ms: int = 600
    echo_tail_ms: int = 300  # half-duplex: the microphone stays shut this long after playback
    duck_db: float = 20.0
    resume_after_s: float = 1.5
    listen: str = "always"  # always | wake_word | push_to_talk (daemon.audio.listen)
    listen_window_s: float = 6.0
    follow_up_s: float = 6.0


@dataclass(slots=True)
class FrontEndStep:
    """What one block produced."""

    send: bytes = b""  # audio for the uplink (may be empty: silence held back)
    started: bool = False  # an utterance began in this block
    ended: bool = False  # an utterance ended: end the audio stream
    gain: float = 1.0  # the loudspeaker's gain from now on
    playback: Playback = Playback.IDLE
    voice: bool = False  # the detector's verdict on the block's last frame
    stop: bool = False  # the stop word was heard: cut the model off
    listening_started: bool = False  # a listening window opened (earcon)
    listening_stopped: bool = False  # it closed (earcon)


@dataclass(slots=True)
class FrontEndStats:
    """Counters and readings for status and /metrics."""

    frames: int = 0
    gated_frames: int = 0  # half-duplex: frames withheld while the model spoke
    voice_frames: int = 0
    erle_db: float = 0.0  # echo return loss enhancement, smoothed over far-end frames
    expected_echo_excess: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class FrontEnd:
    """Echo mode + voice detector + uplink gate + barge-in, on 10 ms frames."""

    def __init__(self, options: FrontEndOptions, *, canceller: Canceller | None,
                 vad: StreamVad | None, timeline: FarEndTimeline,
                 words: WakeWords | None = None, listener: Canceller | None = None) -> None:
        if options.echo in ("webrtc", "speex") and canceller is None:
            raise ValueError(f"echo mode {options.echo!r} needs a canceller")
        self.options = options
        self.canceller = canceller
        self.vad = vad
        self.timeline = timeline
        self.detector = NearEndDetector(RATE, FRAME)
        self.gate = SpeechGate(preroll_ms=options.preroll_ms, hangover_ms=options.hangover_ms)
        self.barge = BargeIn(duck_gain=10 ** (-options.duck_db / 20),
                             resume_after_s=options.resume_after_s)
        self.words = words
        # A second, gentler canceller the VAD listens through once it has converged
        # (libspeexdsp: slow to converge, shallow, but it keeps a voice in double talk
        # that WebRTC's suppressor chops; see bench/RESULTS.md). The uplink stays the
        # main canceller's output.
        self.listener = listener
        self._listener_erle = 0.0
        self.listener_converged = False
        self.listener_converged_at: float | None = None
        self._excess: deque[float] = deque([0.0], maxlen=EXCESS_FRAMES)
        self._ref_quiet = 0  # frames since the reference was last above SILENT_REF_DB
        self.listener_rested = 0  # frames the listener was not run (nothing playing)
        self.listen = ListenPolicy(options.listen, window_s=options.listen_window_s,
                                   follow_up_s=options.follow_up_s)
        self.stats = FrontEndStats()
        self._thinking_since: float | None = None
        self._answering = False
        self._carry = np.zeros(0, dtype=np.int16)
        self._shut_until = 0.0
        self._converged = False
        # (microphone, cleaned, voice) of every frame: for benchmarks and diagnostics
        self.tap: Callable[[Samples, Samples, bool], None] | None = None

    @property
    def gating(self) -> bool:
        """Whether silence is held back (a VAD is configured and gating is on); with
        push-to-talk the button gates the uplink, VAD or not."""
        return (self.vad is not None and self.options.gate) or self.listen.mode == "push_to_talk"

    def process(self, block: Samples, captured_at: float, *, playing: bool,
                answering: bool | None = None) -> FrontEndStep:
        """One captured block; `captured_at` is when its last sample was captured.

        `playing`: the loudspeaker plays (anything: its echo matters); `answering`:
        what it plays is the model's answer (not an earcon), which the listening
        mode's follow-up window waits for. Defaults to `playing`.
        """
        self._answering = playing if answering is None else answering
        data = np.concatenate([self._carry, block]) if len(self._carry) else block
        n = len(data) // FRAME
        self._carry = data[n * FRAME :]
        out = FrontEndStep(playback=self.barge.state, gain=self.barge.gain)
        sent: list[Samples] = []
        for k in range(n):
            frame = data[k * FRAME : (k + 1) * FRAME]
            at = captured_at - (n - 1 - k) * FRAME_S - len(self._carry) / RATE
            self._frame(frame, at, playing, out, sent)
        out.send = b"".join(s.tobytes() for s in sent)
        out.playback = self.barge.state
        out.gain = self.barge.gain
        return out

    def _frame(self, mic: Samples, at: float, playing: bool, out: FrontEndStep,
               sent: list[Samples]) -> None:
        self.stats.frames += 1
        mode = self.options.echo
        ref = self.timeline.window(at, FRAME)
        levels = (level_db(mic), level_db(ref))  # once a frame: the ERLE readings share them
        self._ref_quiet = 0 if levels[1] >= SILENT_REF_DB else self._ref_quiet + 1
        if mode == "off":
            clean, suspect = mic, False
        elif self.canceller is not None:
            clean = self.canceller.process(mic, ref)
            clean_db = level_db(clean) if playing or levels[1] >= SILENT_REF_DB else 0.0
            # the expected echo matters only while something plays (two FFTs a frame)
            suspect = (self.detector.step(mic, ref, clean, levels=(levels[0], clean_db))
                       if playing else False)
            self._erle(levels, clean_db)
        else:  # half-duplex: the raw microphone, shut while the model speaks
            clean = mic
            suspect = self.detector.step(mic, ref, None) if playing else False
        self._excess.append(self.detector.last_excess if playing else 0.0)
        judged = self._listened(mic, ref, levels, clean, at, playing)
        voice = self.vad.feed(judged) if self.vad is not None else False
        self.stats.voice_frames += voice
        out.voice = voice
        if self.tap is not None:
            self.tap(mic, clean, voice)
        self.stats.expected_echo_excess = round(self.detector.last_excess, 3)
        heard = self.words.feed(clean, voice, at) if self.words is not None else []
        policy = self.listen.step(at, words=heard, playing=self._answering,
                                  utterance_open=self.gate.open)
        out.stop |= policy.stop
        out.listening_started |= policy.started
        out.listening_stopped |= policy.stopped
        if self.listen.mode == "push_to_talk":
            voice = self.listen.listening  # the button, not the detector, says when
        elif not policy.open:
            voice = False  # not listening: no barge-in, no uplink
        if playing:
            self._thinking_since = None
        self._barge_and_gate(mic, clean, at, playing, suspect, voice, out, sent)

    def _barge_and_gate(self, mic: Samples, clean: Samples, at: float, playing: bool,
                        suspect: bool, voice: bool, out: FrontEndStep,
                        sent: list[Samples]) -> None:
        mode = self.options.echo
        if not self.listen.listening:
            suspect = False  # only the stop word cuts the model off outside a window
        if self.options.barge_in and mode != "off":
            # Half-duplex hears nothing through its shut microphone: the excess over
            # the expected echo is all it has, and it pauses at once. A canceller not
            # yet converged passes echo the VAD would call voice: the excess only.
            heard = voice if self.canceller is not None and self.converged else suspect
            if heard and playing and self._listening_through():
                # The listener is shallower than WebRTC: its residual echo can sound like
                # voice. Over the playback, voice counts for barge-in only where the
                # microphone also holds more than the expected echo.
                heard = max(self._excess) >= LISTENER_EXCESS
            self.barge.step(at, playing=playing, suspect=suspect, voice=heard)
        trusted = self.canceller is not None and self.converged
        if mode != "off" and not trusted and self._shut(at, playing):
            self.stats.gated_frames += 1
            if self.gate.close():
                out.ended = True
            return
        if not self.gating:
            sent.append(clean)
            return
        if trusted and self._audible(playing) and not self.gate.open:
            # While the model plays, voice in the cancelled signal may be residual echo:
            # only a confirmed barge-in (playback paused) opens the gate, with the
            # pre-roll kept meanwhile, so the user's onset still goes up.
            voice = False
        preroll = None
        if self.barge.state is Playback.PAUSED and self.barge.last_duck_at is not None:
            # back to before the duck: the onset came before it was suspected
            preroll = int((at - self.barge.last_duck_at) * 1000) + BARGE_PREROLL_MS
        step = self.gate.step(clean, voice, preroll_ms=preroll)
        sent.extend(step.send)
        out.started |= step.started
        out.ended |= step.ended
        if step.ended:
            self._thinking_since = at

    def assistant_state(self, now: float, playing: bool) -> str:
        """idle, listening, thinking or speaking: what an LED ring shows."""
        if playing:
            return "speaking"
        if self.gate.open or (self.listen.mode != "always" and self.listen.listening):
            return "listening"
        if self._thinking_since is not None and now - self._thinking_since < THINKING_S:
            return "thinking"
        return "idle"

    def _audible(self, playing: bool) -> bool:
        return playing and self.barge.state is not Playback.PAUSED

    def _shut(self, at: float, playing: bool) -> bool:
        """Half-duplex (or a canceller not yet converged): the uplink is shut while
        audible playback runs, and `echo_tail_ms` after."""
        audible = self._audible(playing)
        if audible:
            self._shut_until = at + self.options.echo_tail_ms / 1000
        return audible or at < self._shut_until

    @property
    def converged(self) -> bool:
        """Whether the canceller has shown it removes the echo (ERLE >= 15 dB once)."""
        return self._converged

    def _erle(self, levels: tuple[float, float], clean_db: float) -> None:
        mic_db, ref_db = levels
        if ref_db < SILENT_REF_DB:
            return
        erle = mic_db - clean_db
        self.stats.erle_db = round(0.98 * self.stats.erle_db + 0.02 * erle, 2)
        if self.stats.erle_db >= CONVERGED_ERLE_DB:
            self._converged = True

    def _listening_through(self) -> bool:
        """Whether the VAD judges the listener's output now (not the main canceller's)."""
        return self.listener is not None and self.listener_converged

    def _listened(self, mic: Samples, ref: Samples, levels: tuple[float, float],
                  clean: Samples, at: float, playing: bool) -> Samples:
        """What the VAD judges: while the model plays, the listener's output once it
        has shown it removes the echo (ERLE >= 15 dB, smoothed); else the main
        canceller's (quieter: Silero is skipped on silence). The listener adapts on
        every frame while something plays, and rests once nothing has played for
        longer than its filter reaches back (its far-end history is silence then, and
        its output is neither judged nor measured). (Feeding Silero the listener only
        where the expected-echo excess hints at a talker saved little CPU and lost
        1-4 points of VAD hits.)"""
        if self.listener is None or self.options.echo not in ("webrtc", "speex"):
            return clean
        if not playing and self._ref_quiet > LISTENER_REST_FRAMES:
            self.listener_rested += 1
            return clean
        out = self.listener.process(mic, ref)
        mic_db, ref_db = levels
        if ref_db >= SILENT_REF_DB:
            erle = mic_db - level_db(out)
            self._listener_erle = 0.98 * self._listener_erle + 0.02 * erle
            if not self.listener_converged and self._listener_erle >= CONVERGED_ERLE_DB:
                self.listener_converged, self.listener_converged_at = True, at
        return out if self.listener_converged and playing else clean

    def flushed(self) -> None:
        """The playback queue was dropped (the server interrupted the model)."""
        self.barge.flushed()

    def status(self) -> dict[str, Any]:
        """Mode, counters and readings (numbers end up in /metrics)."""
        s = asdict(self.stats)
        s.pop("extra")
        return {
            "echo": self.options.echo,
            "converged": self._converged,
            "listener": self.listener.name if self.listener is not None else "none",
            "listener_converged": self.listener_converged,
            "listener_erle_db": round(self._listener_erle, 2),
            "listener_rested_frames": self.listener_rested,
            "vad": self.vad.vad.name if self.vad is not None else "off",
            "playback": self.barge.state.value,
            **s,
            "listen": self.listen.mode,
            "listen_counts": asdict(self.listen.stats),
            "wake_word_fed_frames": self.words.fed_frames if self.words is not None else 0,
            "native_one_thread": {  # daemon.audio.threads: False = the library's own pool
                "vad": bool(getattr(self.vad.vad, "one_thread", False)) if self.vad else False,
                "wake_word": self.words.one_thread if self.words is not None else False,
                "wake_word_xnnpack": self.words.xnnpack if self.words is not None else False},
            "gate": asdict(self.gate.stats),
            "barge_in": asdict(self.barge.stats),
            "reference": {"gaps": self.timeline.gaps, "overlaps": self.timeline.overlaps},
        }

    def close(self) -> None:
        """Free the canceller's native state."""
        if self.canceller is not None:
            self.canceller.close()
        if self.listener is not None:
            self.listener.close()

"""Send speech, not silence: the uplink opens on voice and closes after it.

Streaming silence costs bandwidth and tokens and keeps the server's detector
busy. The gate holds the last `preroll_ms` of audio while closed and sends it
first when speech starts, so no onset is clipped by the detector's delay; it
keeps sending `hangover_ms` after the last speech (a pause between words is not
the end) and then says the utterance ended (the Live link sends audioStreamEnd).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from daemon.audio.reference import Samples


@dataclass(slots=True)
class GateStep:
    """What one frame did to the uplink."""

    send: list[Samples] = field(default_factory=list)
    started: bool = False  # an utterance began (its pre-roll is in `send`)
    ended: bool = False  # the utterance is over: end the audio stream now


@dataclass(slots=True)
class GateStats:
    """Counters of the gate, for status and /metrics."""

    frames_in: int = 0
    frames_sent: int = 0
    utterances: int = 0


class SpeechGate:
    """Opens on speech with pre-roll, closes `hangover_ms` after the last speech."""

    def __init__(self, frame_ms: int = 10, *, preroll_ms: int = 300,
                 hangover_ms: int = 600, max_preroll_ms: int = 2000) -> None:
        self._frame_ms = frame_ms
        self._preroll_frames = max(1, preroll_ms // frame_ms)
        self._preroll: deque[Samples] = deque(maxlen=max(self._preroll_frames,
                                                         max_preroll_ms // frame_ms))
        self._hang_frames = max(1, hangover_ms // frame_ms)
        self._quiet = 0
        self.open = False
        self.stats = GateStats()

    def step(self, frame: Samples, speech: bool, *, preroll_ms: int | None = None) -> GateStep:
        """One frame and the detector's verdict on it; `preroll_ms` widens the pre-roll
        of an utterance that opens now (a barge-in confirmed late after its onset)."""
        out = GateStep()
        self.stats.frames_in += 1
        if not self.open:
            if not speech:
                self._preroll.append(frame)
                return out
            self.open = out.started = True
            self.stats.utterances += 1
            keep = self._preroll_frames
            if preroll_ms is not None:
                keep = max(keep, preroll_ms // self._frame_ms)
            out.send.extend(list(self._preroll)[-keep:])
            self._preroll.clear()
        out.send.append(frame)
        self._quiet = 0 if speech else self._quiet + 1
        if self._quiet >= self._hang_frames:
            self.open = False
            out.ended = True
            self._quiet = 0
        self.stats.frames_sent += len(out.send)
        return out

    def close(self) -> bool:
        """Close now (the microphone is gated or muted); True if it was open."""
        was = self.open
        self.open = False
        self._quiet = 0
        self._preroll.clear()
        return was

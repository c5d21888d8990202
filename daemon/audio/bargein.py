"""Barge-in on the loudspeaker, decided locally and at once.

The server's `interrupted` comes a round trip and a detector later; the user
hears the model talk over them meanwhile. Here, while the model's audio plays:

- a suspected onset (the user above the expected echo, or voice in the
  cancelled signal for `onset_s`) ducks the playback at once (`duck_gain`, about
  -20 dB), which also lets the canceller pass the user's voice;
- voice confirmed for `confirm_s` within `window_s` pauses the playback (the
  queued audio is kept); no confirmation undoes the duck;
- the server's `interrupted` (the Agent calls flush_playback) drops it all;
- a false start the server did not treat as an interruption (a cough, a door)
  resumes where it paused once the room is quiet for `resume_after_s`.

Pure: the kiosk feeds it one frame's verdicts and applies the gain it returns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Playback(enum.Enum):
    """Where the loudspeaker stands."""

    IDLE = "idle"  # nothing to play
    PLAYING = "playing"
    DUCKED = "ducked"  # a suspected barge-in: quieter, waiting for confirmation
    PAUSED = "paused"  # a barge-in: silent, the rest kept until interrupted or resumed


@dataclass(slots=True)
class BargeInStats:
    """Counters for status and /metrics."""

    ducks: int = 0
    barge_ins: int = 0  # confirmed: playback paused locally
    undone: int = 0  # suspected but not confirmed: duck undone
    resumed: int = 0  # paused but no interruption followed: playback resumed
    flushed: int = 0  # the server's interruption dropped the rest


class BargeIn:
    """The state machine; `step` once per frame, `flushed` on the server's interruption."""

    def __init__(self, *, duck_gain: float = 0.1, confirm_s: float = 0.09,
                 window_s: float = 0.5, resume_after_s: float = 1.5,
                 onset_s: float = 0.1) -> None:
        self.duck_gain = duck_gain
        self.onset_s = onset_s
        self.confirm_s = confirm_s
        self.window_s = window_s
        self.resume_after_s = resume_after_s
        self.state = Playback.IDLE
        self.stats = BargeInStats()
        self._since = 0.0
        self._voiced = 0.0
        self._last_voice = 0.0
        self._voice_run = 0.0  # voice so far in an unbroken run, while playing
        self.last_pause_at: float | None = None
        self.last_duck_at: float | None = None

    @property
    def gain(self) -> float:
        """The playback gain the loudspeaker should apply now."""
        if self.state is Playback.DUCKED:
            return self.duck_gain
        return 0.0 if self.state is Playback.PAUSED else 1.0

    def step(self, now: float, *, playing: bool, suspect: bool, voice: bool,
             frame_s: float = 0.01) -> Playback:
        """One frame: `playing` (audio queued), `suspect` (near-end detector), `voice` (VAD)."""
        state = self.state
        if state is Playback.PAUSED:
            if voice:
                self._last_voice = now
            elif not playing or now - self._last_voice >= self.resume_after_s:
                self.state = Playback.PLAYING if playing else Playback.IDLE
                self.stats.resumed += playing
        elif not playing:
            self.state = Playback.IDLE
        elif state is Playback.DUCKED:
            self._voiced += frame_s if voice else 0.0
            if self._voiced >= self.confirm_s - 1e-9:
                self.state = Playback.PAUSED
                self.stats.barge_ins += 1
                self._last_voice = self.last_pause_at = now
            elif now - self._since >= self.window_s:
                self.state = Playback.PLAYING
                self.stats.undone += 1
        else:
            # Voice alone must last `onset_s`: a brief burst of residual echo that the
            # detector calls speech is not a talker.
            self._voice_run = self._voice_run + frame_s if voice else 0.0
            if suspect or self._voice_run >= self.onset_s - 1e-9:
                self.state = Playback.DUCKED
                self.stats.ducks += 1
                self._since = self.last_duck_at = now
                self._voiced = 0.0
                self._voice_run = 0.0
            else:
                self.state = Playback.PLAYING
        return self.state

    def flushed(self) -> None:
        """The queued audio was dropped (the server interrupted the model)."""
        if self.state is not Playback.IDLE:
            self.stats.flushed += 1
        self.state = Playback.IDLE

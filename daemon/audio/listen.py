"""When the kiosk listens: always, after a wake word, or while a button is held.

Pure: fed the time, the voice detector's verdict, the words heard and the
playback state; says whether voice may open the uplink now and what changed
(for earcons and the assistant state Home Assistant shows).

- `always` (the default): voice opens the uplink whenever it is heard.
- `wake_word`: the wake word opens a window of `window_s` in which voice opens
  the uplink; an utterance under way keeps it open to its end. After the
  model's answer has played, a follow-up window of `follow_up_s` needs no wake
  word.
- `push_to_talk`: only while pressed (a key, a GPIO button, an MQTT topic, a tap
  on the glasses), plus the gate's hangover.

A stop word, in any mode, cuts the model off (`stop` in the step).
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("always", "wake_word", "push_to_talk")


@dataclass(slots=True)
class ListenStep:
    """What the policy decided for one frame."""

    open: bool = True  # voice may open (or keep open) the uplink
    started: bool = False  # a listening window opened (earcon)
    stopped: bool = False  # it closed without (more) speech (earcon)
    stop: bool = False  # the stop word: cut the model off


@dataclass(slots=True)
class ListenStats:
    """Counters for status and /metrics."""

    wake_words: int = 0
    follow_ups: int = 0
    stop_words: int = 0
    presses: int = 0


class ListenPolicy:
    """The listening mode's state; `step` once per frame."""

    def __init__(self, mode: str = "always", *, window_s: float = 6.0,
                 follow_up_s: float = 6.0) -> None:
        if mode not in MODES:
            raise ValueError(f"listen mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.window_s = window_s
        self.follow_up_s = follow_up_s
        self.stats = ListenStats()
        self._until = -1e9
        self._pressed = False
        self._was_playing = False
        self._listening = False

    def press(self, pressed: bool) -> None:
        """Push-to-talk: the button went down (True) or up."""
        if pressed and not self._pressed:
            self.stats.presses += 1
        self._pressed = pressed

    def step(self, now: float, *, words: list[str], playing: bool,
             utterance_open: bool) -> ListenStep:
        """One frame: the words heard in it, whether the model's audio plays, whether
        the uplink is carrying an utterance."""
        out = ListenStep(stop="stop" in words)
        self.stats.stop_words += out.stop
        if self.mode == "always":
            self._was_playing = playing
            return out
        if self.mode == "push_to_talk":
            listening = self._pressed
        else:
            if "wake" in words:
                self.stats.wake_words += 1
                self._until = now + self.window_s
            if self._was_playing and not playing and self.follow_up_s > 0:
                self.stats.follow_ups += 1  # the answer ended: a follow-up needs no wake word
                self._until = max(self._until, now + self.follow_up_s)
            listening = now < self._until or utterance_open  # an utterance runs to its end
        self._was_playing = playing
        out.open = listening or utterance_open
        out.started = listening and not self._listening
        out.stopped = self._listening and not listening and not utterance_open
        self._listening = listening
        return out

    @property
    def listening(self) -> bool:
        """Whether a listening window (or the button) is open now."""
        return self.mode == "always" or self._listening

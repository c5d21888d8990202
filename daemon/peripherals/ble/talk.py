"""Push-to-talk on the glasses: a talk gesture opens the microphone, the next closes it.

Why a gesture of its own: a single tap is the wearer's confirmation of a sensitive
action (daemon.home.consent). If the same tap also started talking, a wearer tapping
to speak just as the model asks "unlock the front door?" would confirm the unlock. So
the profile names the talk gesture apart (`[tap] talk_events`, omi's double tap; a
Frame companion app's `frame_protocol.talk` message), the profile loader refuses a
code that is both, and a talk gesture never reaches `MediaSink.user_tap`.

Pure: the times are passed in. With `listen = "push_to_talk"` the glasses' audio
reaches the Live link only while talk is on. The glasses send no release, so each
gesture toggles; a talk left on past `max_hold_s` (the second gesture lost, or never
made) is let go, and so is one whose link ended: a reconnect starts closed. With
`listen = "always"` a gesture is counted and changes nothing.

A pre-roll: the glasses report a double tap only after their tap-counting window,
and the radio adds its latency, so a wearer who speaks as they tap would lose their
first words. The last `preroll_s` of held-back audio goes up first when talk opens
(the kiosk's speech gate keeps one too); it is emptied when talk closes or the link
ends, so nothing from before a reconnect or from a closed turn is sent later.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

from daemon.audio.ptt import PushToTalk
from daemon.media.types import AudioChunk

GlassesListen = Literal["always", "push_to_talk"]
SOURCE = "glasses"


@dataclass(slots=True)
class TalkStats:
    """Counters for status and /metrics."""

    gestures: int = 0  # talk gestures from the trusted glasses
    ignored: int = 0  # gestures while listening always
    gated_chunks: int = 0  # audio chunks held back while talk was off
    preroll_chunks: int = 0  # of those, sent when talk opened (the pre-roll)
    link_ends: int = 0  # talk on when the link ended: let go


class TalkGate:
    """Whether the glasses' audio may go upstream now; fed gestures and the clock."""

    def __init__(self, mode: GlassesListen = "always", max_hold_s: float = 60.0,
                 preroll_s: float = 0.5) -> None:
        if mode not in ("always", "push_to_talk"):
            raise ValueError(f"listen mode {mode!r} is not 'always' or 'push_to_talk'")
        if not 0 <= preroll_s <= 2:
            raise ValueError(f"pre-roll {preroll_s} s is not within 0-2 s")
        self.mode = mode
        self.stats = TalkStats()
        self._ptt = PushToTalk(max_hold_s)
        self._preroll_s = preroll_s
        self._held: deque[AudioChunk] = deque()
        self._held_s = 0.0

    @property
    def talking(self) -> bool:
        """Whether talk is on (push-to-talk only)."""
        return self._ptt.pressed

    def gesture(self, now: float) -> bool | None:
        """The talk gesture: the new state if it changed (True: talk on), else None.

        When talk opens, `take_preroll` has what was said just before."""
        if self.mode == "always":
            self.stats.ignored += 1
            return None
        self.stats.gestures += 1
        change = self._ptt.toggle(SOURCE, now)
        if change is False:
            self._forget()
        return change

    def admits(self, chunk: AudioChunk, now: float) -> tuple[bool, bool | None]:
        """Whether a chunk captured at `now` goes upstream, and a change made by the
        hold limit (False: talk was let go just now), else None. A chunk held back
        is kept for the pre-roll."""
        if self.mode == "always":
            return True, None
        change = self._ptt.tick(now)
        if self._ptt.pressed:
            return True, change
        if change is False:
            self._forget()
        self.stats.gated_chunks += 1
        if self._preroll_s > 0:
            self._held.append(chunk)
            self._held_s += chunk.duration
            while self._held_s > self._preroll_s + 1e-9:
                self._held_s -= self._held.popleft().duration
        return False, change

    def take_preroll(self) -> list[AudioChunk]:
        """The held-back audio of the last `preroll_s`, oldest first, once; only while
        talk is on."""
        if not self._ptt.pressed:
            return []
        out = list(self._held)
        self._forget()
        self.stats.preroll_chunks += len(out)
        return out

    def link_ended(self, now: float) -> bool | None:
        """The link is gone: talk goes off (False if it was on)."""
        self._forget()
        if not self._ptt.pressed:
            return None
        self.stats.link_ends += 1
        return self._ptt.release(SOURCE, now)

    def _forget(self) -> None:
        self._held.clear()
        self._held_s = 0.0

    def status(self) -> dict[str, Any]:
        """The mode, whether talk is on, and the counters (push_to_talk's own too)."""
        return {"listen": self.mode, "talking": self.talking, **asdict(self.stats),
                "timeouts": self._ptt.stats.timeouts}

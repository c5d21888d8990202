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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from daemon.audio.ptt import PushToTalk

GlassesListen = Literal["always", "push_to_talk"]
SOURCE = "glasses"


@dataclass(slots=True)
class TalkStats:
    """Counters for status and /metrics."""

    gestures: int = 0  # talk gestures from the trusted glasses
    ignored: int = 0  # gestures while listening always
    gated_chunks: int = 0  # audio chunks held back while talk was off
    link_ends: int = 0  # talk on when the link ended: let go


class TalkGate:
    """Whether the glasses' audio may go upstream now; fed gestures and the clock."""

    def __init__(self, mode: GlassesListen = "always", max_hold_s: float = 60.0) -> None:
        if mode not in ("always", "push_to_talk"):
            raise ValueError(f"listen mode {mode!r} is not 'always' or 'push_to_talk'")
        self.mode = mode
        self.stats = TalkStats()
        self._ptt = PushToTalk(max_hold_s)

    @property
    def talking(self) -> bool:
        """Whether talk is on (push-to-talk only)."""
        return self._ptt.pressed

    def gesture(self, now: float) -> bool | None:
        """The talk gesture: the new state if it changed (True: talk on), else None."""
        if self.mode == "always":
            self.stats.ignored += 1
            return None
        self.stats.gestures += 1
        return self._ptt.toggle(SOURCE, now)

    def admits(self, now: float) -> tuple[bool, bool | None]:
        """Whether a chunk captured at `now` goes upstream, and a change made by the
        hold limit (False: talk was let go just now), else None."""
        if self.mode == "always":
            return True, None
        change = self._ptt.tick(now)
        if self._ptt.pressed:
            return True, change
        self.stats.gated_chunks += 1
        return False, change

    def link_ended(self, now: float) -> bool | None:
        """The link is gone: talk goes off (False if it was on)."""
        if not self._ptt.pressed:
            return None
        self.stats.link_ends += 1
        return self._ptt.release(SOURCE, now)

    def status(self) -> dict[str, Any]:
        """The mode, whether talk is on, and the counters (push_to_talk's own too)."""
        return {"listen": self.mode, "talking": self.talking, **asdict(self.stats),
                "timeouts": self._ptt.stats.timeouts}

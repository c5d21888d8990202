"""Push-to-talk: presses and releases from several sources, one talk button.

Pure (the times are passed in). Sources: a key (a terminal's, or an evdev
keyboard), a GPIO button (libgpiod), the MQTT topic Home Assistant switches, a tap.
Each source is held or not; the button is down while any source holds it. Two
safety nets, because a release can be lost (an MQTT message, a key-up while the
terminal lost focus): a source held longer than `max_hold_s` is let go, and a
source that only knows "pressed" (a tap, a terminal key: no key-up) toggles.

`Debounce` turns a mechanical button's raw edges into clean presses: a level
counts once it has held for `settle_s` (contact bounce lasts a few ms).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class PushToTalkStats:
    """Counters for status and /metrics."""

    presses: int = 0  # the button went down
    releases: int = 0  # and up again
    timeouts: int = 0  # a source held past max_hold_s was let go
    stray_releases: int = 0  # a release from a source that was not pressed


class PushToTalk:
    """The talk button, held while any source holds it."""

    def __init__(self, max_hold_s: float = 60.0) -> None:
        self.max_hold_s = max_hold_s
        self.stats = PushToTalkStats()
        self._held: dict[str, float] = {}  # source -> when it was pressed

    @property
    def pressed(self) -> bool:
        """Whether the button is down now."""
        return bool(self._held)

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources that hold it now."""
        return tuple(self._held)

    def press(self, source: str, now: float) -> bool | None:
        """`source` went down; returns the button's new state if it changed, else None."""
        was = self.pressed
        self._held.setdefault(source, now)
        return self._changed(was)

    def release(self, source: str, now: float) -> bool | None:
        """`source` went up; returns the button's new state if it changed, else None."""
        was = self.pressed
        if self._held.pop(source, None) is None:
            self.stats.stray_releases += 1
        return self._changed(was)

    def set(self, source: str, down: bool, now: float) -> bool | None:
        """A source that reports its level (a GPIO line, the MQTT switch's ON/OFF)."""
        return self.press(source, now) if down else self.release(source, now)

    def toggle(self, source: str, now: float) -> bool | None:
        """A source with no release (a tap, a terminal key): each press flips it."""
        return self.release(source, now) if source in self._held else self.press(source, now)

    def tick(self, now: float) -> bool | None:
        """Let go of sources held past `max_hold_s` (a lost release); once a frame is plenty."""
        stale = [s for s, since in self._held.items() if now - since >= self.max_hold_s]
        if not stale:
            return None
        was = self.pressed
        for source in stale:
            del self._held[source]
            self.stats.timeouts += 1
        return self._changed(was)

    def _changed(self, was: bool) -> bool | None:
        now_down = self.pressed
        if now_down == was:
            return None
        if now_down:
            self.stats.presses += 1
        else:
            self.stats.releases += 1
        return now_down


class Debounce:
    """A button's raw level -> a stable one: a change counts once it held `settle_s`.

    Feed every raw edge (`edge`); ask `poll` at or after `due` (a timer) for the
    stable level if it changed. `active_low`: the line reads 0 while pressed (a
    button to ground with a pull-up, the usual wiring).
    """

    def __init__(self, settle_s: float = 0.03, *, active_low: bool = True) -> None:
        self.settle_s = settle_s
        self.active_low = active_low
        self.stable = False  # pressed, after debouncing
        self._raw = False
        self._since = 0.0
        self.bounces = 0  # raw edges that did not last

    def edge(self, level: int, now: float) -> None:
        """The line changed to `level` (0 or 1) at `now`."""
        pressed = (level == 0) if self.active_low else (level != 0)
        if pressed != self._raw:
            if self._raw != self.stable:
                self.bounces += 1  # the previous change did not settle
            self._raw, self._since = pressed, now

    @property
    def due(self) -> float | None:
        """When a pending change settles (poll then), or None if nothing is pending."""
        return self._since + self.settle_s if self._raw != self.stable else None

    def poll(self, now: float) -> bool | None:
        """The new stable level if a change has settled by `now`, else None."""
        if self._raw != self.stable and now - self._since >= self.settle_s - 1e-9:
            self.stable = self._raw
            return self.stable
        return None

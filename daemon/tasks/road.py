"""Which road the conversation takes, live or fallback: pure, with time passed in.

Hysteresis both ways, so a link that flaps does not throw the user from one
mode to the other: the fallback road is taken once the Live link has been down
for `after` seconds without a break, and left once it has been up for
`return_after` seconds without a break and no fallback turn is under way (a
turn in flight finishes on the road it started on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Road = Literal["live", "fallback"]


@dataclass
class RoadMachine:
    """Decides the road from the link's state over time (see the module)."""

    after: float
    return_after: float
    road: Road = "live"
    _down_since: float | None = None
    _up_since: float | None = None

    def update(self, now: float, connected: bool, busy: bool = False) -> Road | None:
        """Tell it the link's state at `now`; the new road if it changed, else None.

        `busy`: a fallback turn is running (the road does not go back under it).
        """
        if connected:
            self._down_since = None
            if self._up_since is None:
                self._up_since = now
        else:
            self._up_since = None
            if self._down_since is None:
                self._down_since = now
        if self.road == "live" and self._down_since is not None \
                and now - self._down_since >= self.after:
            self.road = "fallback"
            return self.road
        if self.road == "fallback" and self._up_since is not None and not busy \
                and now - self._up_since >= self.return_after:
            self.road = "live"
            return self.road
        return None

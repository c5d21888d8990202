"""How often a line that a peer can provoke is written.

The broker, the Live server and the glasses can each send the same bad thing
thousands of times a second, for months. A log line per message fills an SD card
and buries everything else, while a line never written hides the problem. So
such lines are written seldom, and always with the count so far; the counters in
/metrics and `status` carry the exact figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def seldom(n: int) -> bool:
    """Whether the `n`th occurrence is logged: the 1st, 2nd, 4th, 8th..."""
    return n > 0 and n & (n - 1) == 0


class LineBudget:
    """At most `burst` lines per `period` seconds for one kind of line, so the first
    few distinct problems are all seen; the rest are counted in `suppressed`."""

    def __init__(self, burst: int = 10, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.period = period
        self.suppressed = 0  # lines not written, ever
        self._clock = clock
        self._since = -period
        self._written = 0
        self._quiet = 0  # lines not written since the last one that was

    def take(self) -> int | None:
        """None: stay quiet (counted). Otherwise write the line, mentioning this many
        that were not written before it (usually 0)."""
        now = self._clock()
        if now - self._since >= self.period:
            self._since, self._written = now, 0
        if self._written >= self.burst:
            self.suppressed += 1
            self._quiet += 1
            return None
        self._written += 1
        quiet, self._quiet = self._quiet, 0
        return quiet

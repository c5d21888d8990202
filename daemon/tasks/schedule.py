"""When to poll a background task next: seconds at first, rising to a minute.

Pure and clock-free: the poller asks for the next delay and says when a poll
failed (a transient error backs off faster), so the policy is unit-tested
without sleeping.
"""

from __future__ import annotations

GROWTH = 1.5  # per poll while the task runs
ERROR_GROWTH = 2.0  # per consecutive failed poll


class PollSchedule:
    """Delays between polls of one task, bounded by `cap` and by the task's deadline."""

    def __init__(self, initial: float, cap: float) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("poll schedule needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self._delay = initial
        self.errors = 0

    def next_delay(self, time_left: float) -> float:
        """The wait before the next poll: never past the deadline, never below zero."""
        return max(0.0, min(self._delay, time_left))

    def polled(self) -> None:
        """A poll answered (the task still runs): wait a little longer next time."""
        self.errors = 0
        self._delay = min(self.cap, self._delay * GROWTH)

    def failed(self) -> None:
        """A poll failed for a passing reason: back off faster."""
        self.errors += 1
        self._delay = min(self.cap, self._delay * ERROR_GROWTH)

"""Reconnect pacing: first retry at once, then exponential backoff with full jitter.

Pure and clock-free (the caller says when a connection became stable), so the
policy is unit-tested without sleeping.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays between reconnect attempts; `reset` once a connection proved stable."""

    def __init__(
        self,
        initial: float,
        cap: float,
        *,
        immediate_first: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self.immediate_first = immediate_first
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; counts one more consecutive failure."""
        n = self.failures
        self.failures += 1
        if self.immediate_first:
            if n == 0:
                return 0.0
            n -= 1
        ceiling = min(self.cap, self.initial * (2.0**n))
        return self._rng.uniform(0.0, ceiling)

    def ceiling(self) -> float:
        """Upper bound of the next delay, for logs."""
        n = self.failures - (1 if self.immediate_first else 0)
        return 0.0 if n < 0 else min(self.cap, self.initial * (2.0 ** max(n, 0)))

    def reset(self) -> None:
        """The connection proved stable: the next failure retries at once again."""
        self.failures = 0

"""One connection's life: when it began, why it ended, what the server said on it.

Shared by the link's per-connection tasks; the first reason given ends it. It
also keeps the evidence a stall is judged by: when the server was last heard
from, and how long the oldest ping has waited for its pong.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass
class SocketLife:
    """One socket's life: why it ended and what the server said on it."""

    established_at: float
    resumed: bool
    reason: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    go_away_deadline: float | None = None
    last_alive: float = 0.0
    pings: deque[float] = field(default_factory=deque)  # when each unanswered ping went out

    def finish(self, reason: str) -> None:
        """End the connection for this reason, unless it already ended for another."""
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()

    def ping_sent(self, at: float) -> None:
        """A ping went out at `at` (before it was known to be on the wire)."""
        self.pings.append(at)

    def pong(self, sent_at: float) -> None:
        """The pong to the ping sent at `sent_at`: it answers every earlier ping too."""
        while self.pings and self.pings[0] <= sent_at:
            self.pings.popleft()

    def unanswered_for(self, now: float) -> float:
        """How long the oldest ping has waited for its pong (0 when none waits)."""
        return now - self.pings[0] if self.pings else 0.0

    def stall(self, now: float, timeout: float) -> str | None:
        """Why the server counts as stalled now, or None.

        "silence": nothing at all heard for `timeout`. "no_pong": a ping has waited
        longer than `timeout` although messages may still arrive: the server sends
        but does not read (its pong comes when it reads the ping, behind everything
        sent before it), so what went up since was not read either.
        """
        if now - self.last_alive > timeout:
            return "silence"
        if self.unanswered_for(now) > timeout:
            return "no_pong"
        return None

"""One connection's life: when it began, why it ended, what the server said on it.

Shared by the link's per-connection tasks; the first reason given ends it.
"""

from __future__ import annotations

import asyncio
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

    def finish(self, reason: str) -> None:
        """End the connection for this reason, unless it already ended for another."""
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()

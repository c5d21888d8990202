"""The ops side for tests: a health check a test can switch."""

from __future__ import annotations


class Health:
    """A switchable health check, as the agent would supply."""

    def __init__(self) -> None:
        self.healthy = True
        self.details: dict[str, object] = {"link": "connected"}

    def __call__(self) -> tuple[bool, dict[str, object]]:
        return self.healthy, dict(self.details)

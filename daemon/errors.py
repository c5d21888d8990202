"""One root for the project's exceptions, so a caller can catch "anything edge-agent
refused" in one clause; each also derives from the built-in its callers expect
(`ValueError` for bad input, `OSError` for a device or a connection)."""

from __future__ import annotations

__all__ = ["EdgeAgentError"]


class EdgeAgentError(Exception):
    """The root of every error edge-agent raises on purpose."""

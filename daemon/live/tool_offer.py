"""Which tools the link offers the model: every one, or the built-in ones after a rejection.

The home's tools are built from what MQTT devices announce, so an odd or
hostile device name can make the API reject the whole setup; a voice without
the home is better than none.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from daemon.live.failures import LiveFatalError
from daemon.ops.logsetup import scrub
from daemon.ops.metrics import Metrics

log = logging.getLogger("daemon.live.link")  # the link's parts log under its name

Declarations = Callable[[], list[dict[str, Any]]]


class ToolOffer:
    """The tool declarations for the next setup or context update."""

    def __init__(
        self, declarations: Declarations, fallback: Declarations | None, metrics: Metrics
    ) -> None:
        """`fallback`: the tools to offer alone, once, after a fresh setup with all of
        them was rejected (the built-in ones, without the home's)."""
        self._declarations = declarations
        self._fallback = fallback
        self._metrics = metrics
        self._fallback_for: str | None = None  # fingerprint of the full tool set refused
        self._attempt_used_fallback = False
        self._note: str | None = None

    @property
    def note(self) -> str | None:
        """Why the model has only the built-in tools now, for /healthz; else None."""
        return self._note

    def offered(self) -> list[dict[str, Any]]:
        """Every tool, or the built-in ones while the full set is one a setup was
        rejected with."""
        full = self._declarations()
        if self._fallback is None or self._fallback_for is None:
            return full
        if _fingerprint(full) == self._fallback_for:
            return self._fallback()
        log.info("the tool set changed since the Live API rejected it: offering every tool again")
        self._fallback_for = None
        self._note = None
        return full

    def for_attempt(self) -> list[dict[str, Any]]:
        """What a connection attempt offers; remembers whether that was the fallback."""
        declarations = self.offered()
        self._attempt_used_fallback = self._fallback_for is not None
        return declarations

    def fall_back(self, exc: LiveFatalError) -> bool:
        """After a rejected fresh setup, offer only the built-in tools (once): True if so.

        They are offered again once their declarations change.
        """
        if self._fallback is None or self._attempt_used_fallback:
            return False
        full = self._declarations()
        left_out = sorted({d["name"] for d in full} - {d["name"] for d in self._fallback()})
        if not left_out:
            return False
        self._fallback_for = _fingerprint(full)
        self._metrics.live_tool_fallbacks.inc()
        self._note = scrub(
            "the Live API rejected the session setup with every tool; running with the "
            f"built-in tools only (left out: {', '.join(left_out)})"
        )
        log.warning("%s; trying again at once with the built-in tools only (left out: %s)",
                    exc, ", ".join(left_out))
        return True

    def give_up(self) -> None:
        """Giving up on this set for now: the next attempt offers every tool."""
        self._fallback_for = None
        self._note = None


def _fingerprint(declarations: list[dict[str, Any]]) -> str:
    """Identifies a tool set, to tell whether the one a setup was rejected with changed."""
    text = json.dumps(declarations, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

"""Spoken confirmation for sensitive actions (locks, garage doors, gates, alarms).

The rule: the first call for a sensitive action does nothing and returns a token;
the model asks the user; only a second call carrying that token acts. A token is
short, random, single use, expires after `ttl` seconds and is bound to exactly one
device, action and argument set, so a confirmation for "unlock the back door"
can never open the front door or be replayed later.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_SENSITIVE: tuple[str, ...] = ("lock", "garage", "gate", "alarm_control_panel")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes: the model reads it back


def is_sensitive(
    component: str, device_class: str | None, sensitive: Iterable[str] = DEFAULT_SENSITIVE
) -> bool:
    """True when the component or the device class is in the sensitive set."""
    names = {s.casefold() for s in sensitive}
    return component.casefold() in names or (
        device_class is not None and device_class.casefold() in names
    )


def _canonical(device_id: str, action: str, args: Mapping[str, Any] | None) -> str:
    """One string per (device, action, args); 50 and 50.0 are the same argument."""

    def norm(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): norm(v) for k, v in value.items()}
        return value

    return json.dumps([device_id, action, norm(dict(args or {}))], sort_keys=True, default=str)


@dataclass
class ConfirmStats:
    """Counters until they move to daemon.ops.metrics."""

    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    mismatched: int = 0
    unknown: int = 0
    evicted: int = 0


class ConfirmationBook:
    """Outstanding confirmation tokens; bounded, single use, with a time limit."""

    def __init__(
        self,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_pending: int = 32,
        token_length: int = 6,
    ) -> None:
        if ttl <= 0 or max_pending < 1 or token_length < 4:
            raise ValueError("ttl must be positive, max_pending >= 1, token_length >= 4")
        self.ttl = ttl
        self.stats = ConfirmStats()
        self._clock = clock
        self._max = max_pending
        self._length = token_length
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def request(self, device_id: str, action: str, args: Mapping[str, Any] | None) -> str:
        """A new token for exactly this device, action and arguments."""
        self._expire()
        while len(self._pending) >= self._max:
            self._pending.popitem(last=False)
            self.stats.evicted += 1
        token = "".join(secrets.choice(_ALPHABET) for _ in range(self._length))
        while token in self._pending:
            token = "".join(secrets.choice(_ALPHABET) for _ in range(self._length))
        self._pending[token] = (_canonical(device_id, action, args), self._clock() + self.ttl)
        self.stats.issued += 1
        return token

    def redeem(
        self, token: str, device_id: str, action: str, args: Mapping[str, Any] | None
    ) -> bool:
        """True once for a live token used for what it was issued for; else False.

        Any attempt consumes the token, so a mismatched guess cannot be retried.
        """
        entry = self._pending.pop(str(token).strip().casefold(), None)
        if entry is None:
            self.stats.unknown += 1
            return False
        binding, deadline = entry
        if self._clock() >= deadline:
            self.stats.expired += 1
            return False
        if not secrets.compare_digest(binding, _canonical(device_id, action, args)):
            self.stats.mismatched += 1
            return False
        self.stats.redeemed += 1
        return True

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, (_b, d) in self._pending.items() if now >= d]:
            del self._pending[token]
            self.stats.expired += 1


@dataclass(frozen=True)
class Decision:
    """What to do with a requested action: go ahead, or ask the user first."""

    verdict: Literal["proceed", "confirm"]
    token: str | None = None
    message: str = ""


class ConfirmationGate:
    """Applies the two-call rule for sensitive devices on top of a `ConfirmationBook`."""

    def __init__(
        self, book: ConfirmationBook, sensitive: Iterable[str] = DEFAULT_SENSITIVE
    ) -> None:
        self.book = book
        self.sensitive = tuple(sensitive)

    def check(
        self,
        *,
        device_id: str,
        device_name: str,
        component: str,
        device_class: str | None,
        action: str,
        args: Mapping[str, Any] | None,
        token: str | None,
    ) -> Decision:
        """Proceed for ordinary devices or a valid token; otherwise issue a token."""
        if not is_sensitive(component, device_class, self.sensitive):
            return Decision("proceed")
        if token and self.book.redeem(token, device_id, action, args):
            return Decision("proceed")
        fresh = self.book.request(device_id, action, args)
        what = f"{action.replace('_', ' ')} {device_name}"
        bad = "That confirmation is expired, used or for a different action. "
        prefix = bad if token else ""
        return Decision(
            "confirm",
            fresh,
            f"{prefix}Nothing was done. Ask the user to confirm: {what}? If they say yes, "
            f"call again with the same arguments and confirmation token {fresh!r} "
            f"within {self.book.ttl:g} seconds.",
        )

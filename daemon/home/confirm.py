"""Confirmation by the user for sensitive actions (locks, garage doors, gates, alarms).

The rule: the first call for a sensitive action does nothing and returns a token;
the model asks the user; a second call carrying that token acts only if the USER
answered yes after the token was issued. The model's word is never enough: the
gate asks an evidence hook (the Agent's `user_confirmed_since`) whether the user
said yes out loud or tapped the glasses since issuance. Without a hook (the home
service used on its own) there is no evidence and nothing sensitive ever acts.

A token is short, random, single use, expires after `ttl` seconds and is bound to
exactly one device, action and argument set, so a confirmation for "unlock the
back door" can never open the front door or be replayed later. A valid token with
no answer yet stays pending (the model may simply have called before the user
spoke); a "no" consumes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ANSWER_POLL_SECONDS = 0.05
DEFAULT_SENSITIVE: tuple[str, ...] = ("lock", "garage", "gate", "alarm_control_panel")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes: the model reads it back

# Did the user confirm after time `t` (the book's clock)? True yes, False no, None no answer.
Evidence = Callable[[float], "bool | None"]

# Spoken answers, matched as whole words or word sequences, case-insensitively. Any
# negative anywhere wins over any affirmative ("yes ... no wait" is a no), so a
# mistake in either list errs towards doing nothing.
AFFIRMATIVE: tuple[str, ...] = (
    # English
    "yes", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "confirmed", "i confirm",
    "go ahead", "do it", "affirmative", "correct", "absolutely", "please do",
    # German, Dutch
    "ja", "jawohl", "genau", "bestätigt", "mach das", "doe maar",
    # French
    "oui", "ouais", "d'accord", "vas-y", "allez-y",
    # Spanish, Italian, Portuguese
    "sí", "sì", "sim", "claro", "vale", "dale", "certo", "va bene",
)
NEGATIVE: tuple[str, ...] = (
    # English (and every "...n't": don't, won't, shouldn't)
    "no", "not", "nope", "nah", "don't", "dont", "do not", "stop", "cancel", "wait",
    "never", "negative", "abort", "hold on",
    # German, Dutch
    "nein", "nicht", "kein", "keine", "stopp", "halt", "abbrechen", "warte", "nee", "niet",
    "wacht",
    # French
    "non", "pas", "arrête", "annule", "attends",
    # Spanish, Italian, Portuguese
    "cancela", "espera", "annulla", "aspetta", "ferma", "não", "nao", "pare",
)
_WORD = re.compile(r"[\w'-]+")


def _phrases(words: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(w.casefold().split()) for w in words)


_YES = _phrases(AFFIRMATIVE)
_NO = _phrases(NEGATIVE)


def _has(tokens: list[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    for phrase in phrases:
        n = len(phrase)
        if any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1)):
            return True
    return False


def spoken_answer(text: str) -> bool | None:
    """True for a spoken yes, False for a no (a no anywhere wins), None for neither."""
    tokens = [t.strip("-'") for t in _WORD.findall(text.replace("\u2019", "'").casefold())]
    tokens = [t for t in tokens if t]
    if _has(tokens, _NO) or any(t.endswith("n't") for t in tokens):
        return False
    if _has(tokens, _YES):
        return True
    return None


def is_sensitive(
    component: str,
    device_class: str | None,
    sensitive: Iterable[str] = DEFAULT_SENSITIVE,
    *,
    device_id: str | None = None,
    name: str | None = None,
) -> bool:
    """True when the component, device class, device id or device name is in the set.

    Ids and names let a plain relay that drives a gate be marked sensitive.
    """
    names = {s.casefold() for s in sensitive}
    return any(
        value is not None and value.casefold() in names
        for value in (component, device_class, device_id, name)
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
    unconfirmed: int = 0  # a valid token came back before the user said yes
    declined: int = 0  # the user said no


@dataclass(frozen=True)
class Pending:
    """An outstanding token: what it is for and when it was issued and expires."""

    binding: str
    issued_at: float
    expires_at: float


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
        self.clock = clock
        self._max = max_pending
        self._length = token_length
        self._pending: OrderedDict[str, Pending] = OrderedDict()

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
        now = self.clock()
        self._pending[token] = Pending(_canonical(device_id, action, args), now, now + self.ttl)
        self.stats.issued += 1
        return token

    def check(
        self, token: str, device_id: str, action: str, args: Mapping[str, Any] | None
    ) -> Pending | None:
        """The pending entry if `token` is live and issued for exactly this; else None.

        A valid token stays pending (`consume` it once it is used); an unknown,
        expired or mismatched one is gone afterwards, so a wrong guess cannot be retried.
        """
        key = self.key(token)
        entry = self._pending.get(key)
        if entry is None:
            self.stats.unknown += 1
            return None
        if self.clock() >= entry.expires_at:
            del self._pending[key]
            self.stats.expired += 1
            return None
        if not secrets.compare_digest(entry.binding, _canonical(device_id, action, args)):
            del self._pending[key]
            self.stats.mismatched += 1
            return None
        return entry

    def peek(
        self, token: str, device_id: str, action: str, args: Mapping[str, Any] | None
    ) -> Pending | None:
        """Like `check`, but changes and counts nothing."""
        entry = self._pending.get(self.key(token))
        if entry is None or self.clock() >= entry.expires_at:
            return None
        if not secrets.compare_digest(entry.binding, _canonical(device_id, action, args)):
            return None
        return entry

    def consume(self, token: str) -> None:
        """The token has been answered (acted on, or declined): it never works again."""
        self._pending.pop(self.key(token), None)

    def redeem(
        self, token: str, device_id: str, action: str, args: Mapping[str, Any] | None
    ) -> bool:
        """True once for a live token used for what it was issued for; else False.

        Any attempt consumes the token. This is the book alone: whether the user
        confirmed is the gate's business.
        """
        entry = self.check(token, device_id, action, args)
        self.consume(token)
        if entry is None:
            return False
        self.stats.redeemed += 1
        return True

    @staticmethod
    def key(token: str) -> str:
        """Tokens compare without case or surrounding blanks (the model reads them back)."""
        return str(token).strip().casefold()

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, p in self._pending.items() if now >= p.expires_at]:
            del self._pending[token]
            self.stats.expired += 1


@dataclass(frozen=True)
class Decision:
    """What to do with a requested action: go ahead, ask the user, or drop it (they said no)."""

    verdict: Literal["proceed", "confirm", "declined"]
    token: str | None = None
    message: str = ""


class ConfirmationGate:
    """Applies the confirmation rule for sensitive devices on top of a `ConfirmationBook`.

    `evidence(t)` says whether the user confirmed after time `t` on the book's clock
    (True yes, False no, None not yet); without it nothing sensitive ever proceeds.
    """

    def __init__(
        self,
        book: ConfirmationBook,
        sensitive: Iterable[str] = DEFAULT_SENSITIVE,
        evidence: Evidence | None = None,
        *,
        answer_wait: float = 1.5,
    ) -> None:
        self.book = book
        self.sensitive = tuple(sensitive)
        self.evidence = evidence
        self.answer_wait = answer_wait  # see `await_answer`

    def is_sensitive(
        self, device_id: str, device_name: str, component: str, device_class: str | None
    ) -> bool:
        return is_sensitive(
            component, device_class, self.sensitive, device_id=device_id, name=device_name
        )

    async def await_answer(
        self, token: str | None, device_id: str, action: str, args: Mapping[str, Any] | None
    ) -> None:
        """Before `check`: wait up to `answer_wait` s for the user's answer to a live token.

        The transcript of a spoken yes can arrive after the model's call that relies
        on it; a short wait turns that race into a confirmation instead of a retry.
        Tokens exist only for sensitive actions, so a live one says enough.
        """
        evidence = self.evidence
        if self.answer_wait <= 0 or not token or evidence is None:
            return
        pending = self.book.peek(token, device_id, action, args)
        if pending is None:
            return
        loop = asyncio.get_running_loop()
        life = pending.expires_at - self.book.clock()  # never outwait the token
        end = loop.time() + min(self.answer_wait, life - ANSWER_POLL_SECONDS)
        # The evidence is a plain callable: polled, briefly.
        while evidence(pending.issued_at) is None and loop.time() < end:  # noqa: ASYNC110
            await asyncio.sleep(ANSWER_POLL_SECONDS)

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
        """Proceed for ordinary devices, or a valid token the user confirmed since issuance."""
        if not self.is_sensitive(device_id, device_name, component, device_class):
            return Decision("proceed")
        what = f"{action.replace('_', ' ')} {device_name}"
        if token:
            pending = self.book.check(token, device_id, action, args)
            if pending is not None:
                answer = self.evidence(pending.issued_at) if self.evidence else None
                if answer is True:
                    self.book.consume(token)
                    self.book.stats.redeemed += 1
                    return Decision("proceed")
                if answer is False:
                    self.book.consume(token)
                    self.book.stats.declined += 1
                    return Decision(
                        "declined",
                        None,
                        f"The user said no: nothing was done ({what}). Do not ask again "
                        "unless the user asks for it again.",
                    )
                self.book.stats.unconfirmed += 1
                token = self.book.key(token)
                left = max(1, math.ceil(pending.expires_at - self.book.clock()))
                return Decision(
                    "confirm",
                    token,
                    f"Nothing was done: the user has not confirmed yet; ask them: {what}? "
                    "Only the user can confirm, by saying yes or tapping their glasses; "
                    "then call again with the same arguments and confirmation token "
                    f"{token!r} within {left} seconds.",
                )
        fresh = self.book.request(device_id, action, args)
        bad = "That confirmation is expired, used or for a different action. "
        prefix = bad if token else ""
        return Decision(
            "confirm",
            fresh,
            f"{prefix}Nothing was done. Ask the user to confirm: {what}? Only after they "
            "say yes (or tap their glasses), call again with the same arguments and "
            f"confirmation token {fresh!r} within {self.book.ttl:g} seconds.",
        )

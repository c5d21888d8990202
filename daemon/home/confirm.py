"""Confirmation by the user for sensitive actions (locks, gates, garage doors, alarms).

The rule: the first call for a sensitive action does nothing and returns a token;
the model asks the user; a second call carrying that token acts only if the USER
answered that very question (daemon.home.consent) in a way the action's category
accepts (`tools.confirm_with`: a spoken yes, a tap on the pinned glasses, the
spoken PIN). The model's word is never enough. Without a conversation to follow
(the home service used on its own) nothing sensitive ever acts.

Which commands are sensitive is daemon.home.sensitivity's business: by what the
command does, not by what the device calls itself.

A token is short, random, single use, expires after `ttl` seconds and is bound to
exactly one device, action and argument set, so a confirmation for "unlock the
back door" can never open the front door or be replayed later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.home.answers import words
from daemon.home.consent import METHODS, Ask, ConsentTracker, Verdict
from daemon.home.sensitivity import Entity, Sensitivity, SensitivityPolicy

log = logging.getLogger(__name__)

ANSWER_POLL_SECONDS = 0.05
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes: the model reads it back


Plan = tuple[str, str]  # the (topic, payload) a confirmed action will publish


def _canonical(device_id: str, action: str, args: Mapping[str, Any] | None,
               plan: Plan | None = None) -> str:
    """One string per (device, action, args, and what it publishes); 50 and 50.0 are the
    same argument. With the plan in it, a "yes" cannot be carried over to a command the
    device's config changed into meanwhile."""

    def norm(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): norm(v) for k, v in value.items()}
        return value

    return json.dumps([device_id, action, norm(dict(args or {})), list(plan or ())],
                      sort_keys=True, default=str)


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

    def request(self, device_id: str, action: str, args: Mapping[str, Any] | None,
                plan: Plan | None = None) -> str:
        """A new token for exactly this device, action and arguments (and `plan`)."""
        self._expire()
        while len(self._pending) >= self._max:
            self._pending.popitem(last=False)
            self.stats.evicted += 1
        token = "".join(secrets.choice(_ALPHABET) for _ in range(self._length))
        while token in self._pending:
            token = "".join(secrets.choice(_ALPHABET) for _ in range(self._length))
        now = self.clock()
        self._pending[token] = Pending(_canonical(device_id, action, args, plan), now,
                                       now + self.ttl)
        self.stats.issued += 1
        return token

    def check(
        self, token: str, device_id: str, action: str, args: Mapping[str, Any] | None,
        plan: Plan | None = None,
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
        if not secrets.compare_digest(entry.binding, _canonical(device_id, action, args, plan)):
            del self._pending[key]
            self.stats.mismatched += 1
            return None
        return entry

    def peek(
        self, token: str, device_id: str, action: str, args: Mapping[str, Any] | None,
        plan: Plan | None = None,
    ) -> Pending | None:
        """Like `check`, but changes and counts nothing."""
        entry = self._pending.get(self.key(token))
        if entry is None or self.clock() >= entry.expires_at:
            return None
        if not secrets.compare_digest(entry.binding, _canonical(device_id, action, args, plan)):
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
    """What to do with a requested action: go ahead, ask the user, or not at all."""

    verdict: Literal["proceed", "confirm", "declined", "refused"]
    token: str | None = None
    message: str = ""
    method: str | None = None  # how the user confirmed, when they did


_HOW = {
    frozenset({"yes"}): "by saying yes",
    frozenset({"tap"}): "by tapping their glasses",
    frozenset({"pin"}): "by saying their confirmation PIN",
    frozenset({"yes", "tap"}): "by saying yes or tapping their glasses",
    frozenset({"yes", "pin"}): "by saying yes or their confirmation PIN",
    frozenset({"tap", "pin"}): (
        "by tapping their glasses or saying their confirmation PIN (a spoken yes is not "
        "enough for this device)"
    ),
    frozenset(METHODS): "by saying yes or tapping their glasses",
}


class ConfirmationGate:
    """Applies the confirmation rule on top of a `ConfirmationBook` and a `ConsentTracker`.

    `confirm_with` maps a category (daemon.home.sensitivity.CATEGORIES) to the ways it
    may be confirmed; only those this installation offers count (a tap needs glasses
    with a tap, a PIN a configured one). `taps_possible` says whether a tap can come.
    """

    def __init__(
        self,
        book: ConfirmationBook,
        policy: SensitivityPolicy,
        tracker: ConsentTracker | None,
        *,
        confirm_with: Mapping[str, frozenset[str]] | None = None,
        taps_possible: Callable[[], bool] = lambda: False,
        answer_wait: float = 1.5,
    ) -> None:
        self.book = book
        self.policy = policy
        self.tracker = tracker
        self.confirm_with = dict(confirm_with or {})
        self.taps_possible = taps_possible
        self.answer_wait = answer_wait  # see `await_answer`

    def methods(self, category: str) -> frozenset[str]:
        """How an action of `category` can be confirmed here (empty: not at all)."""
        default = self.confirm_with.get("other", frozenset(METHODS))
        wanted = self.confirm_with.get(category, default)
        offered = {"yes"}
        if self.taps_possible():
            offered.add("tap")
        if self.tracker is not None and self.tracker.has_pin:
            offered.add("pin")
        return frozenset(wanted) & frozenset(offered)

    async def await_answer(
        self, token: str | None, device_id: str, action: str, args: Mapping[str, Any] | None,
        plan: Plan | None = None,
    ) -> None:
        """Before `check`: wait up to `answer_wait` s for the words of an answer under way.

        The model's call can overtake the transcript of the user's "yes": when the
        user has begun answering in the window, a short wait turns that race into a
        verdict instead of a retry.
        """
        tracker = self.tracker
        if self.answer_wait <= 0 or not token or tracker is None:
            return
        pending = self.book.peek(token, device_id, action, args, plan)
        if pending is None:
            return
        key = self.book.key(token)
        loop = asyncio.get_running_loop()
        life = pending.expires_at - self.book.clock()  # never outwait the token
        end = loop.time() + min(self.answer_wait, life - ANSWER_POLL_SECONDS)
        # The tracker is plain code fed by the Agent: polled, briefly.
        while tracker.waiting(key, self.book.clock()) and loop.time() < end:  # noqa: ASYNC110
            await asyncio.sleep(ANSWER_POLL_SECONDS)

    def check(
        self,
        *,
        entity: Entity,
        action: str,
        args: Mapping[str, Any] | None,
        topic: str,
        payload: str,
        token: str | None,
    ) -> Decision:
        """Proceed for what is not sensitive, or for a token the user has confirmed;
        never for a command whose payload says the opposite of its action."""
        what = f"{action.replace('_', ' ')} {entity.name}"
        opposite = self.policy.contradiction(action, payload)
        if opposite is not None:
            log.warning("refused to %s: %s (its discovery config may have been tampered "
                        "with)", what, opposite)
            return Decision("refused", None, (
                f"Nothing was done ({what}): {opposite}, the opposite of the action. Its "
                "configuration may have been tampered with; tell the user."))
        sens = self.policy.of_command(entity, action, topic, payload)
        if sens is None:
            return Decision("proceed")
        methods = self.methods(sens.category)
        if not methods:
            return Decision("refused", None, _unconfirmable(what, sens))
        if token:
            pending = self.book.check(token, entity.id, action, args, (topic, payload))
            if pending is not None:
                decided = self._judge(self.book.key(token), pending, what, methods)
                if decided is not None:
                    return decided
        return self._ask(entity, action, args, (topic, payload), what, methods,
                         stale=bool(token))

    def _judge(
        self, token: str, pending: Pending, what: str, methods: frozenset[str]
    ) -> Decision | None:
        """The verdict on a live token; None when a fresh question must be asked."""
        tracker = self.tracker
        verdict = (
            tracker.verdict(token, self.book.clock())
            if tracker
            else Verdict("pending", "nobody is listening for the user's answer here")
        )
        if verdict.state == "confirmed":
            self.book.consume(token)
            assert tracker is not None
            tracker.forget(token)
            self.book.stats.redeemed += 1
            return Decision("proceed", method=verdict.method)
        if verdict.state == "declined":
            self.book.consume(token)
            assert tracker is not None
            tracker.forget(token)
            self.book.stats.declined += 1
            return Decision(
                "declined",
                None,
                f"Nothing was done ({what}): {verdict.reason}. Do not ask again unless the "
                "user asks for it again.",
            )
        if verdict.state == "void":
            self.book.consume(token)
            if tracker is not None:
                tracker.forget(token)
            return None
        self.book.stats.unconfirmed += 1
        if tracker is not None:
            tracker.question_due(self._ask_for(token, what, methods), self.book.clock())
        left = max(1, math.ceil(pending.expires_at - self.book.clock()))
        return Decision(
            "confirm",
            token,
            f"Nothing was done: not confirmed yet ({verdict.reason}). Ask the user now, "
            f"in one short question about this action only: {what}? They confirm "
            f"{_HOW.get(methods, 'as asked')}. Then wait for their answer and call again "
            f"with the same arguments and confirmation token {token!r} within {left} seconds.",
        )

    def _ask(
        self,
        entity: Entity,
        action: str,
        args: Mapping[str, Any] | None,
        plan: Plan,
        what: str,
        methods: frozenset[str],
        *,
        stale: bool,
    ) -> Decision:
        token = self.book.request(entity.id, action, args, plan)
        if self.tracker is not None:
            self.tracker.question_due(self._ask_for(token, what, methods), self.book.clock())
        prefix = "That confirmation is expired, used or no longer valid. " if stale else ""
        return Decision(
            "confirm",
            token,
            f"{prefix}Nothing was done. Ask the user now, in one short question about this "
            f"action only: {what}? They confirm {_HOW.get(methods, 'as asked')}. Only "
            "after their answer, call again with the same arguments and confirmation "
            f"token {token!r} within {self.book.ttl:g} seconds.",
        )

    @staticmethod
    def _ask_for(token: str, what: str, methods: frozenset[str]) -> Ask:
        """The question; a yes may name the action and the device ("yes, unlock the door")."""
        return Ask(token, methods, frozenset(words(what)), what)


def _unconfirmable(what: str, sens: Sensitivity) -> str:
    return (
        f"Nothing was done: {what} needs the user's confirmation ({sens.why}), and none of "
        f"the ways allowed for a {sens.category} is available here. Tell the user; the "
        f"owner can set a confirmation PIN (credential confirm_pin) or change "
        f"tools.confirm_with.{sens.category}."
    )

"""Whether the user answered the model's question about one sensitive action.

The rule (README, "Safety"): a token for a sensitive action is confirmed only by
the user's own answer to the model's question about that very action.

1. The gate hands the model a token (needs_confirmation): the question is due.
2. The model's next spoken turn is the question. When that turn is complete and
   its audio has finished playing, plus an echo tail, the answer window opens.
3. The answer is the user's next turn: the first utterance from the trusted
   microphone that *begins* inside the window (judged by the audio level, not by
   when its transcript arrives), or a tap on the trusted glasses inside the window.
   Speech that began earlier (the tail of the request transcribed late, the
   model's own "say yes" through the microphone, a barge-in over the question)
   never answers.
4. A yes (where the device's category accepts a spoken yes), a tap (where it
   accepts a tap) or the PIN confirms. A no, a wrong PIN or anything else cancels.
   The model speaking again before the user answered (a cough or a door in the
   window is no answer), the user cutting the question off, or a fresh Live session
   (the model lost the question) lapses it. A negative anywhere wins over a PIN.
5. Words are credited to the utterance that began in the window only: after speech
   that began early, transcript fragments are dropped until one ends it (`finished`)
   or until EARLY_WORDS_SECONDS after the window opened (the native-audio models
   never say `finished`). An answer that got only such words is void, and the model
   asks again: a quick yes after early speech costs a second question, never a door.

At most one question is open: a newer token supersedes it, so one answer can never
confirm two actions. Pure code: every event carries its time (time.monotonic()).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from daemon.home.answers import MAX_ANSWER_CHARS, pin_matches, read_answer

PinJudgement = Literal["right", "wrong", "locked"]

log = logging.getLogger(__name__)

Method = Literal["yes", "tap", "pin"]
METHODS: tuple[Method, ...] = ("yes", "tap", "pin")
Phase = Literal["due", "asking", "open", "answering", "confirmed", "void"]

ECHO_TAIL_SECONDS = 0.3  # the room's echo of the question's last word
ANSWER_GRACE_SECONDS = 1.5  # transcripts of the answer may trail the model's reaction
EARLY_WORDS_SECONDS = 1.5  # ... and those of speech that ended as the window opened
PIECES_QUIET_SECONDS = 0.4  # an answer's fragments this far apart: it has been said
PIN_ATTEMPTS = 3  # wrong PINs within PIN_LOCKOUT_SECONDS lock PIN answers out...
PIN_LOCKOUT_SECONDS = 300.0  # ...for this long
_CONFIRMED_KEPT = 8  # confirmed, not yet redeemed tokens (the book expires them)


@dataclass(frozen=True)
class Ask:
    """One question: its token, how it may be answered, and words a yes may carry."""

    token: str
    methods: frozenset[str]
    words: frozenset[str] = frozenset()  # the action and the device's name
    what: str = ""  # "unlock Front door", for the log


@dataclass(frozen=True)
class Verdict:
    """`confirmed` (by `method`), `declined` (the user said no or a wrong PIN),
    `void` (lapsed, superseded, cut off, untrusted, another request) or `pending`."""

    state: Literal["confirmed", "declined", "void", "pending"]
    reason: str
    method: str | None = None


@dataclass
class ConsentStats:
    """Counters, exported as edge_home_confirmations_total{result=...}."""

    questions: int = 0
    confirmed_yes: int = 0
    confirmed_tap: int = 0
    confirmed_pin: int = 0
    declined_no: int = 0
    declined_other_request: int = 0
    declined_wrong_pin: int = 0
    lapsed: int = 0  # the model spoke again before the user answered
    interrupted: int = 0  # the question was cut off
    superseded: int = 0  # a newer question replaced it
    untrusted_answer: int = 0  # speech or a tap from a device that is not pinned
    early_speech: int = 0  # began before the window opened: not an answer
    early_taps: int = 0
    late_words: int = 0  # transcripts with no utterance begun in the window
    yes_not_enough: int = 0  # a yes where only a tap or the PIN may confirm
    taps_not_accepted: int = 0
    pin_locked: int = 0
    revoked: int = 0  # confirmed, then the user said no (or something else) before it ran


@dataclass
class _Question:
    ask: Ask
    phase: Phase = "due"
    window_at: float = math.inf
    onset_at: float | None = None
    closed_at: float | None = None  # the model reacted after the answer began
    pieces: list[str] = field(default_factory=list)
    chars: int = 0
    outcome: str = ""
    yes_not_enough: bool = False
    last_piece_at: float = -math.inf
    model_spoke: bool = False  # the model spoke after the answer began
    stale_words: bool = False  # the answer got words of the early speech (dropped)

    def reset_answer(self) -> None:
        self.onset_at = self.closed_at = None
        self.pieces.clear()
        self.chars = 0
        self.model_spoke = self.stale_words = False


class ConsentTracker:
    """Follows the conversation and tells the gate how the one open question was answered."""

    def __init__(
        self,
        *,
        pin: str | None = None,
        echo_tail: float = ECHO_TAIL_SECONDS,
        answer_grace: float = ANSWER_GRACE_SECONDS,
    ) -> None:
        self.stats = ConsentStats()
        self.echo_tail = echo_tail
        self.answer_grace = answer_grace
        self._pin = pin
        self._q: _Question | None = None
        self._confirmed: OrderedDict[str, str] = OrderedDict()
        self._pin_failures: deque[float] = deque(maxlen=PIN_ATTEMPTS)
        # Speech began before a window and its transcript has not ended (`finished`):
        # its words may still arrive, after any later onset. Outlives the question.
        self._early_open = False
        self._early_until = math.inf  # ... and its words are in by then, `finished` or not

    @property
    def has_pin(self) -> bool:
        """Whether a PIN was configured, so that an answer can be checked against it."""
        return bool(self._pin)

    @property
    def phase(self) -> Phase | None:
        """Where the one open question stands, or None when nothing is being asked."""
        return None if self._q is None else self._q.phase

    # -- the gate's side ---------------------------------------------------------
    def question_due(self, ask: Ask, now: float) -> None:
        """The model was just told to ask the user about `ask`: a new question cycle.

        Whatever was confirmed before and not yet used lapses: one question, and one
        confirmation, at a time.
        """
        self._confirmed.clear()
        self._bound_early(now)
        q = self._q
        if q is not None and q.ask.token == ask.token and q.phase not in ("confirmed", "void"):
            q.phase, q.window_at = "due", math.inf
            q.reset_answer()
            return
        if q is not None and q.phase not in ("confirmed", "void"):
            self._void(q, "superseded by a newer question")
            self.stats.superseded += 1
        self._q = _Question(ask)
        self.stats.questions += 1

    def waiting(self, token: str, now: float) -> bool:
        """An answer has begun in the window and its words have not arrived yet, or are
        still arriving: "Yes, no, wait!" comes in fragments, and the call must not be
        judged on the first one."""
        q = self._q
        return (
            q is not None and q.ask.token == token and q.phase == "answering"
            and (not q.pieces or now - q.last_piece_at < PIECES_QUIET_SECONDS)
        )

    def verdict(self, token: str, now: float) -> Verdict:
        """How the question for `token` stands now (the model's call ends the user's turn)."""
        q = self._q
        if q is not None and q.ask.token == token and q.phase == "answering":
            if q.pieces or (q.stale_words and token not in self._confirmed):
                self._evaluate(q, now)
            elif token in self._confirmed:  # a sound after the yes, no words: the yes stands
                q.phase = "confirmed"
                q.reset_answer()
        method = self._confirmed.get(token)
        if method is not None:
            return Verdict("confirmed", f"confirmed by {method}", method)
        if q is None or q.ask.token != token:
            return Verdict("void", "that question is no longer open")
        if q.phase == "void":
            declined = q.outcome.startswith(("the user said no", "wrong PIN"))
            return Verdict("declined" if declined else "void", q.outcome)
        reasons = {
            "due": "the user has not been asked yet",
            "asking": "the question is still being spoken",
            "open": "the user has not answered yet",
            "answering": "the user is still answering",
        }
        reason = reasons.get(q.phase, q.phase)
        if q.phase == "open" and q.yes_not_enough:
            reason = "a spoken yes is not enough for this device"
        return Verdict("pending", reason)

    def forget(self, token: str) -> None:
        """The token was used or is void: nothing about it counts any more."""
        self._confirmed.pop(token, None)
        if self._q is not None and self._q.ask.token == token:
            self._q = None

    def session_fresh(self, now: float) -> None:
        """A new Live session that did not resume: the model lost the question and its
        token, so the open question lapses and nothing confirmed is kept."""
        self._confirmed.clear()
        self._bound_early(now)
        q = self._q
        if q is not None and q.phase not in ("confirmed", "void"):
            self._void(q, "a fresh session began: the model lost the question")
            self.stats.lapsed += 1

    # -- the conversation (the Agent calls these) ---------------------------------
    def model_speaking(self, now: float) -> None:
        """Model audio: a question is being asked, or the model moved on."""
        q = self._q
        if q is None:
            return
        self._settle(q, now)
        if q.phase == "due":
            q.phase = "asking"
        elif q.phase == "open":
            if q.yes_not_enough:  # asked again for the tap or the PIN
                q.phase, q.window_at = "asking", math.inf
            else:
                self._void(q, "the model spoke again before the user answered")
                self.stats.lapsed += 1
        elif q.phase == "answering":
            q.model_spoke = True  # an answer without words will not be waited for again
            if q.closed_at is None:
                q.closed_at = now

    def model_acting(self, now: float) -> None:
        """A tool call: the model reacted to what the user said."""
        q = self._q
        if q is not None and q.phase == "answering" and q.closed_at is None:
            q.closed_at = now

    def model_turn_done(self, now: float, playback_left: float) -> None:
        """The model's turn is complete; its audio plays for `playback_left` more seconds."""
        q = self._q
        if q is None:
            return
        self._settle(q, now)
        if q.phase == "asking":
            q.phase = "open"
            q.window_at = now + max(0.0, playback_left) + self.echo_tail
            if self._early_open and self._early_until == math.inf:
                self._early_until = q.window_at + EARLY_WORDS_SECONDS
        elif q.phase == "answering" and q.closed_at is None:
            q.closed_at = now

    def model_interrupted(self, now: float) -> None:
        """The user (or a noise) cut the question off: it was never asked in full."""
        q = self._q
        self._bound_early(now)
        if q is not None and q.phase == "asking":
            self._void(q, "the question was cut off before it finished")
            self.stats.interrupted += 1

    def user_onset(self, at: float, trusted: bool) -> None:
        """Speech began at `at` (capture time) on the microphone."""
        q = self._q
        if q is None or q.phase == "void":
            # The request itself, most often: its words may trail into the window of
            # the question it leads to. Bounded when that question is due.
            self._early_open, self._early_until = True, math.inf
            return
        self._settle(q, at)
        if q.phase in ("due", "asking") or (q.phase == "open" and at < q.window_at):
            self.stats.early_speech += 1
            self._early_open = True  # its words may still arrive: none is an answer
            # ... until EARLY_WORDS_SECONDS after the window opens (once it is known)
            self._early_until = (q.window_at + EARLY_WORDS_SECONDS if q.phase == "open"
                                 else math.inf)
        elif q.phase == "confirmed" and trusted:
            # The user speaks again before the action ran: a change of mind must count.
            q.phase, q.onset_at = "answering", at
        elif q.phase == "open" or (q.phase == "answering" and not trusted):
            # An untrusted onset inside an answer voids it too: the words that follow
            # could be the other device's "yes" (found by the property test).
            if not trusted:
                self._void(q, "the answer came from a device that is not the user's pinned one")
                self.stats.untrusted_answer += 1
                return
            q.phase, q.onset_at = "answering", at

    def user_words(self, text: str, finished: bool, now: float) -> None:
        """A transcript fragment of what the microphone heard."""
        q, early = self._q, self._early_open
        if early and now >= self._early_until:
            # The early speech ended before the window opened (the model's own voice
            # ends with its playback; speech over the question lapses it), so its
            # words are in by now: `finished`, which the native-audio models never
            # set, is not waited for.
            early = self._early_open = False
        if finished:
            self._early_open = False
        if q is None:
            return
        self._settle(q, now)
        if q.phase == "open":
            self.stats.late_words += 1  # no utterance began in the window: older speech
            return
        if q.phase == "confirmed" and q.pieces and q.ask.token in self._confirmed:
            self._after_yes(q, text, now)
            return
        if q.phase != "answering":
            return
        if early and q.ask.token not in self._confirmed:
            # The early speech's words, however late: not the answer's (after a
            # confirmation every word counts: there words can only revoke it).
            q.stale_words = True
            self.stats.late_words += 1
            return
        self._add_piece(q, text, now)
        if finished:
            self._evaluate(q, now)

    def _add_piece(self, q: _Question, text: str, now: float) -> None:
        if q.chars < MAX_ANSWER_CHARS:
            piece = text[: MAX_ANSWER_CHARS - q.chars]
            q.pieces.append(piece)
            q.chars += len(piece)
        q.last_piece_at = now

    def _after_yes(self, q: _Question, text: str, now: float) -> None:
        """The rest of the utterance whose first words confirmed: "Yes, no, wait!" is
        judged whole, and anything but a yes revokes (before the action ran)."""
        self._add_piece(q, text, now)
        reading = read_answer("".join(q.pieces), q.ask.words)
        if reading in ("yes", "empty") or (q.outcome == "pin" and reading != "no"):
            return
        self._confirmed.pop(q.ask.token, None)
        self.stats.revoked += 1
        self._void(q, "the user said no" if reading == "no"
                   else "the user said something other than yes")

    def user_tap(self, at: float, trusted: bool) -> None:
        """A tap on the device: confirms an open question that accepts taps, if it is trusted."""
        q = self._q
        if q is None:
            return
        self._settle(q, at)
        if not trusted:
            self.stats.untrusted_answer += 1
            return
        if q.phase in ("due", "asking") or (q.phase == "open" and at < q.window_at):
            self.stats.early_taps += 1
        elif q.phase in ("open", "answering"):
            if "tap" in q.ask.methods:
                self._confirm(q, "tap")
            else:
                self.stats.taps_not_accepted += 1

    # -- inside ----------------------------------------------------------------
    def _settle(self, q: _Question, now: float) -> None:
        """An answer whose model reaction is older than the grace is over: judge it."""
        if (
            q.phase == "answering"
            and q.closed_at is not None
            and now > q.closed_at + self.answer_grace
        ):
            self._evaluate(q, now)

    def _evaluate(self, q: _Question, now: float) -> None:
        text = "".join(q.pieces)
        if q.ask.token in self._confirmed:
            self._reconsider(q, text, now)
            return
        reading = read_answer(text, q.ask.words)
        if reading == "no":  # a negative anywhere wins, even beside the right PIN
            self._void(q, "the user said no")
            self.stats.declined_no += 1
            return
        if self._pin and "pin" in q.ask.methods:
            match = pin_matches(text, self._pin, q.ask.words)
            if match is not None:
                judged = self._judge_pin(match, now)
                if judged == "right":
                    self._confirm(q, "pin")
                else:
                    self._void_pin(q, judged)
                return
        if reading == "empty":
            if q.model_spoke:  # a cough, then the model moved on: no answer to this
                self._void(q, "the model spoke again before the user answered")
                self.stats.lapsed += 1
            elif q.stale_words:  # only words of speech that began before the window
                self._void(q, "the only words heard began before the question ended")
            else:
                q.phase = "open"  # a cough, a door: the window stays open
                q.reset_answer()
        elif reading == "other":
            self._void(q, "the user said something other than yes")
            self.stats.declined_other_request += 1
        elif "yes" in q.ask.methods:
            self._confirm(q, "yes")
        else:
            q.phase, q.yes_not_enough = "open", True
            q.reset_answer()
            self.stats.yes_not_enough += 1

    def _reconsider(self, q: _Question, text: str, now: float) -> None:
        """Words after the confirmation, before the action ran: anything but yes revokes.

        Digits are judged as a PIN answer (failures counted, lockout included): else
        a tap followed by spoken guesses would tell right from wrong without limit.
        """
        reading = read_answer(text, q.ask.words)
        judged: PinJudgement | None = None
        if reading != "no" and self._pin and "pin" in q.ask.methods:
            match = pin_matches(text, self._pin, q.ask.words)
            judged = None if match is None else self._judge_pin(match, now)
        if judged == "right" or (judged is None and reading in ("yes", "empty")):
            q.phase = "confirmed"
            q.reset_answer()
            return
        self._confirmed.pop(q.ask.token, None)
        self.stats.revoked += 1
        if judged is not None:
            self._void_pin(q, judged)
        elif reading == "no":
            self._void(q, "the user said no")
        else:
            self._void(q, "the user said something other than yes")

    def _bound_early(self, now: float) -> None:
        """The question the early speech came before is gone before its window was
        known: its words are in EARLY_WORDS_SECONDS from now, whatever comes next."""
        if self._early_open and self._early_until == math.inf:
            self._early_until = now + EARLY_WORDS_SECONDS

    def _judge_pin(self, match: bool, now: float) -> PinJudgement:
        """One PIN answer, right or wrong, unless PIN answers are locked out."""
        failures = self._pin_failures
        if len(failures) == PIN_ATTEMPTS and now - failures[0] < PIN_LOCKOUT_SECONDS:
            self.stats.pin_locked += 1
            return "locked"
        if match:
            return "right"
        failures.append(now)
        self.stats.declined_wrong_pin += 1
        return "wrong"

    def _void_pin(self, q: _Question, judged: PinJudgement) -> None:
        if judged == "locked":
            self._void(q, "wrong PIN too often: PIN answers are locked for a while")
        else:
            self._void(q, "wrong PIN")

    def _confirm(self, q: _Question, method: str) -> None:
        q.phase, q.outcome = "confirmed", method
        self._confirmed[q.ask.token] = method
        while len(self._confirmed) > _CONFIRMED_KEPT:
            self._confirmed.popitem(last=False)
        setattr(self.stats, f"confirmed_{method}", getattr(self.stats, f"confirmed_{method}") + 1)
        log.info("confirmation: %s confirmed by the user (%s)", q.ask.what or "action", method)

    def _void(self, q: _Question, reason: str) -> None:
        q.phase, q.outcome = "void", reason
        log.info("confirmation: %s not confirmed: %s", q.ask.what or "action", reason)

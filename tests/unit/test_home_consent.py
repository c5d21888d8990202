"""The confirmation of sensitive actions, as an attacker and an unlucky household would try it.

Each scenario of issue 12 item 1 is played on the real gate, book and tracker with a
virtual clock: the request's late transcript, a yes to another question, one yes for
two actions, the TV, the model's own voice, an impostor's glasses. A property test
drives random timings and checks that nothing is ever confirmed outside its own
question's answer window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.home.answers import pin_matches, read_answer, redact_digits, spoken_answer
from daemon.home.confirm import ConfirmationBook, ConfirmationGate, Decision
from daemon.home.consent import ECHO_TAIL_SECONDS, ConsentTracker
from daemon.home.sensitivity import Entity, SensitivityPolicy

LOCK = Entity("front_door", "Front door", "lock", None, frozenset({"home/front_door/set"}))
GARAGE = Entity("garage", "Garage door", "cover", "garage", frozenset({"home/garage/set"}))
GATE = Entity("gate", "Drive gate", "cover", "gate", frozenset({"home/gate/set"}))
LIGHT = Entity("kitchen", "Kitchen light", "light", None, frozenset({"home/kitchen/set"}))
ALL_YES = {"lock": frozenset({"yes", "tap", "pin"}), "other": frozenset({"yes", "tap", "pin"})}
STRICT = {
    "lock": frozenset({"tap", "pin"}), "gate": frozenset({"tap", "pin"}),
    "garage": frozenset({"yes", "tap", "pin"}), "other": frozenset({"yes", "tap", "pin"}),
}
COMMAND = {"front_door": ("unlock", "UNLOCK"), "garage": ("open", "OPEN"),
           "gate": ("open", "OPEN"), "kitchen": ("turn_on", "ON")}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class House:
    """The gate with a virtual clock, and the conversation's events in time order."""

    confirm_with: dict[str, frozenset[str]] = field(default_factory=lambda: dict(ALL_YES))
    pin: str | None = None
    taps: bool = True
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.tracker = ConsentTracker(pin=self.pin)
        self.book = ConfirmationBook(ttl=60.0, clock=self.clock)
        self.gate = ConfirmationGate(
            self.book, SensitivityPolicy(), self.tracker, confirm_with=self.confirm_with,
            taps_possible=lambda: self.taps,
        )

    def wait(self, seconds: float) -> float:
        self.clock.t += seconds
        return self.clock.t

    def call(self, e: Entity, token: str | None = None) -> Decision:
        """The model calls control_device (a tool call is the model acting)."""
        self.tracker.model_acting(self.clock.t)
        action, payload = COMMAND[e.id]
        topic = next(iter(e.command_topics))
        return self.gate.check(entity=e, action=action, args={}, topic=topic, payload=payload,
                               token=token)

    def ask(self, playback: float = 1.0) -> None:
        """The model speaks a turn; its audio plays `playback` s more after it completes."""
        self.tracker.model_speaking(self.wait(0.05))
        self.tracker.model_turn_done(self.wait(0.3), playback)

    def say(self, *pieces: str, after: float = 0.2, lag: float = 0.4, trusted: bool = True,
            finished: bool = True) -> None:
        """The user speaks (onset from the audio), the transcript follows `lag` s later."""
        self.tracker.user_onset(self.wait(after), trusted)
        self.wait(lag)
        for i, piece in enumerate(pieces):
            self.tracker.user_words(piece, finished and i == len(pieces) - 1, self.wait(0.05))

    def after_playback(self, playback: float = 1.0) -> None:
        self.wait(playback + ECHO_TAIL_SECONDS)


def test_the_late_tail_of_the_request_does_not_confirm() -> None:
    h = House()
    h.say(" Please open the garage door", finished=False)
    first = h.call(GARAGE)
    assert first.verdict == "confirm" and first.token
    h.ask(playback=1.2)
    h.after_playback(1.2)
    h.tracker.user_words(" okay?", True, h.wait(0.1))  # the request's tail, transcribed late
    again = h.call(GARAGE, first.token)
    assert again.verdict == "confirm", again  # not done: nobody answered the question
    assert h.tracker.stats.late_words == 1


def test_a_yes_to_another_question_does_not_unlock() -> None:
    h = House()
    unlock = h.call(LOCK)
    h.ask()  # "Shall I unlock the front door?"
    h.after_playback()
    h.ask()  # the model moves on: "Do you want the kitchen light on?"
    h.after_playback()
    h.say("Yes.")
    assert h.call(LOCK, unlock.token).verdict == "confirm"
    assert h.tracker.stats.lapsed == 1


def test_one_yes_confirms_one_action() -> None:
    h = House()
    door = h.call(LOCK)
    garage = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("Yes.")
    assert h.call(GARAGE, garage.token).verdict == "proceed"
    assert h.call(LOCK, door.token).verdict == "confirm"  # superseded: asked again
    assert h.tracker.stats.superseded == 1


def test_the_tv_does_not_confirm() -> None:
    h = House()
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("...the answer, contestant, is yes!")
    refused = h.call(GARAGE, asked.token)
    assert refused.verdict == "confirm" and "expired, used or no longer valid" in refused.message
    assert h.tracker.stats.declined_other_request == 1


def test_the_models_own_voice_through_the_microphone_is_not_an_answer() -> None:
    h = House()
    asked = h.call(GARAGE)
    h.tracker.model_speaking(h.wait(0.05))
    h.tracker.model_turn_done(h.wait(0.2), 2.0)  # "... say yes to confirm." still playing
    h.say("yes to confirm", after=0.5)  # the speaker's echo, heard during playback
    h.wait(2.0)
    assert h.call(GARAGE, asked.token).verdict == "confirm"
    assert h.tracker.stats.early_speech == 1


def test_words_that_began_before_the_question_ended_are_not_the_answer() -> None:
    h = House()
    asked = h.call(GARAGE)
    h.tracker.model_speaking(h.wait(0.05))
    h.tracker.user_onset(h.wait(0.1), True)  # the user talks over the question
    h.tracker.model_turn_done(h.wait(0.5), 0.0)
    h.wait(1.0)
    h.tracker.user_words("yes", True, h.wait(0.1))
    assert h.call(GARAGE, asked.token).verdict == "confirm"


def test_a_yes_in_the_window_confirms_once() -> None:
    h = House()
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say(" Ye", "s, open the garage door please.")
    done = h.call(GARAGE, asked.token)
    assert done.verdict == "proceed" and done.method == "yes"
    again = h.call(GARAGE, asked.token)
    assert again.verdict == "confirm" and again.token != asked.token


def test_a_no_or_a_wrong_pin_declines() -> None:
    h = House(pin="4711")
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("Yes... no, wait.")
    assert h.call(GARAGE, asked.token).verdict == "declined"
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("four seven one two")
    assert h.call(GARAGE, asked.token).verdict == "declined"
    assert h.tracker.stats.declined_wrong_pin == 1


def test_a_lock_needs_a_tap_or_the_pin_by_default() -> None:
    h = House(confirm_with=STRICT, pin="4711")
    asked = h.call(LOCK)
    assert "tapping their glasses or saying their confirmation PIN" in asked.message
    h.ask()
    h.after_playback()
    h.say("Yes.")
    pending = h.call(LOCK, asked.token)
    assert pending.verdict == "confirm" and pending.token == asked.token
    assert "a spoken yes is not enough" in pending.message
    h.ask()  # "Please tap your glasses to confirm."
    h.after_playback()
    h.tracker.user_tap(h.wait(0.3), True)
    assert h.call(LOCK, asked.token).verdict == "proceed"
    # And by PIN, in words or digits.
    asked = h.call(LOCK)
    h.ask()
    h.after_playback()
    h.say("My PIN is 4 7 1 1.")
    assert h.call(LOCK, asked.token).method == "pin"


def test_nothing_can_confirm_a_lock_where_neither_tap_nor_pin_exists() -> None:
    h = House(confirm_with=STRICT, taps=False)
    refused = h.call(LOCK)
    assert refused.verdict == "refused" and "confirm_pin" in refused.message
    assert h.book.stats.issued == 0


def test_an_early_tap_or_an_untrusted_device_never_confirms() -> None:
    h = House(confirm_with=STRICT)
    asked = h.call(LOCK)
    h.tracker.user_tap(h.wait(0.1), True)  # before the question
    h.ask()
    h.tracker.user_tap(h.wait(0.1), True)  # while the question still plays
    h.after_playback()
    h.tracker.user_tap(h.wait(0.1), False)  # an impostor's tap
    assert h.call(LOCK, asked.token).verdict == "confirm"
    assert h.tracker.stats.early_taps == 2 and h.tracker.stats.untrusted_answer == 1
    asked = h.call(LOCK)
    h.ask()
    h.after_playback()
    h.say("Yes", trusted=False)  # an impostor's voice answers first: the question is void
    h.tracker.user_tap(h.wait(0.1), True)
    assert h.call(LOCK, asked.token).verdict == "confirm"


def test_a_cut_off_question_and_a_cough() -> None:
    h = House()
    asked = h.call(GARAGE)
    h.tracker.model_speaking(h.wait(0.1))
    h.tracker.model_interrupted(h.wait(0.2))
    h.after_playback()
    h.say("Yes.")
    assert h.call(GARAGE, asked.token).verdict == "confirm"
    assert h.tracker.stats.interrupted == 1
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("")  # a cough: no words; the window stays open
    h.say("Yes.")
    assert h.call(GARAGE, asked.token).verdict == "proceed"


def test_pin_answers_lock_out_after_three_wrong_ones() -> None:
    h = House(pin="4711")
    for _ in range(3):
        asked = h.call(GARAGE)
        h.ask()
        h.after_playback()
        h.say("1 2 3 4")
        assert h.call(GARAGE, asked.token).verdict == "declined"
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("4 7 1 1")
    assert h.call(GARAGE, asked.token).verdict != "proceed"
    assert h.tracker.stats.pin_locked == 1


def test_non_sensitive_commands_proceed_and_aliases_do_not() -> None:
    h = House()
    assert h.call(LIGHT).verdict == "proceed"
    policy = SensitivityPolicy()
    policy.index([LOCK])
    relay = Entity("relay", "Porch relay", "switch", None, frozenset({"home/front_door/set"}))
    assert policy.of_command(relay, "turn_on", "home/front_door/set", "ON") is not None
    gate_button = Entity("b1", "Relay 3", "button", None, frozenset({"x/relay3"}),
                         ("Drive gate opener",))
    assert policy.of_entity(gate_button) is not None
    plain = Entity("s1", "Desk lamp", "switch", None, frozenset({"x/desk"}))
    assert policy.of_command(plain, "turn_on", "x/desk", "UNLOCK") is not None
    assert policy.of_command(plain, "turn_on", "x/desk", '{"state": "ON"}') is None
    blinds = Entity("bl", "Blinds", "cover", "blind", frozenset({"x/bl"}))
    assert policy.of_command(blinds, "open", "x/bl", "OPEN") is None
    door = Entity("d", "Back door", "cover", "door", frozenset({"x/d"}))
    assert policy.of_command(door, "close", "x/d", "CLOSE") is not None
    panel = Entity("p", "Alarm", "alarm_control_panel", None, frozenset({"x/p"}))
    assert SensitivityPolicy(sensitive=()).of_command(panel, "disarm", "x/p", "0") is not None
    assert SensitivityPolicy(sensitive=()).of_command(panel, "arm_away", "x/p", "1") is None


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("Yes.", "yes"), ("yeah, go ahead", "yes"), ("Sure, unlock the front door", "yes"),
        ("yes and turn on the light", "other"), ("is it raining? yes", "other"),
        ("no", "no"), ("yes, no, don't", "no"), ("", "empty"), ("   ", "empty"),
        ("Ja, bitte", "yes"), ("the answer contestant is yes", "other"),
    ],
)
def test_reading_an_answer(text: str, reading: str) -> None:
    assert read_answer(text, {"unlock", "front", "door"}) == reading


def test_spoken_answers_pins_and_redaction() -> None:
    assert spoken_answer("I don't think so") is False
    assert spoken_answer("okay") is True
    assert pin_matches("one two three four", "1234") is True
    assert pin_matches("12 34", "1234") is True
    assert pin_matches("yes please", "1234") is None
    assert pin_matches("1 2 3", "1234") is None  # fewer digits than any PIN: no attempt
    assert pin_matches("1 2 3 5", "1234") is False
    assert redact_digits("my pin is one 2 three 4, thanks") == "my pin is # # # #, thanks"


# ------------------------------------------------------------------ property test

TARGETS = (LOCK, GARAGE, GATE)
Step = tuple[str, Any]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(0, 2)),
        st.tuples(st.just("turn"), st.floats(0.0, 3.0)),
        st.tuples(st.just("interrupt"), st.none()),
        st.tuples(st.just("say"), st.tuples(
            st.sampled_from(["Yes.", "yes please", "no", "open it? yes", "", "sure, do it",
                             "1 2 3 4", "the answer is yes"]),
            st.floats(0.0, 2.5), st.booleans(), st.booleans())),
        st.tuples(st.just("late_words"), st.sampled_from(["yes", "okay?"])),
        st.tuples(st.just("tap"), st.booleans()),
        st.tuples(st.just("wait"), st.floats(0.0, 3.0)),
        st.tuples(st.just("call"), st.integers(0, 2)),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
@example([("issue", 1), ("turn", 0.0), ("say", ("Yes.", 1.0, False, False)),  # found once:
          ("say", ("", 0.0, True, False)), ("say", ("Yes.", 0.0, False, False)),  # another
          ("call", 1)])  # device's "yes" inside the user's answer confirmed it
def test_nothing_is_confirmed_outside_its_own_answer_window(script: list[Step]) -> None:
    """The oracle knows the timeline: an action may proceed only on a trusted tap, PIN or
    plain yes that began after the playback of the first model turn following its token's
    latest question, with no model turn, and no newer question, in between."""
    h = House(confirm_with=dict(STRICT), pin="1234")
    tokens: dict[str, str] = {}
    asked_at: dict[str, float] = {}  # token -> when the model was last told to ask
    latest_question = [-1.0]
    turns: list[tuple[float, float]] = []  # (model turn started, its playback ended + tail)
    evidence: list[tuple[float, str, bool]] = []  # (began, kind, trusted)
    used: set[float] = set()

    def note(decision: Decision, target: Entity) -> None:
        if decision.verdict == "confirm" and decision.token:
            tokens[target.id] = decision.token
            asked_at[decision.token] = latest_question[0] = h.clock.t

    for kind, arg in script:
        if kind == "issue":
            note(h.call(TARGETS[arg]), TARGETS[arg])
        elif kind == "turn":
            start = h.wait(0.05)
            h.tracker.model_speaking(start)
            h.tracker.model_turn_done(h.wait(0.2), arg)
            turns.append((start, h.clock.t + arg + ECHO_TAIL_SECONDS))
        elif kind == "interrupt":
            start = h.wait(0.05)
            h.tracker.model_speaking(start)
            h.tracker.model_interrupted(h.wait(0.1))
            turns.append((start, float("inf")))
        elif kind == "say":
            text, lag, trusted, finished = arg
            onset = h.wait(0.1)
            h.tracker.user_onset(onset, trusted)
            h.wait(lag)
            h.tracker.user_words(text, finished, h.clock.t)
            reading = read_answer(text, {"open", "it"})
            if pin_matches(text, "1234"):
                evidence.append((onset, "pin", trusted))
            elif reading == "yes":
                evidence.append((onset, "yes", trusted))
        elif kind == "late_words":
            h.tracker.user_words(arg, True, h.wait(0.1))
        elif kind == "tap":
            at = h.wait(0.1)
            h.tracker.user_tap(at, arg)
            evidence.append((at, "tap", arg))
        elif kind == "wait":
            h.wait(arg)
        elif kind == "call":
            target = TARGETS[arg]
            token = tokens.get(target.id)
            decision = h.call(target, token)
            if decision.verdict == "proceed":
                assert token is not None
                allowed = {"lock": {"tap", "pin"}, "gate": {"tap", "pin"}}.get(
                    "lock" if target is LOCK else "gate" if target is GATE else "garage",
                    {"yes", "tap", "pin"},
                )
                since = asked_at[token]
                assert since == latest_question[0], "an older question was confirmed"
                # The first model turn after the question was asked.
                after = [t for t in turns if t[0] > since]
                assert after, "confirmed without the model asking"
                _start, window = after[0]
                later_turn = after[1][0] if len(after) > 1 else float("inf")
                ok = [
                    e for e in evidence
                    if e[2] and e[1] in allowed and window <= e[0] < later_turn
                    and e[0] not in used
                ]
                assert ok, f"confirmed outside its window: {decision}, evidence {evidence}"
                used.add(ok[0][0])
            else:
                note(decision, target)


def test_a_change_of_mind_before_the_action_ran_revokes_the_yes() -> None:
    h = House()
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("Yes.")
    h.say("No, wait!", after=0.5)  # a second utterance, before the model's call
    assert h.call(GARAGE, asked.token).verdict == "declined"
    assert h.tracker.stats.revoked == 1
    asked = h.call(GARAGE)
    h.ask()
    h.after_playback()
    h.say("Yes.")
    h.say("", after=0.5)  # a cough after the yes: the yes stands
    assert h.call(GARAGE, asked.token).verdict == "proceed"

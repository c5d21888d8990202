"""The consent tracker against the review's attacks (round 5), on a virtual clock.

A cough that keeps a question open while the model moves on, the early speech's words
credited to a knock in the window, questions read as a yes, PIN guesses after a tap,
a no beside the right PIN, and a fresh Live session. Each test failed before its fix.
"""

from __future__ import annotations

import time

import pytest

from daemon.home.answers import pin_matches, read_answer, words
from daemon.home.consent import (
    EARLY_WORDS_SECONDS,
    PIECES_QUIET_SECONDS,
    PIN_ATTEMPTS,
    Ask,
    ConsentTracker,
)
from daemon.live.events import LinkStatus
from tests.support.agent import camera_agent

pytestmark = pytest.mark.timeout(20)

WORDS = frozenset({"open", "garage", "door"})


def asked(tr: ConsentTracker, methods: set[str], t: float = 100.0, token: str = "tok") -> float:
    """The model asks (a turn whose audio has played); returns a time inside the window."""
    tr.question_due(Ask(token, frozenset(methods), WORDS), t)
    tr.model_speaking(t)
    tr.model_turn_done(t, 0.0)
    return t + tr.echo_tail + 0.01


# -- a wordless sound, then the model speaks again -----------------------------------
def test_a_cough_then_the_model_moving_on_lapses_the_question() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.user_onset(t + 0.1, True)  # a door slams in the window: no words follow
    tr.model_speaking(t + 1.0)  # "Do you want the kitchen light on?"
    tr.model_turn_done(t + 2.0, 0.0)
    tr.user_onset(t + 4.0, True)  # the user answers that other question
    tr.user_words("Yes.", True, t + 4.3)
    verdict = tr.verdict("tok", t + 4.4)
    assert verdict.state == "void" and "spoke again" in verdict.reason
    assert tr.stats.lapsed == 1 and tr.stats.confirmed_yes == 0


def test_a_cough_while_the_model_is_quiet_keeps_the_window_open() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.user_onset(t, True)
    tr.user_words("", True, t + 0.2)
    tr.user_onset(t + 1.0, True)
    tr.user_words("Yes.", True, t + 1.3)
    assert tr.verdict("tok", t + 1.4).state == "confirmed"


# -- the early speech's words after a knock in the window ----------------------------
def test_words_of_speech_begun_before_the_window_are_not_a_later_onsets() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.user_onset(t - 0.2, True)  # the model's own voice on the microphone, early
    tr.user_onset(t + 0.5, True)  # a knock in the window
    tr.user_words(" Open the garage door, okay", True, t + 0.8)  # the early speech's words
    assert tr.waiting("tok", t + 0.9)  # the knock's own words may still come...
    verdict = tr.verdict("tok", t + 2.5)  # ...the model's call: none came
    assert verdict.state == "void" and "began before" in verdict.reason
    assert tr.stats.late_words == 1 and tr.stats.confirmed_yes == 0


def test_after_the_early_speech_ends_the_answers_own_words_count() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.user_onset(t - 0.2, True)
    tr.user_onset(t + 0.5, True)
    tr.user_words(" Open the", False, t + 0.6)
    tr.user_words(" garage door", True, t + 0.7)  # the early speech ends here
    tr.user_words("Yes.", True, t + 0.9)
    assert tr.verdict("tok", t + 1.0).state == "confirmed"


def test_early_speech_finished_before_the_window_does_not_hold_up_the_answer() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"}, t=100.0)
    tr.user_onset(t - 0.2, True)
    tr.user_words("hm", True, t - 0.1)
    tr.user_onset(t + 0.5, True)
    tr.user_words("Yes, open the garage door.", True, t + 0.8)
    assert tr.verdict("tok", t + 0.9).state == "confirmed"


def test_the_early_speech_stays_unfinished_across_a_newer_question() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"}, token="first")
    tr.user_onset(t - 0.2, True)
    # superseded before its words came (within EARLY_WORDS_SECONDS of the first window)
    t = asked(tr, {"yes"}, t=t + 0.3, token="second")
    tr.user_onset(t + 0.1, True)  # a knock in the second window
    tr.user_words(" okay, open the garage door", True, t + 0.4)
    assert tr.verdict("second", t + 2.0).state != "confirmed"


def test_without_finished_the_early_speech_is_waited_for_a_bounded_time() -> None:
    # The native-audio models never set `finished`: the early speech's words are in
    # EARLY_WORDS_SECONDS after the window opened, and later answers are heard again.
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.user_onset(t - 0.2, True)  # the model's own voice, early; no fragment ever ends it
    tr.user_onset(t + 0.3, True)
    tr.user_words(" yes", False, t + 0.9)  # too soon to tell from the early speech's
    assert tr.verdict("tok", t + 1.0).state == "void"  # the model asks again
    t = asked(tr, {"yes"}, t=t + 3.0, token="again")
    tr.user_onset(t + 0.3, True)
    tr.user_words(" Yes.", False, t + EARLY_WORDS_SECONDS + 0.1)
    assert tr.verdict("again", t + EARLY_WORDS_SECONDS + 0.2).state == "confirmed"


# -- a question is not a yes ----------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["Is it okay?", "Is that correct?", "Sure?", "Is that right? Okay?",
     "Open the garage door, okay?", "is it okay", "okay, is that right", "¿Vale?",
     "can you do it", "ist das okay"],
)
def test_a_question_is_not_a_yes(text: str) -> None:
    assert read_answer(text, WORDS) == "other", text


@pytest.mark.parametrize(
    "text",
    ["Yes.", "Yes please", "okay, do it", "Do it.", "yes it is", "Yes, it's fine",
     "yes that is right", "Sure, open the garage door", "Ja, bitte", "please do"],
)
def test_a_plain_yes_stays_a_yes(text: str) -> None:
    assert read_answer(text, WORDS) == "yes", text


def test_a_question_in_the_window_does_not_confirm() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.user_onset(t, True)
    tr.user_words("Is that right? Okay?", True, t + 0.3)
    assert tr.verdict("tok", t + 0.4).state == "void"


# -- PIN guesses after a tap ---------------------------------------------------------
def tap_then_say(tr: ConsentTracker, token: str, said: str, t: float) -> str:
    t = asked(tr, {"tap", "pin"}, t=t, token=token)
    tr.user_tap(t, True)  # the tap confirms
    tr.user_onset(t + 0.1, True)  # then digits, before the model's call
    tr.user_words(said, True, t + 0.3)
    state = tr.verdict(token, t + 0.4).state
    tr.forget(token)
    return state


def test_pin_guesses_after_a_tap_count_and_lock_out() -> None:
    tr = ConsentTracker(pin="7391")
    states = [tap_then_say(tr, f"t{i}", guess, 1000.0 + 5 * i)
              for i, guess in enumerate(["0000", "1111", "2222", "7391"])]
    assert states == ["declined"] * PIN_ATTEMPTS + ["declined"]  # the right one is locked
    assert tr.stats.declined_wrong_pin == PIN_ATTEMPTS and tr.stats.pin_locked == 1
    assert tr.stats.revoked == PIN_ATTEMPTS + 1


def test_the_right_pin_after_a_tap_keeps_the_confirmation() -> None:
    tr = ConsentTracker(pin="7391")
    assert tap_then_say(tr, "t", "7 3 9 1", 1000.0) == "confirmed"
    assert tr.stats.revoked == 0


# -- a no beside the right PIN -------------------------------------------------------
def test_a_no_beside_the_right_pin_declines_and_is_no_pin_failure() -> None:
    tr = ConsentTracker(pin="7391")
    t = asked(tr, {"pin"})
    tr.user_onset(t, True)
    tr.user_words("No, don't, 7 3 9 1 is not for that", True, t + 0.3)
    verdict = tr.verdict("tok", t + 0.4)
    assert verdict.state == "declined" and "said no" in verdict.reason
    assert tr.stats.declined_no == 1 and tr.stats.declined_wrong_pin == 0


# -- a fresh Live session ------------------------------------------------------------
def test_a_fresh_session_lapses_the_open_question() -> None:
    tr = ConsentTracker()
    t = asked(tr, {"yes"})
    tr.session_fresh(t)
    tr.user_onset(t + 0.1, True)
    tr.user_words("Yes.", True, t + 0.3)
    verdict = tr.verdict("tok", t + 0.4)
    assert verdict.state == "void" and "fresh session" in verdict.reason
    assert tr.stats.lapsed == 1


def test_the_agent_tells_the_tracker_of_a_fresh_session_not_of_a_resumed_one() -> None:
    agent = camera_agent()
    tr = ConsentTracker()
    agent.add_observer(tr)
    tr.question_due(Ask("tok", frozenset({"yes"})), time.monotonic())
    agent._handle(LinkStatus("connected", resumed=True))  # noqa: SLF001 - a Live event handed in without a socket
    assert tr.phase == "due"
    agent._handle(LinkStatus("connected", resumed=False))  # noqa: SLF001 - a Live event handed in without a socket
    assert tr.phase == "void"


# -- round six: the fixes attacked ----------------------------------------------------
def test_one_early_onset_does_not_void_every_later_prompt_yes() -> None:
    # The flag was cleared only by `finished` (never sent by the native-audio models) or
    # against whatever question was open: five later prompt yeses were all void.
    tr = ConsentTracker()
    t = asked(tr, {"yes"}, token="first")
    tr.user_onset(t - 0.1, True)  # a reply begun just inside the echo tail
    tr.forget("first")
    for n in range(5):
        t = asked(tr, {"yes"}, t=t + 60.0, token=f"q{n}")
        tr.user_onset(t + 0.3, True)
        tr.user_words(" Yes.", False, t + 1.0)
        assert tr.verdict(f"q{n}", t + 1.1).state == "confirmed", n


def test_the_early_bound_is_set_when_the_question_is_asked_after_the_speech() -> None:
    tr = ConsentTracker()
    tr.question_due(Ask("tok", frozenset({"yes"}), WORDS), 100.0)
    tr.model_speaking(100.0)
    tr.user_onset(100.5, True)  # the model's own voice on the microphone, mid-question
    tr.model_turn_done(104.0, 2.0)  # its audio plays 2 s more: the window opens at 106.3
    tr.user_onset(106.5, True)  # a knock in the window
    tr.user_words(" open the garage door okay", False, 107.2)  # the early speech's words
    assert tr.verdict("tok", 107.3).state == "void"


@pytest.mark.parametrize(("said", "state"), [
    ("Yes, open garage 2", "confirmed"),
    ("yes, garage two", "void"),  # not the device's words as announced: asked again
    ("Yes, that one", "void"),
])
def test_a_yes_naming_a_numbered_device_is_no_wrong_pin(said: str, state: str) -> None:
    # A digit or two beside a yes counted as a wrong PIN: three of them locked the
    # owner's PIN out for five minutes.
    tr = ConsentTracker(pin="7391")
    tr.question_due(Ask("tok", frozenset({"yes", "pin"}),
                        frozenset({"open", "garage", "2"}), "open Garage 2"), 100.0)
    tr.model_speaking(100.0)
    tr.model_turn_done(100.0, 0.0)
    t = 100.0 + tr.echo_tail + 0.01
    tr.user_onset(t, True)
    tr.user_words(said, True, t + 0.3)
    assert tr.verdict("tok", t + 0.4).state == state
    assert tr.stats.declined_wrong_pin == 0 and tr.stats.pin_locked == 0


def test_the_pin_may_follow_the_devices_number() -> None:
    tr = ConsentTracker(pin="7391")
    tr.question_due(Ask("tok", frozenset({"pin"}), frozenset({"unlock", "door", "2"}),
                        "unlock door 2"), 100.0)
    tr.model_speaking(100.0)
    tr.model_turn_done(100.0, 0.0)
    t = 100.0 + tr.echo_tail + 0.01
    tr.user_onset(t, True)
    tr.user_words("door 2, 7 3 9 1", True, t + 0.3)
    assert tr.verdict("tok", t + 0.4).state == "confirmed"


@pytest.mark.parametrize("said", ["Yes, that is it", "Yes, this is it", "yes the front door is it"])
def test_a_statement_after_a_yes_is_no_question(said: str) -> None:
    assert read_answer(said, WORDS | {"front"}) == "yes", said


# -- round seven: the whole tracker attacked ------------------------------------------
GARAGE_ASK = "open Garage door"


def asked_what(tr: ConsentTracker, token: str, what: str, methods: set[str],
               t: float) -> float:
    """The model asks about `what`; returns when the window opens."""
    tr.question_due(Ask(token, frozenset(methods), frozenset(words(what)), what), t)
    tr.model_speaking(t + 0.05)
    tr.model_turn_done(t + 0.3, 0.0)
    return t + 0.3 + tr.echo_tail


@pytest.mark.parametrize("before", ["no question", "a void question"])
def test_the_requests_late_tail_is_no_answer_to_the_question_it_led_to(before: str) -> None:
    # The request began while no question was open, so it was never taken for early
    # speech: its tail, late, was credited to a cough in the window.
    tr = ConsentTracker()
    if before == "a void question":
        asked_what(tr, "old", GARAGE_ASK, {"yes"}, 90.0)
        tr.session_fresh(91.0)
    tr.user_onset(99.0, True)  # "open the garage door, yes, do it"
    tr.user_words(" Open the garage", False, 99.9)
    w = asked_what(tr, "t", GARAGE_ASK, {"yes"}, 100.0)
    tr.user_onset(w + 0.1, True)  # a cough
    tr.user_words(" door, yes do it", False, w + 0.6)  # the request's tail, late
    assert tr.verdict("t", w + 0.7).state != "confirmed"


def test_a_prompt_yes_after_the_request_is_still_heard() -> None:
    tr = ConsentTracker()
    tr.user_onset(97.0, True)  # the request
    tr.user_words(" Open the garage door.", False, 98.5)
    tr.question_due(Ask("t", frozenset({"yes"}), frozenset(words(GARAGE_ASK))), 100.0)
    tr.model_speaking(100.05)  # the question takes 2 s to say
    tr.model_turn_done(102.0, 0.0)
    w = 102.0 + tr.echo_tail
    tr.user_onset(w + 0.3, True)
    tr.user_words(" Yes.", False, w + 1.0)
    assert tr.verdict("t", w + 1.5).state == "confirmed"


def test_an_answer_is_judged_whole_not_on_its_first_fragment() -> None:
    # "Yes, no, wait, don't!" in one breath: the call came with only " Yes" in.
    tr = ConsentTracker()
    w = asked_what(tr, "t", GARAGE_ASK, {"yes"}, 100.0)
    tr.user_onset(w + 0.2, True)
    tr.user_words(" Yes", False, w + 0.8)
    tr.model_acting(w + 0.9)
    assert tr.waiting("t", w + 0.9)  # fragments still arriving: the gate waits
    assert not tr.waiting("t", w + 0.8 + PIECES_QUIET_SECONDS)
    tr.verdict("t", w + 1.0)  # had the gate not waited
    tr.user_words(", no, wait, don't!", False, w + 1.1)
    verdict = tr.verdict("t", w + 1.2)
    assert verdict.state == "declined" and tr.stats.revoked == 1


def test_the_rest_of_a_confirming_yes_keeps_it() -> None:
    tr = ConsentTracker(pin="7391")
    w = asked_what(tr, "t", GARAGE_ASK, {"yes", "pin"}, 100.0)
    tr.user_onset(w + 0.2, True)
    tr.user_words(" Yes", False, w + 0.8)
    assert tr.verdict("t", w + 1.3).state == "confirmed"
    tr.user_words(" please, open the garage door.", False, w + 1.4)
    assert tr.verdict("t", w + 1.5).state == "confirmed"


@pytest.mark.parametrize("what", ["unlock Apartment 1204", "open Gate 2024", "unlock Suite 1001"])
def test_a_yes_naming_a_device_with_four_digits_is_no_wrong_pin(what: str) -> None:
    tr = ConsentTracker(pin="7391")
    w = asked_what(tr, "t", what, {"yes", "tap", "pin"}, 100.0)
    tr.user_onset(w + 0.2, True)
    tr.user_words(f"Yes, {what.split(' ', 1)[1]}.", True, w + 0.8)
    assert tr.verdict("t", w + 0.9).state == "confirmed"
    assert tr.stats.declined_wrong_pin == 0


@pytest.mark.parametrize("said", ["garage two, 1 2 3 4", "garage 2, one two three four",
                                  "garage 2, 1 2 3 4", "\uff11\uff12\uff13\uff14",  # full-width
                                  "1 2 3 4, garage 2"])
def test_the_pin_beside_the_devices_number_or_in_other_digits(said: str) -> None:
    assert pin_matches(said, "1234", words("open Garage 2")) is True, said


def test_the_devices_number_is_taken_off_once_not_every_equal_digit() -> None:
    assert pin_matches("garage 2, 2 2 2 2", "2222", words("open Garage 2")) is True
    assert pin_matches("garage 2, 5 5 5 5", "1234", words("open Garage 2")) is False


# -- round eight ----------------------------------------------------------------------
def test_guesses_beside_the_devices_number_are_counted() -> None:
    # "2 1 0 0" for "Garage 2" left "100" once the number was taken off and was read
    # as no PIN attempt: unlimited guesses at every PIN that starts with a 2.
    assert pin_matches("2 1 0 0", "2739", words("open Garage 2")) is False
    tr = ConsentTracker(pin="2739")
    for n in range(PIN_ATTEMPTS + 1):
        w = asked_what(tr, f"t{n}", "open Garage 2", {"pin"}, 100.0 + 10 * n)
        tr.user_onset(w + 0.2, True)
        tr.user_words(f"2 1 0 {n}", True, w + 0.8)
        tr.verdict(f"t{n}", w + 0.9)
    assert tr.stats.declined_wrong_pin == PIN_ATTEMPTS and tr.stats.pin_locked == 1


@pytest.mark.parametrize("rest", [" Thank you so much.", " Thanks a lot.", " Go for it."])
def test_thanks_after_a_confirming_yes_keeps_it(rest: str) -> None:
    tr = ConsentTracker()
    w = asked_what(tr, "t", GARAGE_ASK, {"yes"}, 100.0)
    tr.user_onset(w + 0.2, True)
    tr.user_words(" Yes.", True, w + 0.8)
    tr.user_words(rest, True, w + 1.0)
    assert tr.verdict("t", w + 1.5).state == "confirmed"

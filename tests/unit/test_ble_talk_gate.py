"""TalkGate: the glasses' push-to-talk state, fed gestures and the clock."""

from __future__ import annotations

import pytest

from daemon.peripherals.ble.talk import TalkGate


def test_always_admits_everything_and_ignores_gestures() -> None:
    gate = TalkGate("always")
    assert gate.admits(0.0) == (True, None)
    assert gate.gesture(0.1) is None and not gate.talking
    assert gate.stats.ignored == 1 and gate.stats.gated_chunks == 0


def test_each_gesture_toggles_and_only_talk_admits() -> None:
    gate = TalkGate("push_to_talk")
    assert gate.admits(0.0) == (False, None)
    assert gate.gesture(1.0) is True and gate.talking
    assert gate.admits(1.02) == (True, None)
    assert gate.gesture(3.0) is False and not gate.talking
    assert gate.admits(3.02) == (False, None)
    assert gate.stats.gestures == 2 and gate.stats.gated_chunks == 2


def test_a_lost_second_gesture_is_let_go_after_the_hold_limit() -> None:
    gate = TalkGate("push_to_talk", max_hold_s=10.0)
    gate.gesture(0.0)
    assert gate.admits(9.9) == (True, None)
    assert gate.admits(10.0) == (False, False)  # let go now: the caller ends the utterance
    assert gate.admits(10.1) == (False, None)
    assert gate.status()["timeouts"] == 1


def test_the_end_of_the_link_lets_go() -> None:
    gate = TalkGate("push_to_talk")
    assert gate.link_ended(0.0) is None  # nothing was on
    gate.gesture(1.0)
    assert gate.link_ended(2.0) is False and not gate.talking
    assert gate.stats.link_ends == 1
    assert gate.gesture(3.0) is True  # the next gesture opens again


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="not 'always' or 'push_to_talk'"):
        TalkGate("wake_word")  # type: ignore[arg-type]

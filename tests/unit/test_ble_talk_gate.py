"""TalkGate: the glasses' push-to-talk state, fed gestures and the clock."""

from __future__ import annotations

import pytest

from daemon.media.types import AudioChunk
from daemon.peripherals.ble.talk import TalkGate


def chunk(n: int, at: float = 0.0) -> AudioChunk:
    """20 ms at 16 kHz whose first sample is its number."""
    return AudioChunk(n.to_bytes(2, "little") + bytes(638), 16_000, at)


def test_always_admits_everything_and_ignores_gestures() -> None:
    gate = TalkGate("always")
    assert gate.admits(chunk(0), 0.0) == (True, None)
    assert gate.gesture(0.1) is None and not gate.talking
    assert gate.stats.ignored == 1 and gate.stats.gated_chunks == 0


def test_each_gesture_toggles_and_only_talk_admits() -> None:
    gate = TalkGate("push_to_talk")
    assert gate.admits(chunk(0), 0.0) == (False, None)
    assert gate.gesture(1.0) is True and gate.talking
    assert gate.admits(chunk(0), 1.02) == (True, None)
    assert gate.gesture(3.0) is False and not gate.talking
    assert gate.admits(chunk(0), 3.02) == (False, None)
    assert gate.stats.gestures == 2 and gate.stats.gated_chunks == 2


def test_a_lost_second_gesture_is_let_go_after_the_hold_limit() -> None:
    gate = TalkGate("push_to_talk", max_hold_s=10.0)
    gate.gesture(0.0)
    assert gate.admits(chunk(0), 9.9) == (True, None)
    assert gate.admits(chunk(0), 10.0) == (False, False)  # let go now: the caller ends the utterance
    assert gate.admits(chunk(0), 10.1) == (False, None)
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


def test_talk_opens_with_the_last_half_second_before_the_gesture() -> None:
    gate = TalkGate("push_to_talk", preroll_s=0.5)
    for n in range(40):  # 0.8 s said before the double tap was reported
        assert gate.admits(chunk(n), n * 0.02) == (False, None)
    assert gate.take_preroll() == []  # nothing leaves while talk is off
    assert gate.gesture(0.8) is True
    first = [int.from_bytes(c.pcm[:2], "little") for c in gate.take_preroll()]
    assert first == list(range(15, 40))  # the newest 0.5 s, oldest first
    assert gate.take_preroll() == []  # once
    assert gate.stats.preroll_chunks == 25 and gate.stats.gated_chunks == 40


def test_the_pre_roll_is_forgotten_when_talk_closes_or_the_link_ends() -> None:
    gate = TalkGate("push_to_talk", preroll_s=0.5)
    gate.admits(chunk(1), 0.0)
    gate.link_ended(0.1)  # a reconnect: nothing from the old link goes up later
    gate.gesture(1.0)
    assert gate.take_preroll() == []
    gate.gesture(2.0)  # closed; said afterwards, then the hold of a new turn
    gate.admits(chunk(2), 2.1)
    gate.gesture(3.0)
    assert [c.pcm[:2] for c in gate.take_preroll()] == [(2).to_bytes(2, "little")]
    off = TalkGate("push_to_talk", preroll_s=0.0)
    off.admits(chunk(3), 0.0)
    off.gesture(0.1)
    assert off.take_preroll() == []


def test_a_pre_roll_beyond_two_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="pre-roll"):
        TalkGate("push_to_talk", preroll_s=5.0)

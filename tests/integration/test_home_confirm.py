"""Confirmation on the clock: a call waits briefly for a trailing yes, never past its token.

Tokens, the book and the gate's decisions: tests/unit/test_home_confirm.py.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.home import LOCK, UNLOCK, FakeClock, FakeUser, gate_for

PLAN = (UNLOCK["topic"], UNLOCK["payload"])  # what the unlock publishes


@pytest.mark.timeout(30)
async def test_a_call_waits_briefly_for_a_trailing_yes_and_never_past_the_token() -> None:
    clock = FakeClock()
    user = FakeUser(clock)
    gate = gate_for(clock, user, answer_wait=0.5)
    tracker = user.tracker
    await gate.await_answer(None, "lock.front", "unlock", {}, PLAN)  # no token: no wait
    first = gate.check(entity=LOCK, **UNLOCK, token=None)
    assert first.verdict == "confirm" and first.token
    tracker.model_speaking(clock.now)
    tracker.model_turn_done(clock.now, 0.0)
    clock.now += 1
    tracker.user_onset(clock.now, True)  # the user has begun answering; words to follow
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, tracker.user_tap, clock.now, True)
    t0 = loop.time()
    await gate.await_answer(first.token, "lock.front", "unlock", {}, PLAN)
    loop.call_soon(tracker.user_words, "Yes.", True, clock.now)
    await asyncio.sleep(0.01)
    assert gate.check(entity=LOCK, **UNLOCK, token=first.token).verdict == "proceed"
    assert loop.time() - t0 < 0.7
    # Nobody answering: no wait at all (nothing began in the window).
    asked = gate.check(entity=LOCK, **UNLOCK, token=None)
    assert asked.token is not None
    t0 = loop.time()
    await gate.await_answer(asked.token, "lock.front", "unlock", {}, PLAN)
    assert loop.time() - t0 < 0.2
    # An answer under way: the call waits up to answer_wait, then says so.
    tracker.model_speaking(clock.now)
    tracker.model_turn_done(clock.now, 0.0)
    clock.now += 1
    tracker.user_onset(clock.now, True)
    t0 = loop.time()
    await gate.await_answer(asked.token, "lock.front", "unlock", {}, PLAN)
    unanswered = gate.check(entity=LOCK, **UNLOCK, token=asked.token)
    assert unanswered.verdict == "confirm" and unanswered.token == asked.token
    assert 0.4 < loop.time() - t0 < 1.0
    # A token about to expire is not outwaited.
    tracker.model_speaking(clock.now)
    tracker.model_turn_done(clock.now, 0.0)
    clock.now += 8.8
    tracker.user_onset(clock.now, True)
    t0 = loop.time()
    await gate.await_answer(asked.token, "lock.front", "unlock", {}, PLAN)
    assert loop.time() - t0 < 0.3

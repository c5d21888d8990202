"""Confirmation tokens: single use, short-lived, bound to one device+action+args."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from daemon.home.confirm import (
    DEFAULT_SENSITIVE,
    ConfirmationBook,
    ConfirmationGate,
    is_sensitive,
    spoken_answer,
)
from tests.test_home_support import FakeUser


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.timeout(30)
def test_token_is_short_random_and_redeems_once() -> None:
    book = ConfirmationBook(ttl=30.0, clock=FakeClock())
    token = book.request("lock.front", "unlock", {})
    assert 4 <= len(token) <= 8 and token.isalnum()
    assert book.redeem(token, "lock.front", "unlock", {})
    assert not book.redeem(token, "lock.front", "unlock", {})  # reuse
    assert book.stats.redeemed == 1 and book.stats.unknown == 1
    assert len({book.request("lock.front", "unlock", {}) for _ in range(50)}) == 50


@pytest.mark.timeout(30)
def test_token_expires() -> None:
    clock = FakeClock()
    book = ConfirmationBook(ttl=30.0, clock=clock)
    token = book.request("cover.garage", "open", None)
    clock.now += 29.9
    fresh = book.request("cover.garage", "open", None)
    assert book.redeem(token, "cover.garage", "open", None)
    clock.now += 30.0
    assert not book.redeem(fresh, "cover.garage", "open", None)
    assert book.stats.expired == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("device", "action", "args"),
    [
        ("lock.back", "unlock", {}),  # other device
        ("lock.front", "open", {}),  # other action
        ("lock.front", "unlock", {"code": "1"}),  # other args
    ],
)
def test_token_mismatch_is_refused_and_consumed(
    device: str, action: str, args: dict[str, str]
) -> None:
    book = ConfirmationBook(clock=FakeClock())
    token = book.request("lock.front", "unlock", {})
    assert not book.redeem(token, device, action, args)
    assert not book.redeem(token, "lock.front", "unlock", {})  # no second guess
    assert book.stats.mismatched == 1


@pytest.mark.timeout(30)
def test_arguments_compare_by_value() -> None:
    book = ConfirmationBook(clock=FakeClock())
    token = book.request("cover.gate", "set_position", {"position": 50, "rgb": (1, 2, 3)})
    assert book.redeem(
        token.upper(), "cover.gate", "set_position", {"rgb": [1, 2, 3], "position": 50.0}
    )
    token = book.request("cover.gate", "set_position", {"position": 50})
    assert not book.redeem(token, "cover.gate", "set_position", {"position": 50.5})


@pytest.mark.timeout(30)
def test_book_is_bounded() -> None:
    book = ConfirmationBook(clock=FakeClock(), max_pending=3)
    tokens = [book.request("lock.front", "unlock", {"n": i}) for i in range(5)]
    assert len(book) == 3 and book.stats.evicted == 2
    assert not book.redeem(tokens[0], "lock.front", "unlock", {"n": 0})
    assert book.redeem(tokens[4], "lock.front", "unlock", {"n": 4})
    with pytest.raises(ValueError, match="ttl"):
        ConfirmationBook(ttl=0)


@pytest.mark.timeout(30)
def test_sensitive_by_component_device_class_id_or_name() -> None:
    assert DEFAULT_SENSITIVE == ("lock", "garage", "gate", "alarm_control_panel")
    assert is_sensitive("lock", None)
    assert is_sensitive("cover", "garage") and is_sensitive("cover", "Gate")
    assert is_sensitive("alarm_control_panel", None)
    assert not is_sensitive("cover", "blind") and not is_sensitive("light", None)
    assert is_sensitive("light", None, ("light",)) and not is_sensitive("lock", None, ())
    # A plain relay that drives the driveway gate, marked by id or by name (casefold).
    mine = ("lock", "switch.gate_relay", "Driveway Gate")
    assert is_sensitive("switch", None, mine, device_id="switch.gate_relay", name="Relay 1")
    assert is_sensitive("switch", None, mine, device_id="x", name="driveway gate")
    assert not is_sensitive("switch", None, mine, device_id="switch.pump", name="Pump")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes.", True),
        (" yes please", True),
        ("OK, go ahead", True),
        ("Sure, do it!", True),
        ("Ja, bitte", True),
        ("Oui, d\u2019accord", True),
        ("sí", True),
        ("Confirmed", True),
        ("No.", False),
        ("yes... no, wait", False),
        ("Don\u2019t!", False),
        ("yes, don't", False),
        ("stop", False),
        ("Cancel that", False),
        ("I'm not sure", False),
        ("Nein", False),
        ("unlock the front door", None),
        ("unlock the door, token abc234", None),
        ("", None),
        ("yesterday, I knocked", None),  # whole words only
    ],
)
def test_spoken_answer(text: str, answer: bool | None) -> None:
    assert spoken_answer(text) is answer


COMMON: dict[str, Any] = {
    "device_id": "lock.front",
    "device_name": "Front door",
    "component": "lock",
    "device_class": None,
    "action": "unlock",
    "args": {},
}


@pytest.mark.timeout(30)
def test_gate_acts_only_when_the_user_confirmed_after_issuance() -> None:
    clock = FakeClock()
    user = FakeUser(clock)
    gate = ConfirmationGate(ConfirmationBook(ttl=10, clock=clock), evidence=user)
    user.says(True)  # a yes from before the question is not an answer to it
    clock.now += 1
    first = gate.check(**COMMON, token=None)
    assert first.verdict == "confirm" and first.token and first.token in first.message
    assert "Nothing was done" in first.message
    # The model calls again at once: no answer from the user yet. The token stays.
    early = gate.check(**COMMON, token=first.token.upper())
    assert early.verdict == "confirm" and early.token == first.token
    assert "the user has not confirmed yet; ask them" in early.message
    assert user.asked == [1001.0]  # asked about the time of issuance
    clock.now += 1
    user.says(True)
    clock.now += 1
    second = gate.check(**COMMON, token=first.token)
    assert second.verdict == "proceed"
    replay = gate.check(**COMMON, token=first.token)
    assert replay.verdict == "confirm" and replay.token != first.token
    assert "expired, used or for a different action" in replay.message
    clock.now += 1
    user.says(True)
    clock.now += 11
    late = gate.check(**COMMON, token=replay.token)  # confirmed, but too late
    assert late.verdict == "confirm" and late.token != replay.token
    stats = gate.book.stats
    assert (stats.redeemed, stats.unconfirmed, stats.unknown, stats.expired) == (1, 1, 1, 1)
    light = gate.check(
        device_id="light.k",
        device_name="Kitchen",
        component="light",
        device_class=None,
        action="turn_on",
        args={},
        token=None,
    )
    assert light.verdict == "proceed" and light.token is None


@pytest.mark.timeout(30)
def test_gate_a_no_voids_the_token() -> None:
    clock = FakeClock()
    user = FakeUser(clock)
    gate = ConfirmationGate(ConfirmationBook(ttl=10, clock=clock), evidence=user)
    first = gate.check(**COMMON, token=None)
    clock.now += 1
    user.says(False)
    no = gate.check(**COMMON, token=first.token)
    assert no.verdict == "declined" and no.token is None and "said no" in no.message
    clock.now += 1
    user.says(True)
    again = gate.check(**COMMON, token=first.token)  # consumed by the no
    assert again.verdict == "confirm" and again.token != first.token
    assert gate.book.stats.declined == 1


@pytest.mark.timeout(30)
def test_gate_without_evidence_never_proceeds() -> None:
    clock = FakeClock()
    gate = ConfirmationGate(ConfirmationBook(ttl=10, clock=clock))
    first = gate.check(**COMMON, token=None)
    for _ in range(3):
        clock.now += 1
        later = gate.check(**COMMON, token=first.token)
        assert later.verdict == "confirm" and later.token == first.token
    relay = {**COMMON, "device_id": "switch.gate_relay", "component": "switch"}
    gated = ConfirmationGate(gate.book, ("switch.gate_relay",))
    assert gated.check(**relay, token=None).verdict == "confirm"
    assert gated.check(**COMMON, token=None).verdict == "proceed"  # a lock is not in this set


@pytest.mark.timeout(30)
async def test_a_call_waits_briefly_for_a_trailing_yes_and_never_past_the_token() -> None:
    clock = FakeClock()
    user = FakeUser(clock)
    gate = ConfirmationGate(ConfirmationBook(ttl=10, clock=clock), evidence=user,
                            answer_wait=0.5)
    await gate.await_answer(None, "lock.front", "unlock", {})  # no token: no wait
    first = gate.check(**COMMON, token=None)
    assert first.verdict == "confirm" and first.token
    clock.now += 1
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, user.says, True)  # the transcript arrives after the call
    t0 = loop.time()
    await gate.await_answer(first.token, "lock.front", "unlock", {})
    assert gate.check(**COMMON, token=first.token).verdict == "proceed"
    assert 0.05 < loop.time() - t0 < 0.45
    # No answer: the call waits answer_wait, then says so.
    asked = gate.check(**COMMON, token=None)
    t0 = loop.time()
    assert asked.token is not None
    await gate.await_answer(asked.token, "lock.front", "unlock", {})
    unanswered = gate.check(**COMMON, token=asked.token)
    assert unanswered.verdict == "confirm" and unanswered.token == asked.token
    assert 0.4 < loop.time() - t0 < 1.0
    # A token about to expire is not outwaited.
    clock.now += 9.8
    t0 = loop.time()
    await gate.await_answer(asked.token, "lock.front", "unlock", {})
    assert loop.time() - t0 < 0.3

"""Confirmation tokens: single use, short-lived, bound to one device+action+args.

The gate's short wait for a trailing yes (on the clock): tests/integration/test_home_confirm.py.
"""

from __future__ import annotations

import pytest

from daemon.home.confirm import ConfirmationBook
from daemon.home.sensitivity import DEFAULT_SENSITIVE, Entity, SensitivityPolicy
from tests.support.home import LOCK, UNLOCK, FakeClock, FakeUser, gate_for


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
def test_sensitive_by_what_a_command_does() -> None:
    assert DEFAULT_SENSITIVE == ("lock", "garage", "gate", "door", "alarm_control_panel")
    policy = SensitivityPolicy()
    assert policy.of_entity(Entity("l", "Front", "lock", None, frozenset()))
    assert policy.of_entity(Entity("g", "Gate", "cover", "gate", frozenset()))
    assert policy.of_entity(Entity("d", "Back", "cover", "door", frozenset()))
    assert not policy.of_entity(Entity("b", "Blinds", "cover", "blind", frozenset()))
    assert not policy.of_entity(Entity("k", "Kitchen", "light", None, frozenset()))
    assert SensitivityPolicy(("light",)).of_entity(Entity("k", "Kitchen", "light", None,
                                                          frozenset()))
    # A plain relay that drives the driveway gate, marked by id or by name (casefold).
    mine = SensitivityPolicy(("switch.gate_relay", "Pump house"))
    assert mine.of_entity(Entity("switch.gate_relay", "Relay 1", "switch", None, frozenset()))
    assert mine.of_entity(Entity("x", "pump house", "switch", None, frozenset()))
    assert not mine.of_entity(Entity("switch.pump", "Pump", "switch", None, frozenset()))
    # A lock is a lock whatever the list says; an aliased topic is the lock's.
    lock = Entity("l", "Front", "lock", None, frozenset({"z/front/set"}))
    assert SensitivityPolicy(()).of_entity(lock)
    none = SensitivityPolicy(())
    none.index([lock])
    relay = Entity("r", "Relay", "switch", None, frozenset({"z/front/set"}))
    assert none.of_command(relay, "turn_on", "z/front/set", "ON") is not None


LIGHT = Entity("light.k", "Kitchen", "light", None, frozenset({"home/k/set"}))


@pytest.mark.timeout(30)
def test_gate_acts_only_when_the_user_answered_its_question() -> None:
    clock = FakeClock()
    user = FakeUser(clock)
    gate = gate_for(clock, user)
    user.says(True)  # a yes from before the question is not an answer to it
    clock.now += 1
    first = gate.check(entity=LOCK, **UNLOCK, token=None)
    assert first.verdict == "confirm" and first.token and first.token in first.message
    assert "Nothing was done" in first.message
    # The model calls again at once: no answer from the user yet. The token stays.
    early = gate.check(entity=LOCK, **UNLOCK, token=first.token.upper())
    assert early.verdict == "confirm" and early.token == first.token
    assert "not confirmed yet" in early.message
    clock.now += 1
    user.says(True)
    clock.now += 1
    second = gate.check(entity=LOCK, **UNLOCK, token=first.token)
    assert second.verdict == "proceed" and second.method == "yes"
    replay = gate.check(entity=LOCK, **UNLOCK, token=first.token)
    assert replay.verdict == "confirm" and replay.token != first.token
    assert "expired, used or no longer valid" in replay.message
    clock.now += 1
    user.says(True)
    clock.now += 11
    late = gate.check(entity=LOCK, **UNLOCK, token=replay.token)  # confirmed, but too late
    assert late.verdict == "confirm" and late.token != replay.token
    stats = gate.book.stats
    assert (stats.redeemed, stats.unconfirmed, stats.unknown, stats.expired) == (1, 1, 1, 1)
    light = gate.check(entity=LIGHT, action="turn_on", args={}, topic="home/k/set",
                       payload="ON", token=None)
    assert light.verdict == "proceed" and light.token is None


@pytest.mark.timeout(30)
def test_gate_a_no_voids_the_token() -> None:
    clock = FakeClock()
    user = FakeUser(clock)
    gate = gate_for(clock, user)
    first = gate.check(entity=LOCK, **UNLOCK, token=None)
    clock.now += 1
    user.says(False)
    no = gate.check(entity=LOCK, **UNLOCK, token=first.token)
    assert no.verdict == "declined" and no.token is None and "said no" in no.message
    clock.now += 1
    user.says(True)
    again = gate.check(entity=LOCK, **UNLOCK, token=first.token)  # consumed by the no
    assert again.verdict == "confirm" and again.token != first.token
    assert gate.book.stats.declined == 1


@pytest.mark.timeout(30)
def test_gate_without_a_conversation_never_proceeds() -> None:
    clock = FakeClock()
    gate = gate_for(clock, None)
    first = gate.check(entity=LOCK, **UNLOCK, token=None)
    assert first.verdict == "confirm"
    for _ in range(3):
        clock.now += 1
        later = gate.check(entity=LOCK, **UNLOCK, token=first.token)
        assert later.verdict == "confirm" and later.token == first.token
        assert "nobody is listening" in later.message

"""Confirmation tokens: single use, short-lived, bound to one device+action+args.

The gate's short wait for a trailing yes (on the clock): tests/integration/test_home_confirm.py.
"""

from __future__ import annotations

import json

import pytest

from daemon.home.admission import RECORD, V2, Admission, device_fingerprints, fingerprint
from daemon.home.confirm import ConfirmationBook
from daemon.home.sensitivity import DEFAULT_SENSITIVE, Entity, SensitivityPolicy
from daemon.ops.state import StateStore
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


@pytest.mark.timeout(30)
def test_once_sensitive_always_and_the_memory_outlives_a_restart() -> None:
    """A garage door re-announced as a shutter, or removed and its topic taken by a
    blind, stays sensitive: here with names and topics that say nothing."""
    garage = Entity("c1", "Cover 1", "cover", "garage", frozenset({"z/0x01/set"}))
    tame = Entity("c1", "Cover 1", "cover", "shutter", frozenset({"z/0x01/set"}))
    blind = Entity("c2", "Cover 2", "cover", "blind", frozenset({"z/0x01/set"}))
    fresh = SensitivityPolicy()
    assert fresh.of_entity(tame) is None and fresh.of_command(blind, "open", "z/0x01/set",
                                                              "OPEN") is None
    policy = SensitivityPolicy()
    assert policy.learn(garage) is not None and policy.learned
    sens = policy.of_entity(tame)
    assert sens is not None and sens.category == "garage"
    policy.index([blind])  # the garage itself is gone; its topic is remembered
    assert policy.of_command(blind, "open", "z/0x01/set", "OPEN") is not None
    ids, topics = policy.memory()
    assert not policy.learned
    restarted = SensitivityPolicy()
    restarted.remember(ids, topics)
    restarted.index([blind])
    assert restarted.of_entity(tame) is not None
    assert restarted.of_command(blind, "open", "z/0x01/set", "OPEN") is not None


@pytest.mark.timeout(30)
def test_a_flood_of_announcements_cannot_push_the_households_devices_out() -> None:
    """Announced and withdrawn again, 11 000 fake locks fill the memory: what goes is
    theirs, never a device the inventory has, and a garage door added afterwards is
    still remembered (so calling it a shutter later changes nothing)."""
    garage = Entity("c1", "Cover 1", "cover", "garage", frozenset({"z/0x01/set"}))
    present = [garage]
    policy = SensitivityPolicy(source=lambda: present)
    policy.learn(garage)
    for i in range(11_000):
        policy.learn(Entity(f"evil{i}", "Lock", "lock", None, frozenset({f"e/{i}/set"})))
    later = Entity("c2", "Cover 2", "cover", "garage", frozenset({"z/0x02/set"}))
    present.append(later)
    policy.learn(later)
    ids, topics = policy.memory()
    assert len(ids) <= 5000 and len(topics) <= 10_000 and policy.forgotten > 0
    assert {"c1", "c2"} <= ids.keys() and {"z/0x01/set", "z/0x02/set"} <= topics.keys()
    assert policy.of_entity(Entity("c2", "Cover 2", "cover", "shutter", frozenset())) is not None


@pytest.mark.timeout(30)
def test_a_memory_full_of_present_devices_is_scanned_once_per_change() -> None:
    """Else every topic that does not fit walks the whole inventory again (quadratic)."""
    locks = [Entity(f"l{i}", "Lock", "lock", None, frozenset({f"a/{i}", f"b/{i}", f"c/{i}"}))
             for i in range(3500)]
    reads = 0

    def source() -> list[Entity]:
        nonlocal reads
        reads += 1
        return locks

    policy = SensitivityPolicy(source=source)
    lamp = Entity("lamp", "Lamp", "light", None, frozenset({"x/lamp/set"}))
    policy.of_command(lamp, "turn_on", "x/lamp/set", "ON")  # the re-index
    assert reads <= 2 and policy.unremembered == 500
    policy.changed()
    policy.of_command(lamp, "turn_on", "x/lamp/set", "ON")
    assert reads <= 4


@pytest.mark.timeout(30)
def test_a_topic_under_a_sensitive_one_or_its_zigbee_address_is_an_alias() -> None:
    """Zigbee2MQTT takes `<device>/set/<attribute>`, and the IEEE address for the name."""
    garage = Entity("g", "Cover", "cover", "garage", frozenset({"zigbee2mqtt/barn/set"}),
                    identifiers=("zigbee2mqtt_0x00158D00045A1B2C",))
    policy = SensitivityPolicy(source=lambda: [garage])
    blind = Entity("b", "Blind", "cover", "blind", frozenset())
    for topic in ("zigbee2mqtt/barn/set/state", "zigbee2mqtt/0x00158d00045a1b2c/set",
                  "zigbee2mqtt/0x00158d00045a1b2c/set/state"):
        assert policy.of_command(blind, "open", topic, "OPEN") is not None, topic
    assert policy.of_command(blind, "open", "zigbee2mqtt/kitchen_blind/set", "OPEN") is None


@pytest.mark.timeout(30)
def test_a_payload_that_does_the_opposite_is_a_contradiction() -> None:
    policy = SensitivityPolicy()
    assert policy.contradiction("lock", "unlock_door") == "the command for 'lock' says 'unlock'"
    assert policy.contradiction("close", '{"state": "OPEN"}') is not None
    assert policy.contradiction("arm_away", "DISARM") is not None
    assert policy.contradiction("lock", "LOCK") is None
    assert policy.contradiction("close", '{"state": "CLOSE"}') is None
    assert policy.contradiction("arm_home", "ARM_HOME") is None
    assert policy.contradiction("turn_on", "OPEN") is None  # not a safe direction: asked


@pytest.mark.timeout(30)
def test_a_payload_is_read_whole_and_one_too_long_to_read_asks() -> None:
    lamp = Entity("x", "Lamp", "switch", None, frozenset({"z/0x02/set"}))
    policy = SensitivityPolicy()
    padding = " ".join(f"w{i}" for i in range(5000))
    assert policy.of_command(lamp, "turn_on", "z/0x02/set",
                             json.dumps({"state": "UNLOCK", "note": padding})) is not None
    assert policy.of_command(lamp, "turn_on", "z/0x02/set", "ON " + padding) is None
    hidden = json.dumps({"state": " " * 5000 + "UNLOCK"})  # one long string value
    assert policy.of_command(lamp, "turn_on", "z/0x02/set", hidden) is not None
    assert policy.contradiction("lock", hidden) is not None
    huge = policy.of_command(lamp, "turn_on", "z/0x02/set", "ON " + "x" * 70_000)
    assert huge is not None and "too long" in huge.why
    assert policy.contradiction("lock", "LOCK" + " " * 70_000) is not None


@pytest.mark.timeout(30)
def test_a_gas_valve_asks_a_water_valve_does_not() -> None:
    policy = SensitivityPolicy()
    gas = Entity("v", "Main", "valve", "gas", frozenset({"z/v/set"}))
    water = Entity("w", "Garden", "valve", "water", frozenset({"z/w/set"}))
    assert policy.flags(gas, ["open", "close"]) is not None
    assert policy.of_command(gas, "open", "z/v/set", "OPEN") is not None
    assert policy.flags(water, ["open", "close"]) is None
    assert policy.of_command(water, "open", "z/w/set", "OPEN") is None


@pytest.mark.timeout(30)
def test_a_device_accepted_under_the_older_fingerprint_is_carried_over_once() -> None:
    state = StateStore(None)
    fp, older = device_fingerprints("lock", ["z/l/set"], None, "LockSpec(payload_lock='LOCK')")
    assert fp.startswith(V2) and older == fingerprint("lock", ["z/l/set"])
    state.save(RECORD, {"devices": {"l": older}})
    admission = Admission(discovery_prefix="homeassistant", state=state, clock=lambda: 0.0)
    assert admission.consider("l", "Front", "lock", fp, older) is None  # unchanged: no hold
    swapped, _ = device_fingerprints("lock", ["z/l/set"], None, "LockSpec(payload_lock='UN')")
    assert admission.consider("l", "Front", "lock", swapped, older) is not None  # held
    assert state.load(RECORD) == {"devices": {"l": fp}}


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
def test_a_yes_is_for_what_was_planned_when_the_question_was_asked() -> None:
    """The device's config changed between the question and the confirmed call (say,
    re-announced onto the lock's topic): the yes does not carry over to the new command."""
    clock = FakeClock()
    user = FakeUser(clock)
    gate = gate_for(clock, user)
    first = gate.check(entity=LOCK, **UNLOCK, token=None)
    assert first.token
    clock.now += 1
    user.says(True)
    clock.now += 1
    moved = {**UNLOCK, "topic": "elsewhere/set", "payload": "OPEN_ALL"}
    again = gate.check(entity=LOCK, **moved, token=first.token)
    assert again.verdict == "confirm" and again.token != first.token
    assert gate.book.stats.mismatched == 1


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

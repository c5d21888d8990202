"""The valve: a component added as one module (daemon.home.components.valve).

Parsing, state decoding and command building (pure), its place in the registry, the
search and the safety policy (opening a water valve is no way in). End to end on a
real mosquitto: tests/integration/test_home_valve.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.home.commands import Command, plan_command
from daemon.home.components import NAMES
from daemon.home.components.valve import ValveSpec
from daemon.home.declared import parse_declared_devices
from daemon.home.device import Device
from daemon.home.discovery import Discovered, DiscoveryError, parse_discovery
from daemon.home.inventory import Inventory
from daemon.home.sensitivity import SensitivityPolicy, entity_of
from simulator.home import default_devices, garden_devices

pytestmark = pytest.mark.timeout(60)

TOPIC = "homeassistant/valve/garden/config"
WORDS = {"name": "Garden valve", "cmd_t": "g/set", "stat_t": "g/state", "pl_stop": "STOP"}
POSITION = {"name": "Pond valve", "cmd_t": "p/set", "stat_t": "p/state", "pos": True}


def valve(config: dict[str, Any], object_id: str = "garden") -> Device:
    result = parse_discovery(f"homeassistant/valve/{object_id}/config", json.dumps(config))
    assert isinstance(result, Discovered), result
    return Device(f"valve.{object_id}", result.entity, "discovery", result.topic.topic)


def planned(device: Device, action: str, args: dict[str, Any] | None = None) -> Command:
    plan = plan_command(device, action, args)
    assert isinstance(plan, Command), plan
    return plan


# ------------------------------------------------------------------- pure


def test_valve_is_a_registered_component() -> None:
    assert NAMES[-1] == "valve"  # after the eleven there were, in the order people read
    assert NAMES[:11] == (
        "light", "switch", "fan", "cover", "lock", "climate", "scene", "button", "sensor",
        "binary_sensor", "alarm_control_panel",
    )


def test_valve_with_words_parses_decodes_and_builds() -> None:
    dev = valve(WORDS)
    spec = dev.config.spec
    assert isinstance(spec, ValveSpec) and not spec.reports_position
    assert [a.name for a in dev.capabilities] == ["open", "close", "stop"]
    assert dev.command_topics == {"g/set"} and dev.state_topics == {"g/state"}
    for payload, state in [("open", "open"), ("opening", "opening"), ("closed", "closed"),
                           ("closing", "closing"), ("stopped", "stopped"),
                           ('{"state": "closing"}', "closing")]:
        assert dev.decode("g/state", payload) == {"state": state}, payload
    assert dev.decode("g/state", "ajar") == {}
    assert dev.decode("g/state", '{"position": 3}') == {}  # JSON without a state: nothing
    assert dev.decode("other", "open") == {}
    opened = planned(dev, "open")
    assert (opened.topic, opened.payload, opened.qos, opened.retain) == ("g/set", "OPEN", 1, False)
    assert opened.expected is not None
    assert opened.expected.matches({"state": "opening"})
    assert not opened.expected.matches({"state": "closed"})
    assert planned(dev, "close").payload == "CLOSE"
    assert planned(dev, "stop").payload == "STOP"
    # No payload_stop: no stop (Home Assistant's valve has none by default).
    plain = valve({"cmd_t": "g/set"})
    assert [a.name for a in plain.capabilities] == ["open", "close"]
    assert planned(plain, "open").expected is None  # no state topic: nothing confirms it
    # Custom words and a substitution-only template.
    custom = valve({**WORDS, "pl_open": "on", "stat_open": "running",
                    "cmd_tpl": '{"valve": "{{ value }}"}'})
    assert planned(custom, "open").payload == '{"valve": "on"}'
    assert custom.decode("g/state", "running") == {"state": "open"}
    # Without a command topic it can only be read.
    assert valve({"stat_t": "g/state"}).capabilities == ()


def test_valve_with_a_position() -> None:
    dev = valve(POSITION, "pond")
    assert [a.name for a in dev.capabilities] == ["open", "close", "set_position"]
    set_pos = dev.capabilities[-1]
    assert set_pos.args[0].describe() == "position: 0..100 % in steps of 1"
    assert dev.decode("p/state", "40") == {"state": "open", "position": 40}
    assert dev.decode("p/state", "0") == {"state": "closed", "position": 0}
    assert dev.decode("p/state", "opening") == {"state": "opening"}
    assert dev.decode("p/state", '{"state": "closing", "position": 70}') == {
        "state": "closing", "position": 70}
    assert dev.decode("p/state", '{"state": "closing"}') == {}  # the position is required
    assert dev.decode("p/state", "140") == {"state": "open", "position": 100}  # clamped
    assert dev.decode("p/state", "soon") == {}
    # Commands are positions on the one command topic; open and close are the ends.
    assert planned(dev, "set_position", {"position": 25}).payload == "25"
    assert planned(dev, "open").payload == "100"
    closed = planned(dev, "close")
    assert closed.payload == "0" and closed.expected is not None
    assert closed.expected.matches({"position": 0}) and not closed.expected.matches({"position": 9})
    # The device's own range (0..255 here) and a template.
    ranged = valve({**POSITION, "pos_open": 255, "cmd_tpl": '{"pos": {{ value }}}'}, "pond")
    assert planned(ranged, "set_position", {"position": 40}).payload == '{"pos": 102}'
    assert ranged.decode("p/state", "102") == {"state": "open", "position": 40}
    out = plan_command(dev, "set_position", {"position": 101})
    assert not isinstance(out, Command) and out.code == "out_of_range"


def test_bad_valve_configs_name_the_key() -> None:
    for bad, needle in [
        ({**POSITION, "pl_open": "OPEN"}, "not allowed if the valve reports a position"),
        ({**POSITION, "stat_clsd": "shut"}, "not allowed if the valve reports a position"),
        ({**WORDS, "pos_open": 5, "pos_clsd": 5}, "position_open and position_closed must differ"),
        ({**WORDS, "cmd_tpl": "{% if value %}1{% endif %}"}, "command_template is not supported"),
        ({**WORDS, "pos": "yes"}, "reports_position must be true or false"),
        ({**WORDS, "cmd_t": "g/+/set"}, "command_topic must not contain MQTT wildcards"),
    ]:
        result = parse_discovery(TOPIC, json.dumps(bad))
        assert isinstance(result, DiscoveryError) and needle in result.reason, (bad, result)
        assert result.reason.startswith("valve: ")


def test_declared_valve_and_the_search() -> None:
    devices, errors = parse_declared_devices([
        {"component": "valve", "name": "Drip line", "area": "Garden", "command_topic": "d/set",
         "state_topic": "d/state"},
    ])
    assert errors == [] and [(d.id, d.component, d.area) for d in devices] == [
        ("drip_line", "valve", "Garden")]
    inv = Inventory()
    inv.load_declared([{"component": "valve", "name": "Drip line", "cmd_t": "d/set"},
                       {"component": "switch", "name": "Porch light", "cmd_t": "l/set"}])
    for words in ("the sprinkler", "water valve", "irrigation"):
        found = inv.resolve(words)
        assert isinstance(found, Device) and found.id == "drip_line", words


def test_opening_a_valve_is_no_way_in() -> None:
    policy = SensitivityPolicy()
    dev = valve(WORDS)
    entity = entity_of(dev)
    assert policy.flags(entity, [a.name for a in dev.capabilities]) is None
    for action in ("open", "close", "stop"):
        plan = planned(dev, action)
        assert policy.of_command(entity, plan.action, plan.topic, plan.payload) is None, action
    # What does let someone in stays sensitive, whatever announced it.
    assert policy.of_command(entity, "open", "g/set", "UNLOCK") is not None
    front = parse_discovery("homeassistant/lock/front/config",
                            json.dumps({"name": "Front door", "cmd_t": "g/set"}))
    assert isinstance(front, Discovered)  # a lock on the valve's command topic
    lock = Device("lock.front", front.entity)
    policy.index([entity_of(lock)])
    alias = policy.of_command(entity, "open", "g/set", "OPEN")
    assert alias is not None and alias.category == "lock"
    # The user may still list valves as sensitive.
    listed = SensitivityPolicy(("valve",))
    assert listed.flags(entity, ["open"]) is not None


def test_the_garden_is_opt_in() -> None:
    """The demo home stays as it was; the garden valve comes with `--extra`."""
    assert "valve" not in {d.component for d in default_devices()}
    assert [d.object_id for d in garden_devices()] == ["garden_water_valve"]

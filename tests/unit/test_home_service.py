"""HomeService without a broker: another edge-agent's entities, describe() of the
declared devices, the demo scenario against the virtual home, the transcript line.

The daemon as a Home Assistant device on a real broker, and the Agent's safety:
tests/integration/test_home_service.py.
"""

from __future__ import annotations

import json
import wave

import pytest

from daemon.config import MqttSettings, Settings
from daemon.home.model_tools import CONTROL_DEVICE
from daemon.home.service import HomeService
from daemon.live.calls import FunctionCall
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry
from simulator.scenario import home_demo_scenario
from tests.support.home import (
    make_agent,
    schema_for_default_home,
)
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(60)
ASSETS = REPO / "simulator" / "assets"


def test_another_edge_agents_entities_are_not_devices() -> None:
    """The daemon in the next room announces its mute switch: not ours to control."""
    agent, _link, _glasses = make_agent()
    other = HomeService(Settings(mqtt=MqttSettings(client_id="edge-kitchen")), ToolRegistry(),
                        Metrics(), agent)
    assert len(other.own_device.entities) == 6
    mine = HomeService(Settings(), ToolRegistry(), Metrics())
    inv = mine.inventory
    for entity in other.own_device.entities:
        config = other.own_device.discovery_config(entity)
        assert inv.handle_discovery(other.own_device.discovery_topic(entity), json.dumps(config)) is None
        # Either mark is enough: the origin, or the device model (an older announcement).
        config.pop("origin")
        abbreviated = {**{k: v for k, v in config.items() if k != "device"},
                       "dev": {"mdl": "edge-agent daemon", "ids": ["x"]}}
        topic = other.own_device.discovery_topic(entity).replace("edge-kitchen", "edge-hall")
        assert inv.handle_discovery(topic, json.dumps(abbreviated)) is None
    assert inv.devices() == [] and inv.stats.discovery_edge_agents == 12
    assert inv.problems() == []
    # The same switch by anyone else is a device.
    switch = next(e for e in other.own_device.entities if e.object_id == "mute_microphone")
    config = other.own_device.discovery_config(switch)
    config.pop("origin")
    config["device"]["model"] = "Relay"
    topic = "homeassistant/switch/relay/mute/config"
    assert inv.handle_discovery(topic, json.dumps(config)) is not None
    assert [d.component for d in inv.devices()] == ["switch"]
    # A device that becomes an edge-agent entity on the same topic goes away.
    assert inv.handle_discovery(topic, json.dumps(other.own_device.discovery_config(switch))) is None
    assert inv.devices() == []


@pytest.mark.timeout(60)
async def test_describe_without_a_broker_lists_declared_devices() -> None:
    settings = Settings(
        mqtt=MqttSettings(devices=({"component": "switch", "id": "garden_pump",
                                    "name": "Garden pump", "area": "Garden",
                                    "cmd_t": "garden/pump/set"},)),
    )
    registry = ToolRegistry()
    service = HomeService(settings, registry, Metrics())
    text = await service.snapshot(timeout=1.0)
    assert "no MQTT broker configured" in text
    assert "garden_pump: Garden pump [switch, Garden, config, online]" in text
    decls = json.loads(text[text.index("\n[") :])
    assert [d["name"] for d in decls] == ["control_device", "get_device_state", "list_devices"]
    assert decls[0]["parameters_json_schema"]["properties"]["device_id"]["enum"] == [
        "garden_pump"]
    assert decls[0]["behavior"] == "BLOCKING"
    # Without a broker a command fails cleanly: nothing can be sent.
    outcome = await service.control.act("garden_pump", "turn_on")
    assert outcome.status == "failed" and "nothing was sent" in outcome.message


def test_home_demo_scenario_matches_the_virtual_home_and_its_audio() -> None:
    scenario = home_demo_scenario()
    first, second = scenario.turns
    assert first.user == "Turn on the kitchen light."
    assert first.reply == "Done, the kitchen light is on."
    (call,) = first.tool_calls
    assert call.name == CONTROL_DEVICE
    # The arguments fit the schema the daemon declares for the default virtual home.
    registry = schema_for_default_home().registry
    assert registry.validate(CONTROL_DEVICE, dict(call.args)) == dict(call.args)
    assert second.user == "What's the status of the agent?"
    assert [c.name for c in second.tool_calls] == ["agent_status"]
    with wave.open(str(ASSETS / "home_demo.wav"), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        frames = w.getnframes()
        head = w.readframes(8000)
    assert 4.5 < frames / 16000 < 8.0
    assert head == b"\x00\x00" * 8000  # 0.5 s of silence first


def test_transcript_shows_the_command_and_state_however_long_the_answer() -> None:
    import io

    from daemon.transcript import TranscriptPrinter

    out = io.StringIO()
    printer = TranscriptPrinter(out)
    call = FunctionCall("c1", CONTROL_DEVICE, {"device_id": "sim-desk_lamp", "action": "on"})
    answer = {
        "status": "done",
        "message": "done: " + "a very long explanation " * 20,
        "device_id": "sim-desk_lamp",
        "mqtt": {"topic": "sim/desk_lamp/set", "payload": '{"state":"ON"}'},
        "state": {"state": "on", "brightness": 100, "rgb": [255, 128, 0], "note": "x" * 200},
    }
    printer.call(call, "ok", {"output": answer})
    printer.call(call, "error", {"error": "unknown device " + "z" * 300})
    printer.call(call, "cancelled", None)
    done, error, cancelled = out.getvalue().splitlines()
    facts = json.dumps({k: answer[k] for k in ("mqtt", "state", "status")}, sort_keys=True)
    assert f" -> ok: {facts} " in done
    assert '"mqtt": {"payload": "{\\"state\\":\\"ON\\"}", "topic": "sim/desk_lamp/set"}' in done
    rest = done.split(facts, 1)[1]
    assert rest.endswith("...")
    assert '"device_id": "sim-desk_lamp"' in rest and len(rest) <= 241
    assert error.endswith("...") and len(error.split(" -> error: ", 1)[1]) == 240
    assert cancelled.endswith("-> cancelled: (no answer sent)")


def test_home_counters_are_current_at_every_scrape() -> None:
    """A command the executor counted shows in the very next /metrics, not a second later
    (the soak saw a scrape with the tool call finished and its command not yet counted)."""
    metrics = Metrics()
    service = HomeService(Settings(), ToolRegistry(), metrics)
    service.executor.stats.done += 1
    service.inventory.stats.state_messages += 2
    text = metrics.render().decode()
    assert 'edge_home_commands_total{result="done"} 1.0' in text
    assert 'edge_home_messages_total{result="state_messages"} 2.0' in text

"""HomeService: the daemon as a Home Assistant device, the Agent's safety, describe().

The Agent here is the real one with a stand-in for the Live link (events go in by
hand), so "the mute switch mutes" means the Agent's own flag and the link's
end-of-audio, and "a transcript cannot unlock the door" goes through the Agent's
real event handling and tool dispatch.

Without a socket or a process: tests/unit/test_home_service.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.config import ConfigError, MqttSettings, Settings, load_settings
from daemon.home.declared import check_declared_devices
from daemon.home.model_tools import CONTROL_DEVICE
from daemon.home.service import HomeService
from daemon.live.calls import FunctionCall
from daemon.live.events import InputTranscript
from daemon.media.types import VideoFrame
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry
from simulator.broker import free_port
from simulator.home import default_devices
from simulator.scenario import home_demo_scenario
from tests.support.home import (
    CLIENT_ID,
    Rig,
    home_rig,
    make_agent,
)
from tests.support.mqtt import Watcher
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

BASE = f"edge-agent/{CLIENT_ID}"


def last(rig: Rig, topic: str) -> str | None:
    texts = [m.text() for m in rig.watcher.messages if m.topic == topic]
    return texts[-1] if texts else None


@pytest.mark.timeout(60)
async def test_daemon_is_a_home_assistant_device() -> None:
    agent, link, glasses = make_agent()
    async with home_rig(default_devices(), agent=agent) as rig:
        # Discovery configs are retained: a client arriving later (Home Assistant) gets them.
        async with Watcher(rig.broker, "late-ha") as ha:
            await eventually(
                lambda: len([m for m in ha.messages if f"/{CLIENT_ID}/" in m.topic
                             and m.topic.endswith("/config")]) == 6
            )
            configs = {
                m.topic: json.loads(m.text())
                for m in ha.messages
                if m.topic.startswith("homeassistant/") and f"/{CLIENT_ID}/" in m.topic
            }
            assert all(m.retain for m in ha.messages if m.topic in configs)
            await eventually(lambda: availability(ha) == "online")
        assert set(configs) == {
            f"homeassistant/binary_sensor/{CLIENT_ID}/glasses_connected/config",
            f"homeassistant/sensor/{CLIENT_ID}/battery/config",
            f"homeassistant/sensor/{CLIENT_ID}/live_link/config",
            f"homeassistant/sensor/{CLIENT_ID}/new_sensitive_devices/config",
            f"homeassistant/switch/{CLIENT_ID}/mute_microphone/config",
            f"homeassistant/switch/{CLIENT_ID}/camera/config",
        }
        mute = configs[f"homeassistant/switch/{CLIENT_ID}/mute_microphone/config"]
        assert mute["command_topic"] == f"{BASE}/mute_microphone/set"
        assert mute["state_topic"] == f"{BASE}/mute_microphone"
        assert {c["availability_topic"] for c in configs.values()} == {f"{BASE}/availability"}
        assert len({c["unique_id"] for c in configs.values()}) == 6
        assert {c["device"]["identifiers"][0] for c in configs.values()} == {
            f"edge-agent-{CLIENT_ID}"}
        # The daemon's own entities are not devices the model can control.
        assert not any(CLIENT_ID in d.id for d in rig.service.inventory.devices())

        # States, published on change.
        await eventually(lambda: last(rig, f"{BASE}/battery") == "80")
        assert last(rig, f"{BASE}/glasses_connected") == "ON"
        assert last(rig, f"{BASE}/live_link") == "connected"
        assert last(rig, f"{BASE}/mute_microphone") == "OFF"
        assert last(rig, f"{BASE}/camera") == "ON"
        glasses.battery, glasses.connected, link.state = 55, False, "backoff"
        await link.events.put(InputTranscript("What's the weather like?"))
        await eventually(lambda: last(rig, f"{BASE}/battery") == "55")
        await eventually(lambda: last(rig, f"{BASE}/glasses_connected") == "OFF")
        await eventually(lambda: last(rig, f"{BASE}/live_link") == "backoff")
        assert last(rig, f"{BASE}/new_sensitive_devices") == "none"
        # What the user says stays here unless publishing it was asked for.
        assert agent.last_user_text == "What's the weather like?"
        assert last(rig, f"{BASE}/last_transcript") is None

        # Home Assistant flips the switches: the Agent really mutes and blinds itself.
        await rig.watcher.publish(f"{BASE}/mute_microphone/set", "ON")
        await eventually(lambda: agent.mic_muted)
        assert link.stream_ends == 1  # the server hears the end of speech at once
        await eventually(lambda: last(rig, f"{BASE}/mute_microphone") == "ON")
        await rig.watcher.publish(f"{BASE}/camera/set", "OFF")
        await eventually(lambda: not agent.camera_enabled)
        await eventually(lambda: last(rig, f"{BASE}/camera") == "OFF")
        agent.video(VideoFrame(b"\xff\xd8jpeg", time.monotonic()))
        assert link.video == []
        await rig.watcher.publish(f"{BASE}/mute_microphone/set", "maybe")
        # Anyone on the broker could listen in: turning the microphone or camera back on
        # over MQTT is refused unless mqtt.remote_unmute says otherwise.
        await rig.watcher.publish(f"{BASE}/mute_microphone/set", "off")
        await rig.watcher.publish(f"{BASE}/camera/set", "ON")

        def result(entity: str, outcome: str) -> float:
            return rig.metrics.value("edge_home_ha_commands_total", entity=entity,
                                     result=outcome)

        await eventually(lambda: result("camera", "refused_remote_unmute") == 1)
        assert agent.mic_muted and not agent.camera_enabled
        assert (result("mute_microphone", "applied"), result("mute_microphone", "invalid"),
                result("mute_microphone", "refused_remote_unmute")) == (1, 1, 1)
        assert last(rig, f"{BASE}/mute_microphone") == "ON"

        # Home Assistant restarts: the daemon announces itself again and re-reads discovery.
        announced = rig.service.announcements
        reread = rig.service.inventory.stats.discovery_unchanged
        mark = rig.watcher.mark()
        await rig.watcher.publish("homeassistant/status", "online")
        await eventually(lambda: rig.service.announcements == announced + 1)
        await eventually(
            lambda: rig.service.inventory.stats.discovery_unchanged >= reread + len(
                default_devices())
        )
        await rig.barrier()
        again = [m.topic for m in rig.watcher.since(mark) if f"/{CLIENT_ID}/" in m.topic
                 and m.topic.endswith("/config")]
        assert len(again) == 6
        service = rig.service
    # Stopped: "offline" (retained) for Home Assistant, and the device tools are gone.
    assert service.registry.names() == ["agent_status"]
    assert service.conn is not None and not service.conn.connected


def availability(watcher: Watcher) -> str | None:
    texts = [m.text() for m in watcher.messages if m.topic == f"{BASE}/availability"]
    return texts[-1] if texts else None


@pytest.mark.timeout(60)
async def test_availability_follows_the_last_will_and_states_repeat() -> None:
    async with home_rig(
        default_devices()[:1], status_provider=lambda: {}, proxy=True,
        mqtt={"state_interval": 0.2},
    ) as rig:
        await eventually(lambda: last(rig, f"{BASE}/availability") == "online")
        # Slow-changing values are published again now and then, changed or not.
        link_states = f"{BASE}/live_link"
        await eventually(
            lambda: len([m for m in rig.watcher.messages if m.topic == link_states]) >= 3
        )
        assert {m.text() for m in rig.watcher.messages if m.topic == link_states} == {"unknown"}
        rig.proxy.accepting = False
        rig.proxy.cut()  # the daemon's link dies without a goodbye: the broker says it
        await eventually(lambda: last(rig, f"{BASE}/availability") == "offline")
        rig.proxy.accepting = True
        await eventually(lambda: last(rig, f"{BASE}/availability") == "online", 10)


@pytest.mark.timeout(60)
async def test_reread_forgets_configs_removed_meanwhile() -> None:
    """Mark and sweep: a config removed while the daemon was away is gone after Home
    Assistant's birth message makes it re-read discovery; declared devices stay."""
    declared = ({"component": "switch", "id": "garden_pump", "name": "Garden pump",
                 "command_topic": "garden/pump/set"},)
    async with home_rig(default_devices(), proxy=True, status_provider=lambda: {},
                        mqtt={"devices": declared, "refresh_debounce": 0.05}) as rig:
        assert rig.home is not None
        conn, inv = rig.service.conn, rig.service.inventory
        assert conn is not None
        scene = rig.home.devices["movie_night"]
        rig.proxy.accepting = False
        rig.proxy.cut()
        await eventually(lambda: not conn.connected)
        # Removed while the daemon is away (QoS 0: nothing is queued for its session).
        scene.withdrawn = True  # and the home does not announce it again
        await rig.watcher.conn.publish(scene.discovery_topic("homeassistant"), "", qos=0,
                                       retain=True)
        connects = conn.stats.connects
        rig.proxy.accepting = True
        await eventually(lambda: conn.stats.connects > connects and conn.connected, 10)
        await rig.service.wait_ready(5)
        await asyncio.sleep(0.5)  # the retained configs the reconnect brought have landed
        assert inv.get("sim-movie_night") is not None  # stale: nobody said it went away
        assert "sim-movie_night" in rig.enum(CONTROL_DEVICE)

        await rig.watcher.publish("homeassistant/status", "online")
        await eventually(lambda: inv.get("sim-movie_night") is None)
        assert inv.stats.discovery_swept == 1
        assert len(inv.devices()) == len(default_devices())  # 9 discovered + the pump
        assert inv.get("garden_pump") is not None
        await eventually(lambda: "sim-movie_night" not in rig.enum(CONTROL_DEVICE))
        # A second re-read with nothing gone sweeps nothing.
        reread = inv.stats.discovery_unchanged
        await rig.watcher.publish("homeassistant/status", "online")
        await eventually(lambda: inv.stats.discovery_unchanged >= reread + 9)
        await asyncio.sleep(0.5)
        assert inv.stats.discovery_swept == 1 and len(inv.devices()) == 10


@pytest.mark.timeout(60)
async def test_describe_reads_retained_configs_without_disturbing_the_daemon() -> None:
    async with home_rig(default_devices()) as rig:
        conn = rig.service.conn
        assert conn is not None
        connects = conn.stats.connects
        settings = rig.settings
        registry = ToolRegistry()
        other = HomeService(settings, registry, Metrics())
        text = await other.snapshot(timeout=3.0)
        assert "Devices (10):" in text
        assert "sim-kitchen_light: Kitchen light [light, Kitchen, discovery, online]" in text
        assert "sim-front_door_lock: Front door lock [lock, Hallway, discovery, online, " \
               "needs confirmation]" in text
        assert '"state": "locked"' in text
        assert '"name": "control_device"' in text and "sim-thermostat" in text
        assert CLIENT_ID not in text.split("Tools the model")[0]  # not its own entities
        await asyncio.sleep(0.2)
        assert conn.connected and conn.stats.connects == connects  # never kicked off
        assert last(rig, f"{BASE}/availability") == "online"
    # Unreachable broker: said so, within the timeout.
    lonely = Settings(mqtt=MqttSettings(host="127.0.0.1", port=free_port()))
    started = time.monotonic()
    text = await HomeService(lonely, ToolRegistry(), Metrics()).snapshot(timeout=0.5)
    assert "not reachable within 0.5 s" in text and "Devices (0):" in text
    assert time.monotonic() - started < 3.0


@pytest.mark.timeout(60)
async def test_cancelled_service_stops_cleanly_and_says_offline() -> None:
    async with home_rig(default_devices()[:1], status_provider=lambda: {}) as rig:
        service = rig.service
        await eventually(lambda: last(rig, f"{BASE}/availability") == "online")
        mark = rig.watcher.mark()
    # Leaving the rig cancelled service.run(): it said goodbye itself (no will needed).
    assert service.conn is not None and not service.conn.connected
    assert [m.text() for m in rig.watcher.since(mark) if m.topic == f"{BASE}/availability"] == [
        "offline"
    ]
    assert service.registry.names() == []


def test_declared_devices_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "edge-agent.toml"
    path.write_text(
        '[[mqtt.devices]]\ncomponent = "light"\nname = "Porch light"\narea = "Porch"\n'
        'command_topic = "porch/light/set"\nstate_topic = "porch/light/state"\n'
        '[[mqtt.devices]]\ncomponent = "switch"\nid = "pump"\nname = "Pump"\n'
        'cmd_t = "garden/pump/set"\n'
    )
    settings = load_settings(path, environ={})
    assert [d["name"] for d in settings.mqtt.devices] == ["Porch light", "Pump"]
    path.write_text('[[mqtt.devices]]\ncomponent = "switch"\nname = "Pump"\n')
    with pytest.raises(ConfigError) as err:
        check_declared_devices(load_settings(path, environ={}).mqtt.devices)
    assert str(err.value) == "mqtt.devices[0]: switch: command_topic is required"
    # Where the daemon starts: exit 2 with that one line (config stays below the home).
    done = subprocess.run([sys.executable, "-m", "daemon", "devices", "--config", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "edge-agent: mqtt.devices[0]: switch: command_topic is required"]
    with pytest.raises(ConfigError, match=r"^mqtt.client_id: "):
        load_settings(None, environ={"EDGE_AGENT_MQTT__CLIENT_ID": "a/#"})


@pytest.mark.timeout(60)
async def test_demo_home_and_scenario_call_turn_the_kitchen_light_on() -> None:
    """What `edge-agent demo` does, minus the Live link: the scenario's call works."""
    from daemon.live.calls import ToolResponse
    from daemon.tools.dispatch import ToolDispatcher
    from simulator.home import demo_home

    call = home_demo_scenario().turns[0].tool_calls[0]
    async with demo_home(MqttSettings()) as mqtt:
        assert mqtt.host == "127.0.0.1"
        settings = Settings(mqtt=mqtt)
        registry, metrics = ToolRegistry(), Metrics()
        service = HomeService(settings, registry, metrics)
        answers: list[ToolResponse] = []
        dispatcher = ToolDispatcher(registry, metrics, answers.append)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(service.run()), tg.create_task(dispatcher.run())]
            assert await service.wait_ready(10)
            await eventually(lambda: bool(service.inventory.available("sim-kitchen_light")))
            dispatcher.submit([FunctionCall("demo-1", call.name, dict(call.args))])
            await eventually(lambda: len(answers) == 1)
            for task in tasks:
                task.cancel()
        assert answers[0].response["output"]["status"] == "done"
        assert service.inventory.state("sim-kitchen_light")["state"] == "on"
    configured = MqttSettings(host="broker.example", port=1884)
    async with demo_home(configured) as same:
        assert same == configured  # a real broker is never given simulated devices


@pytest.mark.timeout(60)
async def test_transcript_and_remote_unmute_are_opt_ins() -> None:
    agent, link, _glasses = make_agent()
    async with home_rig(default_devices()[:1], agent=agent,
                        mqtt={"publish_transcript": True, "remote_unmute": True}) as rig:
        await link.events.put(InputTranscript("What's the weather like?"))
        await eventually(lambda: last(rig, f"{BASE}/last_transcript") == "What's the weather like?")
        transcript = [m for m in rig.watcher.messages if m.topic == f"{BASE}/last_transcript"]
        assert not any(m.retain for m in transcript)  # never kept on the broker
        await rig.watcher.publish(f"{BASE}/mute_microphone/set", "ON")
        await eventually(lambda: agent.mic_muted)
        await rig.watcher.publish(f"{BASE}/mute_microphone/set", "OFF")
        await eventually(lambda: not agent.mic_muted)
        await rig.watcher.publish(f"{BASE}/camera/set", "OFF")
        await eventually(lambda: not agent.camera_enabled)
        await rig.watcher.publish(f"{BASE}/camera/set", "ON")
        await eventually(lambda: agent.camera_enabled)


@pytest.mark.timeout(60)
async def test_a_flood_of_ha_births_rereads_once() -> None:
    """Any client may publish homeassistant/status: a flood coalesces into one re-read."""
    async with home_rig(default_devices()[:2], status_provider=lambda: {}) as rig:
        service = rig.service
        for _ in range(50):
            await rig.watcher.publish("homeassistant/status", "online")
        await eventually(lambda: service.rereads == 1)
        await asyncio.sleep(1.0)
        assert service.rereads == 1  # the next one waits out the interval
        assert service.reread_coalesced >= 45

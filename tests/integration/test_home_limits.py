"""No MQTT message can hurt the daemon.

Issue 12, item 6: one multi-megabyte retained discovery config (the daemon read it
again after every restart and was OOM-killed): the real HomeService against real
mosquitto with the virtual home. The CPU cases: tests/unit/test_home_limits.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tracemalloc
from typing import Any

import pytest

from daemon.home.model_tools import (
    CONTROL_DEVICE,
    MAX_DECLARATION_BYTES,
)
from simulator.broker import PrivateBroker
from simulator.home import default_devices
from tests.support.home import home_rig
from tests.support.mqtt import Proxy, publish_raw
from tests.support.waiting import eventually


def output(answer: dict[str, Any]) -> Any:
    assert "output" in answer, answer
    return answer["output"]


# ------------------------------------------------------------ item 6: big messages


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mqtt5", [True, False], ids=["mqtt5", "mqtt311-broker"])
async def test_a_multi_megabyte_retained_config_is_dropped_counted_and_not_kept(
    mqtt5: bool,
) -> None:
    """8 MB retained config (a valid one: a giant name) and a 66 KB one (over the 64 KB
    cap): both are dropped, the big one by mosquitto over MQTT 5, by its length here
    over 3.1.1; each drop we see is counted; the Python heap keeps nothing of them;
    the other devices still work."""
    big = 8_000_000
    async with home_rig(default_devices(), proxy=True, mqtt5=mqtt5) as rig:
        conn = rig.service.conn
        assert conn is not None and conn.mqtt5 is mqtt5
        gc.collect()
        tracemalloc.start()
        try:
            heap_before = tracemalloc.get_traced_memory()[0]
            await publish_raw(rig.broker.port, [
                ("homeassistant/switch/huge/config", big, "h"),
                ("homeassistant/switch/mid/config", 66_000, "m"),
            ])
            expected = 1 if mqtt5 else 2  # over MQTT 5 mosquitto drops the 8 MB one for us
            await eventually(lambda: conn.stats.messages_oversized_discovery == expected, 20)
            await rig.barrier()
            gc.collect()
            heap_now, heap_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        kept = heap_now - heap_before
        assert kept < 1_000_000, f"{kept} bytes kept"  # a kept copy would be 8 MB or more
        if mqtt5:
            assert "Dropping too large outgoing PUBLISH" in rig.broker.log_text()
            assert heap_peak - heap_before < 1_000_000, heap_peak - heap_before
        else:  # paho's read buffer, its packet and the payload slice (and the relay in
            # this process), never a decoded or parsed copy
            assert heap_peak - heap_before < 6 * big, heap_peak - heap_before
        await eventually(lambda: rig.metrics.value(
            "edge_mqtt_events_total", event="messages_oversized_discovery") == expected, 5)
        inv = rig.service.inventory
        assert inv.get("switch.huge") is None and inv.get("switch.mid") is None
        out = output(await rig.call(CONTROL_DEVICE, {"device_id": "sim-kitchen_light",
                                                     "action": "turn_on"}))
        assert out["status"] == "done", out
        assert len(json.dumps(rig.registry.declarations())) < MAX_DECLARATION_BYTES


# The daemon's home side in a process of its own: start, read every retained message,
# report its peak RSS (VmHWM) and what it counted. What a restart loop sees.
DAEMON = """
import asyncio, gc, json, sys
from daemon.config import MqttSettings, Settings
from daemon.ops.metrics import Metrics
from daemon.home.service import HomeService
from daemon.tools.registry import ToolRegistry

async def main():
    settings = Settings(mqtt=MqttSettings(host="127.0.0.1", port=int(sys.argv[1]),
                                          client_id="restarting", announce=False))
    service = HomeService(settings, ToolRegistry(), Metrics())
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(service.run())
        assert await service.wait_ready(20)
        await service.settle(service.conn, 10.0)
        gc.collect()
        status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
        print(json.dumps({"hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
                          "devices": len(service.inventory.devices()),
                          "mqtt5": service.conn.mqtt5,
                          "oversized": service.conn.stats.messages_oversized_discovery}))
        task.cancel()

asyncio.run(main())
"""


async def daemon_once(port: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DAEMON, str(port), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mqtt5", [True, False], ids=["mqtt5", "mqtt311-broker"])
async def test_restarting_on_a_huge_retained_config_does_not_raise_the_peak_rss(
    mqtt5: bool,
) -> None:
    """The restart loop of issue 12: a 120 MB retained config took the daemon from 42 to
    731 MB and was read again on every start. Here 30 MB: over MQTT 5 the peak RSS does
    not move. A 3.1.1 broker sends it whole, and paho's reading costs about three times
    the message for a moment (its growing packet buffer and the payload slice); it is
    never decoded, parsed or kept."""
    big = 30_000_000
    async with PrivateBroker() as broker, Proxy(broker.port, mqtt5=mqtt5) as proxy:
        await publish_raw(broker.port, [("homeassistant/switch/ok/config", 10, "o")])
        baseline = await daemon_once(proxy.port)
        await publish_raw(broker.port, [("homeassistant/switch/huge/config", big, "h")])
        loaded = await daemon_once(proxy.port)
    assert baseline["mqtt5"] is loaded["mqtt5"] is mqtt5
    assert baseline["devices"] == loaded["devices"] == 1
    grown = loaded["hwm_mb"] - baseline["hwm_mb"]
    if mqtt5:
        assert loaded["oversized"] == 0  # mosquitto never sent it
        assert grown < 4, f"peak RSS grew by {grown:.1f} MB"
    else:
        assert loaded["oversized"] >= 1  # its persistent session may hold a copy too
        assert grown < 4 * big / 1e6, f"peak RSS grew by {grown:.1f} MB"

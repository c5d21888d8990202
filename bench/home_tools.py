"""Home tools benchmark: call → published → confirmed, and what 500 devices cost.

Latency: a private mosquitto on loopback, the virtual home in its own process with
instant devices (latency 0), and the daemon's HomeService with its tools behind a
ToolDispatcher in this process. Each sample is one `control_device` call, handed
to the dispatcher as the Live link would, alternating the kitchen light on and
off: "published" is when the broker acknowledged the command (PUBACK), "confirmed"
is when the tool's answer (status done) was handed back for the model.

Footprint: a separate process runs a HomeService on an empty broker, reports its
RSS and CPU time, then 500 devices are announced (retained discovery configs,
availability and state, ten kinds); once its inventory holds all of them and the
tools name them, it reports again. The difference is the cost of the inventory,
its subscriptions and the 500-device tool schemas.

CPU per call: what one tool call costs the event loop (validation, then the
handler up to its first wait), worst cases included: a colour argument with a
million items, a 2000-word list_devices query over 300 devices, a 10-word query
over 5000 devices, and the search itself (Inventory.find) for those queries. The
target is 10 ms per call: the event loop also carries the audio.

    .venv/bin/python bench/home_tools.py                 # ~15 s
    .venv/bin/python bench/home_tools.py --calls 200     # quicker
    .venv/bin/python bench/home_tools.py --cpu-only      # just the CPU per call
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

THIS_FILE = os.path.abspath(__file__)
TARGETS = {
    "confirmed_p50_ms": 5.0,
    "confirmed_p99_ms": 20.0,
    "rss_500_mb": 20.0,
    "call_cpu_ms": 10.0,
}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# ------------------------------------------------------------------- latency


@contextlib.asynccontextmanager
async def home_process(host: str, port: int) -> AsyncIterator[None]:
    """`edge-agent sim home` in its own process, so the devices do not share our loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from simulator.home import main; sys.exit(main(sys.argv[1:]))",
        "--host",
        host,
        "--port",
        str(port),
        "--latency",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line.startswith(b"virtual home"):
            raise RuntimeError(f"virtual home did not start: {line!r}")
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


class StampedPublisher:
    """The real connection; notes when the broker acknowledged each command."""

    def __init__(self, conn: Any, acked_at: list[float]) -> None:
        self.conn = conn
        self.acked_at = acked_at

    async def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        outcome = await self.conn.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
        self.acked_at.append(time.perf_counter())
        return outcome


async def measure_latency(calls: int, warmup: int) -> dict[str, float]:
    from daemon.config import MqttSettings, Settings
    from daemon.home.service import HomeService
    from daemon.live.calls import FunctionCall, ToolResponse
    from daemon.ops.metrics import Metrics
    from daemon.tools.dispatch import ToolDispatcher
    from daemon.tools.registry import ToolRegistry
    from simulator.broker import PrivateBroker

    async with PrivateBroker() as broker, home_process(broker.host, broker.port):
        settings = Settings(
            mqtt=MqttSettings(host=broker.host, port=broker.port, client_id="bench", announce=False)
        )
        registry, metrics = ToolRegistry(settings.tools.deadline), Metrics()
        service = HomeService(settings, registry, metrics)
        acked_at: list[float] = []
        conn = service.conn
        assert conn is not None

        service.executor.publisher = StampedPublisher(conn, acked_at)
        answered: dict[str, float] = {}
        responses: dict[str, ToolResponse] = {}

        def respond(resp: ToolResponse) -> None:
            answered[resp.id] = time.perf_counter()
            responses[resp.id] = resp

        dispatcher = ToolDispatcher(registry, metrics, respond)
        published: list[float] = []
        confirmed: list[float] = []
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(service.run()), tg.create_task(dispatcher.run())]
            if not await service.wait_ready(10):
                raise RuntimeError("home service not ready")
            inv = service.inventory
            while not (inv.available("sim-kitchen_light") and inv.state("sim-kitchen_light")):
                await asyncio.sleep(0.01)
            on = inv.state("sim-kitchen_light").get("state") != "on"
            for i in range(warmup + calls):
                call_id = f"c{i}"
                action = "turn_on" if on else "turn_off"
                on = not on
                acked_at.clear()
                started = time.perf_counter()
                dispatcher.submit(
                    [
                        FunctionCall(
                            call_id,
                            "control_device",
                            {"device_id": "sim-kitchen_light", "action": action},
                        )
                    ]
                )
                while call_id not in answered:
                    await asyncio.sleep(0)
                status = responses[call_id].response.get("output", {}).get("status")
                if status != "done":
                    raise RuntimeError(f"call {i}: {responses[call_id].response}")
                if i >= warmup:
                    published.append((acked_at[0] - started) * 1000)
                    confirmed.append((answered[call_id] - started) * 1000)
            for task in tasks:
                task.cancel()
    return {
        "calls": float(calls),
        "published_p50_ms": statistics.median(published),
        "published_p99_ms": percentile(published, 99),
        "confirmed_p50_ms": statistics.median(confirmed),
        "confirmed_p99_ms": percentile(confirmed, 99),
        "confirmed_max_ms": max(confirmed),
    }


# ----------------------------------------------------------------- footprint


def many_devices(count: int) -> list[Any]:
    """`count` virtual devices of ten kinds, with unique ids."""
    from simulator import home

    kinds = [
        lambda i: home.SimLight(f"light_{i}", f"Light {i}", f"Room {i % 40}"),
        lambda i: home.SimSwitch(f"switch_{i}", f"Switch {i}", f"Room {i % 40}"),
        lambda i: home.SimFan(f"fan_{i}", f"Fan {i}", f"Room {i % 40}"),
        lambda i: home.SimBlinds(f"blinds_{i}", f"Blinds {i}", f"Room {i % 40}"),
        lambda i: home.SimLock(f"lock_{i}", f"Lock {i}", f"Room {i % 40}"),
        lambda i: home.SimThermostat(f"thermostat_{i}", f"Thermostat {i}", f"Room {i % 40}"),
        lambda i: home.SimScene(f"scene_{i}", f"Scene {i}", f"Room {i % 40}"),
        lambda i: home.SimJsonLight(f"lamp_{i}", f"Lamp {i}", f"Room {i % 40}"),
        lambda i: home.SimTemperatureSensor(f"temp_{i}", f"Temperature {i}", f"Room {i % 40}"),
        lambda i: home.SimDoorContact(f"contact_{i}", f"Contact {i}", f"Room {i % 40}"),
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


async def child(host: str, port: int, count: int) -> None:
    """The measured process: report, wait for the devices, report again."""
    from daemon.config import MqttSettings, Settings
    from daemon.home.service import HomeService
    from daemon.ops.metrics import Metrics
    from daemon.tools.registry import ToolRegistry

    settings = Settings(
        mqtt=MqttSettings(host=host, port=port, client_id="bench-footprint", announce=False)
    )
    registry = ToolRegistry(settings.tools.deadline)
    service = HomeService(settings, registry, Metrics())
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(service.run())
        if not await service.wait_ready(10):
            raise RuntimeError("not ready")
        await asyncio.sleep(0.5)
        gc.collect()
        before = {"rss_mb": rss_mb(), "cpu_s": time.process_time()}
        print(json.dumps({"phase": "empty", **before}), flush=True)
        started = time.perf_counter()
        inv = service.inventory
        while True:
            read = registry.get("get_device_state")
            named = len(read.parameters["properties"]["device_id"]["enum"]) if read else 0
            if len(inv.devices()) >= count and named >= count:
                break
            await asyncio.sleep(0.02)
        loaded_in = time.perf_counter() - started
        assert service.conn is not None
        await service.settle(service.conn, 10.0)  # retained states of the last ones
        await asyncio.sleep(1.0)
        gc.collect()
        schema = json.dumps(registry.declarations())
        print(
            json.dumps(
                {
                    "phase": "loaded",
                    "rss_mb": rss_mb(),
                    "cpu_s": time.process_time(),
                    "loaded_in_s": loaded_in,
                    "devices": len(inv.devices()),
                    "subscriptions": len(inv.topics()),
                    "with_state": sum(1 for d in inv.devices() if inv.state(d.id)),
                    "declarations_kb": len(schema) / 1024,
                    "refreshes": service.tools.stats.refreshes,
                }
            ),
            flush=True,
        )
        task.cancel()


async def measure_footprint(count: int) -> dict[str, float]:
    from daemon.config import MqttSettings
    from daemon.home.mqtt import MqttConnection
    from simulator.broker import PrivateBroker
    from simulator.home import BRIDGE_TOPIC

    async with PrivateBroker() as broker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            THIS_FILE,
            "--child",
            broker.host,
            str(broker.port),
            str(count),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            empty = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            publisher = MqttConnection(
                MqttSettings(host=broker.host, port=broker.port, client_id="bench-announcer"),
                availability_topic=BRIDGE_TOPIC,
            )
            async with publisher:
                await publisher.wait_connected(10)
                for dev in many_devices(count):
                    await publisher.publish(dev.availability_topic, "online", retain=True)
                    for topic, payload in dev.state_messages():
                        await publisher.publish(topic, payload, retain=True)
                    await publisher.publish(
                        dev.discovery_topic("homeassistant"), json.dumps(dev.config), retain=True
                    )
                loaded = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
    return {
        "devices": loaded["devices"],
        "rss_empty_mb": empty["rss_mb"],
        "rss_loaded_mb": loaded["rss_mb"],
        "rss_500_mb": loaded["rss_mb"] - empty["rss_mb"],
        "cpu_load_s": loaded["cpu_s"] - empty["cpu_s"],
        "loaded_in_s": loaded["loaded_in_s"],
        "subscriptions": loaded["subscriptions"],
        "with_state": loaded["with_state"],
        "declarations_kb": loaded["declarations_kb"],
        "refreshes": loaded["refreshes"],
    }


# -------------------------------------------------------------- CPU per call


def _home_of(count: int) -> Any:
    """A HomeService without a broker, its inventory filled with `count` devices."""
    from daemon.config import Settings
    from daemon.home.discovery import Discovered
    from daemon.home.service import HomeService
    from daemon.ops.metrics import Metrics
    from daemon.tools.registry import ToolRegistry

    service = HomeService(Settings(), ToolRegistry(), Metrics())
    for dev in many_devices(count):
        found = service.inventory.handle_discovery(
            dev.discovery_topic("homeassistant"), json.dumps(dev.config)
        )
        assert isinstance(found, Discovered), found
    service.tools.refresh()
    return service


def _words(count: int, seed: int) -> str:
    """A query mixing device words, near misses and noise."""
    import random

    rng = random.Random(seed)
    vocab = ["light", "lamp", "room", "kitchn", "switch", "fan", "blinds", "lock", "door",
             "thermostat", "scene", "temperature", "contact", "please", "turn", "on", "the",
             "bedroom", "garage", "window", "zebra", "quantum"]
    return " ".join(
        rng.choice(vocab) if rng.random() < 0.7 else str(rng.randrange(500))
        for _ in range(count)
    )


async def _call_cpu(service: Any, name: str, args: dict[str, Any], repeat: int) -> list[float]:
    """CPU (this thread) of validate + handler per call, in ms."""
    from daemon.tools.registry import ToolError

    registry = service.registry
    out: list[float] = []
    for _ in range(repeat):
        started = time.thread_time()
        try:
            checked = registry.validate(name, args)
            tool = registry.get(name)
            await tool.handler(checked)
        except ToolError:
            pass  # refused: still one answer, and its cost is what counts
        out.append((time.thread_time() - started) * 1000)
    return out


def _find_cpu(service: Any, query: str, repeat: int) -> list[float]:
    out: list[float] = []
    for i in range(repeat):
        started = time.thread_time()
        service.inventory.find(query + (" " * i), limit=1000)  # new text: no memo hit
        out.append((time.thread_time() - started) * 1000)
    return out


async def measure_cpu(repeat: int = 20) -> dict[str, tuple[float, float]]:
    """(median, max) CPU ms per call for each case."""
    small, large = _home_of(300), _home_of(5000)
    light = "sim-light_0"
    cases: dict[str, tuple[float, float]] = {}

    def put(label: str, ms: list[float]) -> None:
        cases[label] = (statistics.median(ms), max(ms))

    million = {"device_id": light, "action": "set_color", "args": {"rgb": [255] * 1_000_000}}
    put("control_device, rgb of 1M items (300)", await _call_cpu(small, "control_device",
                                                                  million, repeat))
    put("list_devices, 2000-word query (300)", await _call_cpu(
        small, "list_devices", {"query": _words(2000, 1)}, repeat))
    broad = "light lamp switch fan blinds lock thermostat scene temperature contact"
    put("list_devices, 10 broad words (5000)", await _call_cpu(
        large, "list_devices", {"query": broad}, repeat))
    put("list_devices, 10 mixed words (5000)", await _call_cpu(
        large, "list_devices", {"query": _words(10, 2)}, repeat))
    put("list_devices, all (5000)", await _call_cpu(large, "list_devices", {}, repeat))
    put("list_devices, area (5000)", await _call_cpu(
        large, "list_devices", {"area": "Room 7"}, repeat))
    put("get_device_state (5000)", await _call_cpu(
        large, "get_device_state", {"device_id": light}, repeat))
    put("control_device, unknown id (5000)", await _call_cpu(
        large, "control_device", {"device_id": "sim-nothing", "action": "turn_on"}, repeat))
    put("control_device, turn_on, no broker (5000)", await _call_cpu(
        large, "control_device", {"device_id": light, "action": "turn_on"}, repeat))
    put("Inventory.find, 2000 words (300)", _find_cpu(small, _words(2000, 3), repeat))
    put("Inventory.find, 10 broad words (5000)", _find_cpu(large, broad, repeat))
    put("Inventory.find, 10 mixed words (5000)", _find_cpu(large, _words(10, 4), repeat))
    return cases


def report_cpu(cases: dict[str, tuple[float, float]]) -> bool:
    target = TARGETS["call_cpu_ms"]
    ok = True
    print(f"CPU per call on the event loop, median / max ms (target <= {target:g} ms):")
    for label, (median, worst) in cases.items():
        met = worst <= target
        ok &= met
        print(f"  {label:<42} {median:8.3f} / {worst:8.3f} ms  {'met' if met else 'MISSED'}")
    return ok


def report(lat: dict[str, float], foot: dict[str, float]) -> bool:
    ok = True

    def line(name: str, value: float, unit: str, target: float | None = None) -> None:
        nonlocal ok
        mark = ""
        if target is not None:
            met = value <= target
            ok &= met
            mark = f"  (target <= {target:g} {unit}: {'met' if met else 'MISSED'})"
        print(f"  {name:<34} {value:9.2f} {unit}{mark}")

    print(f"call -> published -> confirmed, {int(lat['calls'])} calls, instant device:")
    line("published (PUBACK) p50", lat["published_p50_ms"], "ms")
    line("published (PUBACK) p99", lat["published_p99_ms"], "ms")
    line("confirmed p50", lat["confirmed_p50_ms"], "ms", TARGETS["confirmed_p50_ms"])
    line("confirmed p99", lat["confirmed_p99_ms"], "ms", TARGETS["confirmed_p99_ms"])
    line("confirmed max", lat["confirmed_max_ms"], "ms")
    print(f"inventory of {int(foot['devices'])} devices, separate process:")
    line("RSS empty", foot["rss_empty_mb"], "MB")
    line("RSS loaded", foot["rss_loaded_mb"], "MB")
    line("RSS added", foot["rss_500_mb"], "MB", TARGETS["rss_500_mb"])
    line("CPU to load (process time)", foot["cpu_load_s"], "s")
    line("announce -> all named in tools", foot["loaded_in_s"], "s")
    line("state/availability subscriptions", foot["subscriptions"], "")
    line("devices with a reported state", foot["with_state"], "")
    line("tool declarations size", foot["declarations_kb"], "KB")
    line("tool refreshes while loading", foot["refreshes"], "")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per call")
    parser.add_argument("--child", nargs=3, metavar=("HOST", "PORT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        host, port, count = args.child
        asyncio.run(child(host, int(port), int(count)))
        return 0
    cpu = asyncio.run(measure_cpu())
    if args.cpu_only:
        ok = report_cpu(cpu)
        if args.json:
            print(json.dumps({"cpu": cpu}))
        return 0 if ok else 1
    lat = asyncio.run(measure_latency(args.calls, args.warmup))
    foot = asyncio.run(measure_footprint(args.devices))
    ok = report(lat, foot)
    ok &= report_cpu(cpu)
    if args.json:
        print(json.dumps({"latency": lat, "footprint": foot, "cpu": cpu}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

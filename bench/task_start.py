"""Background tasks benchmark: Live tool call -> "started" answer, and polling's cost.

Latency: the fake Live server and the fake Interactions service on one TLS port in
this process; the daemon's LiveLink (real SDK), ToolDispatcher and TaskManager with
its SQLite database on disk (WAL, synchronous=NORMAL) in this process too. Each sample is
one scripted turn whose model calls `start_task`; the turn is begun by a text turn
the link sends. The figure is the fake's own clock: from sending the toolCall to
reading the toolResponse, so it holds the TLS loopback both ways, the SDK's parsing,
the dispatch, the database insert and the answer's encoding. Each task is then
cancelled outside the measured window (the concurrency limit).

Polling: one task held running on the fake for `--poll-seconds` with the default
schedule (2 s rising by 1.5x to 60 s): requests made and the process's CPU time,
scaled to one hour.

    .venv/bin/python bench/task_start.py               # ~40 s
    .venv/bin/python bench/task_start.py --calls 50 --poll-seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pydantic import SecretStr

from daemon.config import InteractionsSettings, LiveSettings
from daemon.live.events import ToolCallRequest, TurnComplete
from daemon.live.link import LiveLink
from daemon.ops.metrics import Metrics
from daemon.tasks.client import Endpoint, InteractionsClient
from daemon.tasks.manager import TaskManager
from daemon.tasks.metrics import TaskMetrics
from daemon.tasks.store import TaskStore
from daemon.tasks.tools import task_tools
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import ToolRegistry
from simulator.interactions import FakeInteractions, TaskScript
from simulator.live_server import FakeLiveServer
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn

KEY = "bench-key"
TARGET_P50_MS = 50.0
TARGET_P99_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def _pump(link: LiveLink, dispatcher: ToolDispatcher, turns: asyncio.Queue[None]) -> None:
    while True:
        event = await link.next_event()
        if isinstance(event, ToolCallRequest):
            dispatcher.submit(event.calls)
        elif isinstance(event, TurnComplete):
            turns.put_nowait(None)


async def run(calls: int, poll_seconds: float) -> dict[str, float]:
    start = Turn(user="", reply="ok", audio=ReplyAudio(duration_ms=20), tool_calls=(
        ToolCallSpec("start_task", {"request": "research heat pumps", "name": "heat pumps"}),))
    fake = FakeInteractions(api_key=KEY, default_script=TaskScript(duration_s=None))
    async with FakeLiveServer(api_key=KEY, scenario=Scenario((start,), loop=True),
                              http_router=fake) as live:
        live_s = LiveSettings(base_url=live.base_url, ca_file=live.ca_pem_path)
        task_s = InteractionsSettings(enabled=True)
        metrics = Metrics()
        registry = ToolRegistry()
        with tempfile.TemporaryDirectory() as state:
            manager = TaskManager(task_s, TaskStore(Path(state)),
                                  InteractionsClient(task_s, Endpoint.of(task_s, live_s),
                                                     SecretStr(KEY)),
                                  TaskMetrics(metrics.registry))
            for tool in task_tools(manager, None):
                registry.register(tool)
            link = LiveLink(live_s, SecretStr(KEY), metrics, declarations=registry.declarations)
            dispatcher = ToolDispatcher(registry, metrics, link.send_tool_response)
            turns: asyncio.Queue[None] = asyncio.Queue()
            async with asyncio.TaskGroup() as tg:
                background = [tg.create_task(c) for c in (
                    manager.run(), link.run(), dispatcher.run(), _pump(link, dispatcher, turns))]
                latencies = await _starts(live, link, manager, turns, calls)
                polls = await _polling(fake, manager, poll_seconds)
                for task in background:
                    task.cancel()
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "mean_ms": statistics.fmean(latencies), "n": len(latencies), **polls}


async def _starts(live: FakeLiveServer, link: LiveLink, manager: TaskManager,
                  turns: asyncio.Queue[None], calls: int) -> list[float]:
    latencies: list[float] = []
    for i in range(calls + 5):  # the first five warm up (TLS session, SDK, SQLite)
        await link.send_text(f"go {i}")
        await asyncio.wait_for(turns.get(), 30)
        call = live.tool_calls[-1]
        answer = next(r for r in live.tool_responses if r.id == call.id)
        if i >= 5:
            latencies.append((answer.t - call.t) * 1000)
        await manager.cancel(str(answer.response["output"]["id"]))
    return latencies


async def _polling(fake: FakeInteractions, manager: TaskManager,
                   seconds: float) -> dict[str, float]:
    await fake.wait_until(lambda: all(i.status != "in_progress"
                                      for i in fake.interactions.values()))
    manager.start("a long research", "held")
    await fake.wait_until(lambda: fake.count("POST", "/interactions") > 0)
    before_req = len(fake.requests)
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    requests = len(fake.requests) - before_req
    # The schedule rises to one poll a minute: an hour is ~60 polls after the first minutes.
    return {"poll_requests": requests, "poll_wall_s": wall,
            "poll_cpu_ms_per_s": cpu / wall * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    args = parser.parse_args()
    r = asyncio.run(run(args.calls, args.poll_seconds))
    print(f"start_task call -> 'started' answer ({int(r['n'])} calls): "
          f"p50 {r['p50_ms']:.1f} ms (target <= {TARGET_P50_MS:.0f}), "
          f"p99 {r['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:.0f}), mean {r['mean_ms']:.1f} ms")
    print(f"one pending task, first {r['poll_wall_s']:.0f} s: {int(r['poll_requests'])} polls, "
          f"CPU {r['poll_cpu_ms_per_s']:.2f} ms/s of the whole process (fakes included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fallback road benchmark: end of utterance -> first answer audio, less the model's time.

The fake Interactions service on the fake Live server's TLS port in this process; the
daemon's FallbackRoad (real SDK client, UtteranceCutter, the real ToolDispatcher over
the real registry with `agent_status`) in this process too, its link held down so the
road is taken at once. Each sample is one utterance (0.8 s of tone, then silence, fed
in 20 ms chunks) whose fake model turn calls `agent_status`, then answers in text that
the fake TTS model speaks: three requests per turn. `answer` is from the cutter
hearing the end (its 0.6 s of silence is the definition of the end, not counted) to
the answer audio handed to the speaker; `overhead` is the same less the time spent
waiting on the three requests (the SDK's call, TLS loopback and the fake's work
included there), so what is ours: the cut, the WAV and base64, the tool run, the
decoding and the hand-off. Target: overhead p50 <= 300 ms.

    .venv/bin/python bench/fallback_turn.py            # ~15 s
    .venv/bin/python bench/fallback_turn.py --turns 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pydantic import SecretStr

from daemon.config import InteractionsSettings, LiveSettings
from daemon.live.calls import FunctionCall, ToolResponse
from daemon.media.types import AudioChunk
from daemon.ops.metrics import Metrics
from daemon.tasks.client import Endpoint, InteractionsClient
from daemon.tasks.fallback import FallbackRoad, earcon
from daemon.tasks.metrics import FallbackMetrics
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import ToolRegistry
from daemon.tools.status import status_tool
from simulator.interactions import FakeInteractions, ModelTurn
from simulator.live_server import FakeLiveServer
from simulator.probe import stamped_chunk
from simulator.scenario import Scenario

KEY = "bench-key"
TARGET_OVERHEAD_MS = 300.0


class _Down:
    connected = False

    async def send_text(self, text: str) -> None:
        return None


class _Speaker:
    def __init__(self) -> None:
        self.played = asyncio.Event()

    def play(self, pcm: bytes, rate: int) -> None:
        if len(pcm) > len(earcon(rising=False)):  # the answer, not the earcon
            self.played.set()


class _Tools:
    def __init__(self, registry: ToolRegistry, metrics: Metrics) -> None:
        self.waiting: dict[str, asyncio.Future[ToolResponse]] = {}
        self.dispatcher = ToolDispatcher(registry, metrics, self._answer)

    def _answer(self, r: ToolResponse) -> None:
        fut = self.waiting.pop(r.id)
        fut.set_result(r)

    async def __call__(self, calls: Sequence[FunctionCall]) -> list[ToolResponse]:
        loop = asyncio.get_running_loop()
        futs = [self.waiting.setdefault(c.id, loop.create_future()) for c in calls]
        self.dispatcher.submit(calls)
        return list(await asyncio.gather(*futs))


async def main(turns: int) -> None:
    fake = FakeInteractions(api_key=KEY)
    fake.queue_turns(*[ModelTurn(reply="Fine: {result}", tool_calls=(("agent_status", {}),),
                                 audio_ms=600) for _ in range(turns + 1)])
    async with FakeLiveServer(api_key=KEY, scenario=Scenario(()), http_router=fake) as live:
        live_s = LiveSettings(base_url=live.base_url, ca_file=live.ca_pem_path)
        s = InteractionsSettings(fallback=True, fallback_after=0.0)
        metrics = Metrics()
        registry = ToolRegistry()
        registry.register(status_tool(lambda: {"live_link": "backoff", "road": "fallback"}))
        tools = _Tools(registry, metrics)
        speaker = _Speaker()
        road = FallbackRoad(s, InteractionsClient(s, Endpoint.of(s, live_s), SecretStr(KEY)),
                            _Down(), speaker, tools, registry.declarations,
                            FallbackMetrics(metrics.registry))
        answers: list[float] = []
        overheads: list[float] = []
        async with asyncio.TaskGroup() as tg:
            side = [tg.create_task(tools.dispatcher.run()), tg.create_task(road.run())]
            while not road.active:
                await asyncio.sleep(0.01)
            for i in range(turns + 1):  # the first one warms up
                speaker.played.clear()
                for k in range(40 + 40):
                    road.audio(AudioChunk(stamped_chunk(k, k < 40), 16_000, time.monotonic()))
                await asyncio.wait_for(speaker.played.wait(), 30)
                if i and road.last_answer is not None and road.last_overhead is not None:
                    answers.append(road.last_answer * 1000)
                    overheads.append(road.last_overhead * 1000)
            for t in side:
                t.cancel()

    def line(name: str, xs: list[float]) -> str:
        xs = sorted(xs)
        p99 = xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]
        return f"{name:9s} p50 {statistics.median(xs):7.1f} ms  p99 {p99:7.1f} ms"

    print(f"fallback turns: {len(answers)} (tool call + follow-up + TTS each)")
    print(line("answer", answers))
    print(line("overhead", overheads) + f"   target p50 <= {TARGET_OVERHEAD_MS:.0f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20)
    asyncio.run(main(ap.parse_args().turns))

"""The tool dispatcher on the clock: deadlines, calls held until the tools are ready,
and the first device call right after start against a real broker.

The rest: tests/unit/test_tools.py.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.live.calls import FunctionCall, ToolResponse
from daemon.ops.metrics import Metrics
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import Tool, ToolRegistry
from tests.support.tools import Harness, Readiness, harness

pytestmark = pytest.mark.timeout(15)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as h:
        yield h


async def test_deadline_gives_timeout(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("c1", "slow", {})])
    await h.settle(1)
    assert h.responses[0].response == {"error": "timed out after 0.3 s"}
    assert h.outcomes == [("c1", "timeout")]


async def test_every_call_gets_exactly_one_answer_under_load(h: Harness) -> None:
    calls = [FunctionCall(f"c{i}", "set_level" if i % 3 else "slow", {"level": i % 150} if i % 3 else {})
             for i in range(60)]
    h.dispatcher.submit(calls)
    h.dispatcher.cancel([f"c{i}" for i in range(0, 60, 6)])
    await h.settle(60)
    answered = [r.id for r in h.responses]
    cancelled = {cid for cid, outcome in h.outcomes if outcome == "cancelled"}
    assert len(answered) == len(set(answered))
    assert set(answered) | cancelled == {c.id for c in calls}
    assert not (set(answered) & cancelled)


# -- calls that arrive before the tools are ready ------------------------------------


async def _noop(_: dict[str, Any]) -> str:
    return "done"


async def test_a_call_before_the_tools_are_ready_waits_for_them(h: Harness) -> None:
    ready = Readiness()
    h.dispatcher.wait_for_tools(ready, timeout=5.0)
    h.dispatcher.submit([FunctionCall("c1", "control_device", {})])
    await asyncio.sleep(0.1)
    assert h.responses == []  # held, not answered "unknown tool"
    h.registry.register(Tool("control_device", "the home's tool", {"type": "object"}, _noop))
    ready.event.set()
    await h.settle(1)
    assert h.responses[0].response == {"output": "done"}
    assert h.outcomes == [("c1", "ok")]
    assert h.metrics.value("edge_tool_ready_waits_total", result="ready") == 1


async def test_the_wait_for_the_tools_is_bounded(h: Harness) -> None:
    ready = Readiness()
    h.dispatcher.wait_for_tools(ready, timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    h.dispatcher.submit([FunctionCall("c1", "control_device", {})])
    await h.settle(1)
    assert 0.15 < loop.time() - started < 3
    assert "unknown tool 'control_device'" in h.responses[0].response["error"]
    assert h.outcomes == [("c1", "invalid")]
    assert h.metrics.value("edge_tool_ready_waits_total", result="timeout") == 1


async def test_a_held_call_can_be_cancelled_by_the_model(h: Harness) -> None:
    h.dispatcher.wait_for_tools(Readiness(), timeout=5.0)
    h.dispatcher.submit([FunctionCall("c1", "control_device", {})])
    await asyncio.sleep(0.05)
    h.dispatcher.cancel(["c1"])
    await h.settle(1)
    assert h.responses == []
    assert h.outcomes == [("c1", "cancelled")]
    assert h.dispatcher.in_flight == 0


@pytest.mark.timeout(60)
async def test_the_first_device_call_right_after_start_finds_the_home_tools() -> None:
    """End to end on a real broker: the call arrives before the home's first inventory."""
    from daemon.config import MqttSettings, Settings
    from daemon.home.service import HomeService
    from simulator.home import demo_home
    from simulator.scenario import home_demo_scenario

    call = home_demo_scenario().turns[0].tool_calls[0]
    async with demo_home(MqttSettings()) as mqtt:
        registry, metrics = ToolRegistry(), Metrics()
        service = HomeService(Settings(mqtt=mqtt), registry, metrics)
        answers: list[ToolResponse] = []
        dispatcher = ToolDispatcher(registry, metrics, answers.append)
        dispatcher.wait_for_tools(service.wait_ready, timeout=10.0)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(dispatcher.run())]
            await asyncio.sleep(0)
            assert registry.get(call.name) is None  # what the model's first call meets
            dispatcher.submit([FunctionCall("first", call.name, dict(call.args))])
            tasks.append(tg.create_task(service.run()))
            async with asyncio.timeout(15):
                while not answers:
                    await asyncio.sleep(0.01)
            for task in tasks:
                task.cancel()
    assert "output" in answers[0].response, answers[0].response
    assert answers[0].response["output"]["status"] in ("done", "sent")
    assert metrics.value("edge_tool_ready_waits_total", result="ready") == 1

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.ops.metrics import Metrics
from daemon.tools.calls import FunctionCall, ToolResponse
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import Tool, ToolError, ToolRegistry

pytestmark = pytest.mark.timeout(15)


class Harness:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.registry = ToolRegistry(default_deadline=0.3)
        self.responses: list[ToolResponse] = []
        self.outcomes: list[tuple[str, str]] = []
        self.ran: list[dict[str, Any]] = []
        self.dispatcher = ToolDispatcher(
            self.registry, self.metrics, self.responses.append,
            lambda call, outcome, _: self.outcomes.append((call.id, outcome)),
        )

    async def settle(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.outcomes) < n:
                await asyncio.sleep(0.005)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    h = Harness()

    async def light(args: dict[str, Any]) -> dict[str, Any]:
        h.ran.append(args)
        if args.get("level") == 13:
            raise ToolError("unlucky level")
        return {"level": args["level"]}

    async def slow(args: dict[str, Any]) -> str:
        h.ran.append(args)
        await asyncio.sleep(10)
        return "never"

    async def crash(args: dict[str, Any]) -> None:
        raise RuntimeError("secret internals")

    schema = {
        "type": "object",
        "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["level"],
        "additionalProperties": False,
    }
    empty = {"type": "object", "properties": {}}
    h.registry.register(Tool("set_level", "set a level", schema, light))
    h.registry.register(Tool("slow", "slow", empty, slow))
    h.registry.register(Tool("crash", "crash", empty, crash))
    task = asyncio.create_task(h.dispatcher.run())
    await asyncio.sleep(0)
    yield h
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ok_result(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("c1", "set_level", {"level": 5})])
    await h.settle(1)
    assert h.responses == [ToolResponse("c1", "set_level", {"output": {"level": 5}}, "WHEN_IDLE")]
    assert h.metrics.value("edge_tool_calls_total", tool="set_level", outcome="ok") == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [({"level": 101}, "level: 101 is greater than the maximum of 100"),
     ({}, "'level' is a required property"),
     ({"level": 5, "door": "open"}, "Additional properties"),
     ({"level": "5"}, "is not of type 'integer'")],
)
async def test_invalid_arguments_never_run(h: Harness, args: dict[str, Any], fragment: str) -> None:
    h.dispatcher.submit([FunctionCall("c1", "set_level", args)])
    await h.settle(1)
    assert h.ran == []
    assert len(h.responses) == 1
    assert "invalid arguments" in h.responses[0].response["error"]
    assert fragment in h.responses[0].response["error"]
    assert h.outcomes == [("c1", "invalid")]


async def test_unknown_tool_gets_an_error(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("c1", "open_pod_bay_doors", {})])
    await h.settle(1)
    assert "unknown tool" in h.responses[0].response["error"]
    assert h.metrics.value("edge_tool_calls_total", tool="unknown", outcome="invalid") == 1


async def test_tool_error_and_crash(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("a", "set_level", {"level": 13}), FunctionCall("b", "crash", {})])
    await h.settle(2)
    by_id = {r.id: r.response for r in h.responses}
    assert by_id["a"] == {"error": "unlucky level"}
    assert by_id["b"] == {"error": "internal error (RuntimeError)"}


@pytest.mark.parametrize(
    "result", [{1, 2}, float("nan"), {"when": object()}, b"raw", {"inf": float("inf")}],
    ids=["set", "nan", "object", "bytes", "inf"],
)
async def test_a_result_that_is_not_json_is_answered_with_an_error(h: Harness, result: Any) -> None:
    async def odd(_: dict[str, Any]) -> Any:
        return result

    h.registry.register(Tool("odd", "returns something JSON cannot hold", {"type": "object"}, odd))
    h.dispatcher.submit([FunctionCall("c1", "odd", {})])
    await h.settle(1)
    (resp,) = h.responses
    assert resp == ToolResponse("c1", "odd", {"error": "internal error (the result is not JSON)"},
                                "WHEN_IDLE")
    json.dumps(resp.response, allow_nan=False)  # what goes to the link always encodes
    assert h.outcomes == [("c1", "bad_result")]
    assert h.metrics.value("edge_tool_calls_total", tool="odd", outcome="bad_result") == 1


async def test_deadline_gives_timeout(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("c1", "slow", {})])
    await h.settle(1)
    assert h.responses[0].response == {"error": "timed out after 0.3 s"}
    assert h.outcomes == [("c1", "timeout")]


async def test_cancellation_by_model_sends_nothing(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("c1", "slow", {}), FunctionCall("c2", "set_level", {"level": 1})])
    await asyncio.sleep(0.02)
    h.dispatcher.cancel(["c1"])
    await h.settle(2)
    assert [r.id for r in h.responses] == ["c2"]
    assert ("c1", "cancelled") in h.outcomes
    assert h.dispatcher.in_flight == 0


async def test_interrupted_calls_answer_silently(h: Harness) -> None:
    gate = asyncio.Event()

    async def waits(_: dict[str, Any]) -> str:
        await gate.wait()
        return "done"

    h.registry.register(Tool("waits", "w", {"type": "object"}, waits))
    h.dispatcher.submit([FunctionCall("c1", "waits", {})])
    await asyncio.sleep(0.01)
    h.dispatcher.mark_interrupted()
    h.dispatcher.submit([FunctionCall("c2", "waits", {})])
    gate.set()
    await h.settle(2)
    sched = {r.id: r.scheduling for r in h.responses}
    assert sched == {"c1": "SILENT", "c2": "WHEN_IDLE"}


async def test_duplicate_call_id_answered_once(h: Harness) -> None:
    h.dispatcher.submit([FunctionCall("c1", "set_level", {"level": 1})])
    await h.settle(1)
    h.dispatcher.submit([FunctionCall("c1", "set_level", {"level": 2})])
    await h.settle(2)
    assert len(h.responses) == 1
    assert h.outcomes[-1] == ("c1", "duplicate")


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


def test_registry_rejects_bad_tools() -> None:
    r = ToolRegistry()

    async def noop(_: dict[str, Any]) -> None:
        return None

    with pytest.raises(ValueError, match="name"):
        r.register(Tool("bad name!", "d", {"type": "object"}, noop))
    with pytest.raises(ValueError, match="type object"):
        r.register(Tool("t", "d", {"type": "string"}, noop))
    with pytest.raises(ValueError, match="invalid schema"):
        r.register(Tool("t", "d", {"type": "object", "properties": {"a": {"type": 5}}}, noop))
    assert r.names() == []


def test_registry_notifies_listeners() -> None:
    r = ToolRegistry()
    seen: list[int] = []
    r.add_listener(lambda: seen.append(1))

    async def noop(_: dict[str, Any]) -> None:
        return None

    r.register(Tool("t", "d", {"type": "object"}, noop))
    r.unregister("t")
    r.unregister("t")
    assert seen == [1, 1]

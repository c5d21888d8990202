"""The tool registry and dispatcher: validation, one answer per call, cancellation.

Deadlines and waits on the clock, and the home's tools on a real broker:
tests/integration/test_tools.py.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.live.calls import FunctionCall, ToolResponse
from daemon.ops.metrics import Metrics
from daemon.tools.registry import Tool, ToolRegistry
from tests.support.tools import Harness, Readiness, harness

pytestmark = pytest.mark.timeout(15)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as h:
        yield h


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


async def test_a_server_repeating_a_call_is_logged_seldom(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.dispatcher.submit([FunctionCall("c1", "set_level", {"level": 1})])
    await h.settle(1)
    with caplog.at_level("WARNING"):
        for _ in range(100):
            h.dispatcher.submit([FunctionCall("c1", "set_level", {"level": 2})])
    assert [o for o in h.outcomes if o[1] == "duplicate"] == [("c1", "duplicate")] * 100
    lines = [r.getMessage() for r in caplog.records if "repeated" in r.getMessage()]
    assert len(lines) == 7 and lines[-1].endswith("(64 so far)")


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


# -- bounded metric series -----------------------------------------------------------


def _series(metrics: Metrics, name: str) -> set[str]:
    """The `tool` label values of every sample of metric family `name`."""
    return {
        sample.labels["tool"]
        for family in metrics.registry.collect()
        if family.name == name
        for sample in family.samples
        if "tool" in sample.labels
    }


async def test_invented_tool_names_share_one_series(h: Harness) -> None:
    """A series per name the model invents would grow /metrics without bound."""
    for first in (0, 25):  # in two turns: at most MAX_IN_FLIGHT (32) run at once
        h.dispatcher.submit([FunctionCall(f"c{i}", f"made_up_{i}", {})
                             for i in range(first, first + 25)])
        await h.settle(first + 25)
    h.dispatcher.submit([FunctionCall("ok", "set_level", {"level": 1})])
    await h.settle(51)
    allowed = {*h.registry.names(), "unknown"}
    assert _series(h.metrics, "edge_tool_calls") <= allowed
    assert _series(h.metrics, "edge_tool_call_seconds") == {"set_level", "unknown"}
    assert h.metrics.value("edge_tool_calls_total", tool="unknown", outcome="invalid") == 50
    assert h.metrics.value("edge_tool_call_seconds_count", tool="unknown") == 50
    assert "made_up" not in h.metrics.render().decode()


async def test_once_ready_an_unknown_tool_is_answered_at_once(h: Harness) -> None:
    ready = Readiness()
    ready.event.set()
    h.dispatcher.wait_for_tools(ready, timeout=5.0)
    h.dispatcher.submit([FunctionCall("c1", "open_pod_bay_doors", {}),
                         FunctionCall("c2", "set_level", {"level": 2})])
    await h.settle(2)
    assert "unknown tool" in {r.id: r for r in h.responses}["c1"].response["error"]
    assert ready.asked == [0]  # asked once without waiting; a known tool never asks
    assert h.metrics.value("edge_tool_ready_waits_total", result="ready") == 0
    assert h.metrics.value("edge_tool_ready_waits_total", result="timeout") == 0


async def test_a_failing_readiness_hook_still_gets_the_call_answered(h: Harness) -> None:
    async def broken(_timeout: float) -> bool:
        raise OSError("broker gone")

    h.dispatcher.wait_for_tools(broken)
    h.dispatcher.submit([FunctionCall("c1", "control_device", {})])
    await h.settle(1)
    assert "unknown tool" in h.responses[0].response["error"]
    assert h.metrics.value("edge_tool_ready_waits_total", result="timeout") == 1

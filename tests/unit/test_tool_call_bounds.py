"""What a server flooding tool calls, or sending absurd call fields, can cost: bounded.

Calls in flight are capped (the rest answered at once, each still exactly once); a call
id too long to store is dropped, an absurd tool name is cut and never echoed whole; the
stored session record always stays loadable, and what it leaves out is counted.

With the fake Live server and the real SDK: tests/integration/test_live_call_floods.py.
(Each case failed before: review of the resource bounds.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.calls import FunctionCall
from daemon.live.events import ToolCallCancelled, ToolCallRequest
from daemon.live.session_record import MAX_OPEN_CALLS, RECORD, SessionKeeper
from daemon.ops.metrics import Metrics
from daemon.ops.state import MAX_RECORD_BYTES, StateStore
from daemon.tools.dispatch import BUSY_ANSWER, MAX_IN_FLIGHT
from daemon.tools.registry import ToolRegistry
from tests.support.tools import Harness, harness

pytestmark = pytest.mark.timeout(20)

NOW = 1_800_000_000.0
SETTINGS = LiveSettings(base_url="https://live.example:8443", resume_save_interval=60.0)
LEFT_OUT = "edge_live_session_calls_left_out_total"


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as h:
        yield h


# -- calls in flight ------------------------------------------------------------------
async def test_calls_beyond_the_bound_are_refused_at_once_and_each_answered_once(
    h: Harness,
) -> None:
    n = 4 * MAX_IN_FLIGHT
    h.dispatcher.submit([FunctionCall(f"c{i}", "slow", {}) for i in range(n)])
    assert h.dispatcher.in_flight == MAX_IN_FLIGHT
    refused = [r for r in h.responses if r.response == BUSY_ANSWER]
    assert [r.id for r in refused] == [f"c{i}" for i in range(MAX_IN_FLIGHT, n)]
    assert {r.scheduling for r in refused} == {"WHEN_IDLE"}
    assert h.metrics.value("edge_tool_calls_total", tool="slow",
                           outcome="refused_busy") == n - MAX_IN_FLIGHT
    await asyncio.sleep(0.05)
    assert len(h.ran) == MAX_IN_FLIGHT  # the refused ones never ran
    h.dispatcher.submit([FunctionCall(f"c{n - 1}", "slow", {})])  # a refused call, again
    await h.settle(n + 1)  # the running ones time out (0.3 s): answered too
    assert sorted(r.id for r in h.responses) == sorted(f"c{i}" for i in range(n))
    assert h.outcomes[n - MAX_IN_FLIGHT] == (f"c{n - 1}", "duplicate")
    # room again: the next call runs
    h.dispatcher.submit([FunctionCall("later", "set_level", {"level": 3})])
    await h.settle(n + 2)
    assert h.responses[-1].response == {"output": {"level": 3}}


# -- absurd call fields -----------------------------------------------------------------
def test_an_unknown_tool_with_a_huge_name_is_not_echoed_whole() -> None:
    registry = ToolRegistry()
    with pytest.raises(Exception, match="unknown tool") as info:
        registry.validate("n" * 2_000_000, {})
    assert len(str(info.value)) < 300


def _tool_call(*calls: dict[str, Any]) -> types.LiveServerMessage:
    return types.LiveServerMessage.model_validate({"tool_call": {"function_calls": list(calls)}})


def test_a_call_id_too_long_to_store_is_dropped_and_named() -> None:
    events, ctl = wire.translate(_tool_call({"id": "ok-1", "name": "slow", "args": {}},
                                            {"id": "i" * 100_000, "name": "slow"}))
    assert events == [ToolCallRequest((FunctionCall("ok-1", "slow", {}),))]
    assert ctl.call_ids == ["ok-1"] and ctl.dropped == ["call_id_too_long"]
    events, ctl = wire.translate(_tool_call({"id": "i" * 100_000, "name": "slow"}))
    assert events == [] and ctl.call_ids == [] and ctl.dropped == ["call_id_too_long"]


def test_a_huge_tool_name_is_cut_so_the_call_is_answered_unknown() -> None:
    events, ctl = wire.translate(_tool_call({"id": "u-1", "name": "n" * 2_000_000}))
    (ev,) = events
    assert isinstance(ev, ToolCallRequest)
    assert ev.calls == (FunctionCall("u-1", "n" * wire.MAX_CALL_NAME_CHARS, {}),)
    assert ctl.call_names == {"u-1": "n" * wire.MAX_CALL_NAME_CHARS}
    assert ctl.dropped == ["call_name_too_long"]


def test_a_cancellation_of_an_id_too_long_cancels_nothing() -> None:
    events, ctl = wire.translate(types.LiveServerMessage.model_validate(
        {"tool_call_cancellation": {"ids": ["a", "i" * 100_000]}}))
    assert events == [ToolCallCancelled(("a",))] and ctl.cancelled_ids == ["a"]


# -- the stored record ------------------------------------------------------------------
def _keeper(tmp_path: Path, metrics: Metrics) -> SessionKeeper:
    return SessionKeeper(StateStore(tmp_path), SETTINGS, metrics, clock=lambda: NOW)


def _stored(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / f"{RECORD}.json").read_text())
    return data


def test_open_calls_beyond_the_record_are_counted_once(tmp_path: Path) -> None:
    metrics = Metrics()
    k = _keeper(tmp_path, metrics)
    calls = {f"c{i:03d}": "slow" for i in range(100)}
    k.issued("h1", calls)
    k.flush()
    assert [c["id"] for c in _stored(tmp_path)["open_calls"]] == list(calls)[:MAX_OPEN_CALLS]
    assert metrics.value(LEFT_OUT) == 100 - MAX_OPEN_CALLS
    k.calls_changed(calls)  # the same calls left out again: not counted again
    assert metrics.value(LEFT_OUT) == 100 - MAX_OPEN_CALLS
    k.calls_changed({**calls, "c999": "slow"})
    assert metrics.value(LEFT_OUT) == 100 - MAX_OPEN_CALLS + 1


@pytest.mark.parametrize("odd", ["i" * 100_000, "\x00" * 12_000, ""],
                         ids=["100 KB id", "escaped id", "empty id"])
def test_a_record_the_loader_would_refuse_is_never_written(tmp_path: Path, odd: str) -> None:
    """A 100 KB id made the record 100 KB: refused at the next start, handle and all."""
    metrics = Metrics()
    k = _keeper(tmp_path, metrics)
    k.issued("h1", {"ok-1": "slow", odd: "slow", "ok-2": "slow"})
    k.flush()
    assert (tmp_path / f"{RECORD}.json").stat().st_size <= MAX_RECORD_BYTES
    assert metrics.value(LEFT_OUT) == 1
    stored = _keeper(tmp_path, Metrics()).load()
    assert stored is not None and stored.handle == "h1"
    assert stored.open_calls == (("ok-1", "slow"), ("ok-2", "slow"))


def test_many_escaped_calls_fill_the_record_but_never_overflow_it(tmp_path: Path) -> None:
    metrics = Metrics()
    k = _keeper(tmp_path, metrics)
    calls = {f"{i:03d}" + "\x01" * 250: "n" * 128 for i in range(MAX_OPEN_CALLS)}
    k.issued("h" * 4096, calls)
    k.flush()
    assert (tmp_path / f"{RECORD}.json").stat().st_size <= MAX_RECORD_BYTES
    stored = _keeper(tmp_path, Metrics()).load()
    assert stored is not None and 0 < len(stored.open_calls) < MAX_OPEN_CALLS
    assert metrics.value(LEFT_OUT) == MAX_OPEN_CALLS - len(stored.open_calls)


def test_a_handle_the_loader_would_refuse_keeps_the_record_on_disk(tmp_path: Path) -> None:
    metrics = Metrics()
    k = _keeper(tmp_path, metrics)
    k.issued("h1", {"ok-1": "slow"})
    k.flush()
    k.issued("h" * 5000, {"ok-1": "slow"})
    k.flush()
    assert metrics.value("edge_live_session_writes_total", result="failed") == 1
    stored = _keeper(tmp_path, Metrics()).load()
    assert stored is not None and stored.handle == "h1"


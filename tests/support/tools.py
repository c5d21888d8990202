"""A `ToolDispatcher` harness for the tool tests, and the readiness hook they hold calls on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.live.calls import ToolResponse
from daemon.ops.metrics import Metrics
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import Tool, ToolError, ToolRegistry


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


@contextlib.asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    """A running dispatcher with three tools: `set_level` (13 raises a ToolError),
    `slow` (sleeps past its 0.3 s deadline) and `crash` (raises)."""
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
    try:
        yield h
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class Readiness:
    """The readiness hook the daemon passes in (HomeService.wait_ready's contract)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.asked: list[float] = []

    async def __call__(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.asked.append(timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.event.wait()
        return self.event.is_set()

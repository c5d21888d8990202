"""Runs the model's tool calls: one task each, a deadline each, exactly one answer each.

The answer is a result, an error, a timeout, or the model's own cancellation
(toolCallCancellation: the server no longer waits, so nothing is sent back).
Answers to calls that were running when the user interrupted the model go back
SILENT, so the model does not start talking over the user again. A result that
is not JSON (a set, NaN, an object) is answered with an error here: sent as it
is, it would fail in the link's send loop, not in the tool that made it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from daemon.ops.metrics import Metrics
from daemon.tools.calls import FunctionCall, ToolResponse
from daemon.tools.registry import InvalidArguments, ToolError, ToolRegistry

log = logging.getLogger(__name__)

_REMEMBERED_IDS = 512


Observer = Callable[[FunctionCall, str, dict[str, Any] | None], None]


class ToolDispatcher:
    def __init__(
        self,
        registry: ToolRegistry,
        metrics: Metrics,
        respond: Callable[[ToolResponse], None],
        observer: Observer | None = None,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._respond = respond
        self._observer = observer
        self._tg: asyncio.TaskGroup | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._interrupt_epoch = 0

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Own the call tasks; cancelling this cancels every call still running."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                await asyncio.Future()
            finally:
                self._tg = None

    def submit(self, calls: Iterable[FunctionCall]) -> None:
        if self._tg is None:
            raise RuntimeError("ToolDispatcher.run() is not running")
        for call in calls:
            if call.id in self._seen:
                self._finish(call, "duplicate", None)
                log.warning("tool call %s (%s) repeated; already answered once", call.id, call.name)
                continue
            self._seen[call.id] = None
            while len(self._seen) > _REMEMBERED_IDS:
                self._seen.popitem(last=False)
            task = self._tg.create_task(
                self._run_call(call, self._interrupt_epoch), name=f"tool:{call.name}:{call.id}"
            )
            self._running[call.id] = task
            task.add_done_callback(functools.partial(self._on_done, call))

    def _on_done(self, call: FunctionCall, task: asyncio.Task[None]) -> None:
        """A call cancelled before or while running: the model's cancel, or shutdown."""
        if self._running.pop(call.id, None) is not None:
            self._finish(call, "cancelled", None)

    def cancel(self, ids: Iterable[str]) -> None:
        for call_id in ids:
            task = self._running.get(call_id)
            if task is not None and not task.done():
                task.cancel()

    def mark_interrupted(self) -> None:
        self._interrupt_epoch += 1

    async def _run_call(self, call: FunctionCall, epoch: int) -> None:
        started = time.monotonic()
        response: dict[str, Any]
        tool = self._registry.get(call.name)
        deadline = (tool.deadline if tool else None) or self._registry.default_deadline
        try:
            args = self._registry.validate(call.name, call.args)
            assert tool is not None
            async with asyncio.timeout(deadline):
                result = await tool.handler(args)
            response, outcome = _checked({"output": result}, call.name), "ok"
        except _NotJson:
            response, outcome = {"error": "internal error (the result is not JSON)"}, "bad_result"
        except InvalidArguments as exc:
            response, outcome = {"error": f"invalid arguments: {exc}"}, "invalid"
        except ToolError as exc:
            response, outcome = {"error": str(exc)}, "error"
        except TimeoutError:
            response, outcome = {"error": f"timed out after {deadline:g} s"}, "timeout"
        except Exception as exc:
            log.exception("tool %s failed", call.name)
            response, outcome = {"error": f"internal error ({type(exc).__name__})"}, "error"
        self._running.pop(call.id, None)
        self._metrics.tool_seconds.labels(call.name).observe(time.monotonic() - started)
        if tool is not None and tool.blocking:
            scheduling = None
        else:
            scheduling = "SILENT" if epoch != self._interrupt_epoch else "WHEN_IDLE"
        self._respond(ToolResponse(call.id, call.name, response, scheduling))
        self._finish(call, outcome, response)

    def _finish(self, call: FunctionCall, outcome: str, response: dict[str, Any] | None) -> None:
        known = call.name if self._registry.get(call.name) else "unknown"
        self._metrics.tool_calls.labels(known, outcome).inc()
        if self._observer is not None:
            self._observer(call, outcome, response)


class _NotJson(Exception):
    pass


def _checked(response: dict[str, Any], tool: str) -> dict[str, Any]:
    """The response if it encodes as strict JSON (what the Live API reads); else _NotJson."""
    try:
        json.dumps(response, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("tool %s returned a result that is not JSON (%s); answering with an error",
                  tool, str(exc)[:120])
        raise _NotJson from None
    return response

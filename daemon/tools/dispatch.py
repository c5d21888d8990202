"""Runs the model's tool calls: one task each, a deadline each, exactly one answer each.

The answer is a result, an error, a timeout, or the model's own cancellation
(toolCallCancellation: the server no longer waits, so nothing is sent back).
Answers to calls that were running when the user interrupted the model go back
SILENT, so the model does not start talking over the user again. A result that
is not JSON (a set, NaN, an object) is answered with an error here: sent as it
is, it would fail in the link's send loop, not in the tool that made it.

Metrics name a tool only if the registry knows it: the model can invent any name,
and a series per invented name would grow without bound. Right after start the
home's device tools are not registered yet (they wait for the MQTT inventory's
first read), so a call to a tool not (yet) known waits, bounded, for the tools to
be ready before it is answered "unknown tool".

At most MAX_IN_FLIGHT calls run at once. The model makes a handful in parallel;
a server that sends thousands in one message would otherwise get a task (and
later an answer in the link's buffers) for each before any is answered. A call
beyond the bound is answered at once with BUSY_ANSWER, which the model can read
and act on, and counted (outcome "refused_busy"): still exactly one answer.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from daemon.live.calls import FunctionCall, ToolResponse
from daemon.ops.lograte import seldom
from daemon.ops.logsetup import clip
from daemon.ops.metrics import Metrics
from daemon.tools.registry import InvalidArguments, Tool, ToolError, ToolRegistry

log = logging.getLogger(__name__)

_REMEMBERED_IDS = 512
UNKNOWN_TOOL = "unknown"
"""The metric label of every tool name the registry does not know."""
READY_WAIT = 5.0
"""How long a call to a tool not yet registered waits for the tools to be ready."""
MAX_IN_FLIGHT = 32
"""Calls running at once; more are refused (answered BUSY_ANSWER at once)."""
BUSY_ANSWER = {"error": "too many tool calls at once; try fewer"}


Observer = Callable[[FunctionCall, str, dict[str, Any] | None], None]
ReadyHook = Callable[[float], Awaitable[bool]]
"""`await hook(timeout)`: True once every tool that will come is registered, False if
not within `timeout` seconds (0: at once, without waiting)."""


class ToolDispatcher:
    """Runs each tool call in its own task and sends exactly one answer for it."""

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
        self._repeats = 0  # repeated call ids, answered "duplicate"
        self._refused = 0  # calls beyond MAX_IN_FLIGHT, answered BUSY_ANSWER
        self._interrupt_epoch = 0
        self._ready: ReadyHook | None = None
        self._ready_wait = READY_WAIT

    def wait_for_tools(self, ready: ReadyHook, timeout: float = READY_WAIT) -> None:
        """Hold calls to unknown tools up to `timeout` s until `ready` says all are in."""
        self._ready = ready
        self._ready_wait = timeout

    @property
    def in_flight(self) -> int:
        """How many calls are running now."""
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
        """Start the calls; a repeated call id is answered "duplicate" and not run again,
        and one beyond MAX_IN_FLIGHT running is answered BUSY_ANSWER at once."""
        if self._tg is None:
            raise RuntimeError("ToolDispatcher.run() is not running")
        for call in calls:
            if call.id in self._seen:
                self._finish(call, "duplicate", None)
                self._repeats += 1
                if seldom(self._repeats):  # a server repeating itself must not fill the log
                    log.warning("tool call %s (%s) repeated; already answered once (%d so far)",
                                call.id, call.name, self._repeats)
                continue
            self._seen[call.id] = None
            while len(self._seen) > _REMEMBERED_IDS:
                self._seen.popitem(last=False)
            if len(self._running) >= MAX_IN_FLIGHT:
                self._refuse(call)
                continue
            task = self._tg.create_task(
                self._run_call(call, self._interrupt_epoch), name=f"tool:{call.name}:{call.id}"
            )
            self._running[call.id] = task
            task.add_done_callback(functools.partial(self._on_done, call))

    def _refuse(self, call: FunctionCall) -> None:
        """Too many calls running: answer this one now, with an error the model can read."""
        self._refused += 1
        if seldom(self._refused):  # a flood must not fill the log
            log.warning("tool call %s (%s) refused: %d calls already running (%d refused so "
                        "far)", call.id, call.name, len(self._running), self._refused)
        response = dict(BUSY_ANSWER)
        scheduling = self._scheduling(self._registry.get(call.name), self._interrupt_epoch)
        self._respond(ToolResponse(call.id, call.name, response, scheduling))
        self._finish(call, "refused_busy", response)

    def _on_done(self, call: FunctionCall, task: asyncio.Task[None]) -> None:
        """A call cancelled before or while running: the model's cancel, or shutdown."""
        if self._running.pop(call.id, None) is not None:
            self._finish(call, "cancelled", None)

    def cancel(self, ids: Iterable[str]) -> None:
        """Cancel the calls the model withdrew; they get no answer (the model no longer waits)."""
        for call_id in ids:
            task = self._running.get(call_id)
            if task is not None and not task.done():
                task.cancel()

    def mark_interrupted(self) -> None:
        """The user interrupted the model: answers to calls running now go back SILENT."""
        self._interrupt_epoch += 1

    async def _tool(self, name: str) -> Tool | None:
        """The registered tool, after waiting (bounded) for the tools if not ready yet."""
        tool = self._registry.get(name)
        if tool is not None or self._ready is None:
            return tool
        try:
            if await self._ready(0):
                return None  # all tools are in: the name is unknown
            ready = await self._ready(self._ready_wait)
        except Exception:
            log.exception("waiting for the tools to be ready failed")
            ready = False
        self._metrics.tool_ready_waits.labels("ready" if ready else "timeout").inc()
        return self._registry.get(name)

    async def _run_call(self, call: FunctionCall, epoch: int) -> None:
        started = time.monotonic()
        response: dict[str, Any]
        tool = await self._tool(call.name)
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
        self._metrics.tool_seconds.labels(self._label(call.name)).observe(
            time.monotonic() - started
        )
        self._respond(ToolResponse(call.id, call.name, response, self._scheduling(tool, epoch)))
        self._finish(call, outcome, response)

    def _scheduling(self, tool: Tool | None, epoch: int) -> str | None:
        """None for a blocking tool; SILENT if the user interrupted since the call came."""
        if tool is not None and tool.blocking:
            return None
        return "SILENT" if epoch != self._interrupt_epoch else "WHEN_IDLE"

    def _label(self, name: str) -> str:
        """The tool's name if registered, else UNKNOWN_TOOL: series bounded by the registry."""
        return name if self._registry.get(name) is not None else UNKNOWN_TOOL

    def _finish(self, call: FunctionCall, outcome: str, response: dict[str, Any] | None) -> None:
        self._metrics.tool_calls.labels(self._label(call.name), outcome).inc()
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
                  tool, clip(str(exc), 120))
        raise _NotJson from None
    return response

"""The daemon itself, wired: peripheral, Live link, Agent, home and ops in one TaskGroup.

`edge-agent run` and the simulator's `demo` both come here; the CLI around it only
parses, loads the configuration and maps errors to exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import ssl
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from daemon.config import ConfigError, Settings
from daemon.errors import EdgeAgentError
from daemon.media.held_sink import EarlyRun, HeldSink
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore, state_dir_from
from daemon.ops.switches import saved_switches

if TYPE_CHECKING:  # imported by `serve`: the Agent brings the Live SDK (~0.3 s, ~20 MB)
    from daemon.agent import Agent
    from daemon.home.service import HomeService
    from daemon.live.calls import FunctionCall, ToolResponse
    from daemon.peripherals.base import Peripheral
    from daemon.tasks.fallback import FallbackRoad
    from daemon.tasks.manager import TaskManager

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "UsageError", "run_until_signal", "serve"]

log = logging.getLogger("daemon")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
# What `_serve` imports, the Live SDK among them: on a thread while the glasses connect.
AGENT_MODULES = ("daemon.agent", "daemon.live.link", "daemon.tools.registry")


class UsageError(EdgeAgentError):
    """Bad usage or configuration found after parsing: exit 2 with this line."""


def run_until_signal(coro: Coroutine[Any, Any, int]) -> int:
    """Run until done, SIGTERM or SIGINT; a signal means a clean stop (exit 0)."""

    async def wrapper() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                log.info("stopping")
                task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        try:
            return await coro
        except asyncio.CancelledError:
            if stopping:
                return EXIT_OK
            raise
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(wrapper())



async def serve(
    settings: Settings,
    key: SecretStr,
    *,
    exit_when_idle: float | None = None,
    printer: Any = None,
    input_done: asyncio.Event | None = None,
    speaker_wav: Path | None = None,
) -> int:
    """Run the daemon until cancelled (or, for the demo, until input ended and all went
    quiet). `printer`, `input_done` and `speaker_wav` are the demo's hooks."""
    from daemon.live.tls import client_context

    # Loading CA files is mostly outside the GIL: beside the imports that follow.
    tls = asyncio.create_task(asyncio.to_thread(client_context, settings.live), name="tls")
    early: EarlyRun | None = None
    peripheral: Peripheral | None = None
    try:
        metrics, state = Metrics(), _state_store(settings)
        peripheral = _peripheral(settings, state, speaker_wav)
        early = _start_early(peripheral, state)
        if early is not None:  # the radio's round trips overlap the SDK's import
            await import_beside(AGENT_MODULES)
        return await _serve(settings, key, peripheral, metrics, state, early=early,
                            tls=await tls,
                            exit_when_idle=exit_when_idle, printer=printer,
                            input_done=input_done)
    finally:
        if early is not None and peripheral is not None:  # also a start that failed
            await early.stop()  # before the Agent took it over
            peripheral.close()  # idempotent: `_serve` closes it too once it got that far
        await _settled(tls)


async def _settled(work: asyncio.Future[Any]) -> None:
    """Wait for a start-up thread's work, whatever became of the start: a thread still
    inside OpenSSL while the interpreter exits can crash it (a bad peripheral's exit 2
    became SIGSEGV). The default executor, which `asyncio.run` joins at its end, runs
    it; waiting here also keeps its error from being reported as never retrieved."""
    with contextlib.suppress(BaseException):
        await asyncio.shield(work)
    if work.done() and not work.cancelled():
        work.exception()  # retrieved: the start that needed it has already failed


def _start_early(peripheral: Peripheral, state: StateStore) -> EarlyRun | None:
    """Glasses: start the peripheral now, before the Agent (and the Live SDK, ~0.3 s of
    imports) exists, so that scanning and connecting, mostly waiting on the radio, run
    while the SDK imports; what they deliver meanwhile is held for the Agent. Other
    peripherals have nothing to wait for and start with the Agent."""
    if peripheral.kind != "ble":
        return None
    if not saved_switches(state)[1]:  # as the Agent would, but before the glasses connect
        peripheral.set_camera_enabled(False)
    sink = HeldSink()
    return EarlyRun(asyncio.create_task(peripheral.run(sink), name="peripheral-early"), sink)


async def import_beside(modules: Sequence[str]) -> None:
    """Import `modules` on a thread while the event loop goes on serving (the glasses'
    set-up). Imports hold the GIL, so only the loop's waits overlap them; a shorter
    switch interval (1 ms) was measured slower than the default 5 ms (bench/RESULTS.md)."""
    await asyncio.to_thread(lambda: [importlib.import_module(name) for name in modules])


def _peripheral(settings: Settings, state: StateStore, speaker_wav: Path | None) -> Peripheral:
    from daemon.peripherals import PeripheralUnavailable, make_peripheral

    try:
        peripheral = make_peripheral(settings.peripheral, state=state)
    except PeripheralUnavailable as exc:
        raise UsageError(str(exc)) from None
    if speaker_wav is not None:  # the demo's glasses have no speaker: a WAV stands in
        from daemon.peripherals.ble.peripheral import BlePeripheral
        from daemon.peripherals.file import FilePeripheral

        assert isinstance(peripheral, BlePeripheral)
        peripheral.speaker_fallback = FilePeripheral(None, speaker_wav)
    return peripheral


async def _serve(
    settings: Settings,
    key: SecretStr,
    peripheral: Peripheral,
    metrics: Metrics,
    state: StateStore,
    *,
    exit_when_idle: float | None,
    printer: Any,
    input_done: asyncio.Event | None,
    early: EarlyRun | None = None,
    tls: ssl.SSLContext | None = None,
) -> int:
    from daemon.agent import Agent
    from daemon.live.link import LiveFatalError, LiveLink
    from daemon.tools.registry import ToolRegistry

    registry = ToolRegistry(settings.tools.deadline)
    home_tools = _home_tool_names(settings)

    def built_in_tools() -> list[dict[str, Any]]:
        """What the link offers alone if a setup with the home's tools is rejected."""
        return [d for d in registry.declarations() if d["name"] not in home_tools]

    if not state.persistent:
        # A file peripheral (tests, benchmarks) has nothing to pin; a microphone has.
        level = logging.INFO if settings.peripheral.kind == "file" else logging.WARNING
        log.log(level, "no state directory ($STATE_DIRECTORY or ops.state_dir): the pinned "
                "glasses and the microphone and camera switches are kept in memory only")
    link = LiveLink(settings.live, key, metrics, declarations=registry.declarations,
                    fallback_declarations=built_in_tools, state=state, ssl_context=tls)
    agent = Agent(
        link,
        peripheral,
        registry,
        metrics,
        on_event=printer.event if printer else None,
        on_call=printer.call if printer else None,
        state=state,
        early=early,
    )
    # Before the home: Home Assistant's entities follow the status they add.
    tasks, fallback = (_background_tasks(settings, key, metrics, state, agent),
                       _fallback_road(settings, key, metrics, agent))
    home = _home_service(settings, metrics, agent, state)
    if settings.tools.confirm_pin is not None:
        from daemon.home.answers import redact_digits

        agent.text_filter = redact_digits  # a spoken PIN never reaches HA or the status
        if printer is not None:
            printer.text_filter = redact_digits  # nor the demo's transcript
    # A call to control_device before the first inventory read waits for it (bounded).
    for dispatcher in [agent.dispatcher] + ([fallback.dispatcher] if fallback else []):
        dispatcher.wait_for_tools(home.wait_ready if home else _ready)
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(peripheral.close)  # also when the daemon fails to start
            if early is not None:
                stack.push_async_callback(early.stop)  # before the close
            await _start_ops(stack, settings, metrics, agent)
            async with asyncio.TaskGroup() as tg:
                side = ([tg.create_task(home.run(), name="home")] if home else []) + (
                    [tg.create_task(tasks.run(), name="tasks")] if tasks else []) + (
                    [tg.create_task(fallback.run(), name="fallback")] if fallback else [])
                if exit_when_idle is not None and home:  # the demo: let discovery land first
                    await home.wait_ready(timeout=5.0)
                if input_done is not None:
                    tg.create_task(_pause_when(input_done, agent), name="input-done")
                await agent.run(exit_when_idle=exit_when_idle)
                for task in side:
                    task.cancel()
    except* LiveFatalError as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):  # nested task groups nest the error
            first = first.exceptions[0]
        raise UsageError(str(first)) from None
    return EXIT_OK


def _home_tool_names(settings: Settings) -> frozenset[str]:
    """The home's tool names; none without a broker (nothing of the home imported)."""
    if not settings.mqtt.host:
        return frozenset()
    from daemon.home.model_tools import TOOL_NAMES

    return frozenset(TOOL_NAMES)


async def _ready(timeout: float | None = None) -> bool:  # noqa: ASYNC109
    """No home service: no device tools to wait for."""
    return True


def _home_service(
    settings: Settings, metrics: Metrics, agent: Agent, state: StateStore
) -> HomeService | None:
    """The home service with a broker (`mqtt.host`). Without one it would only say so: the
    device tools are off and its own entities have nowhere to go, so neither it nor aiomqtt
    is imported (~60 ms, ~4 MB); /metrics shows the same inventory gauges."""
    if settings.mqtt.host:
        from daemon.home.service import HomeService

        return HomeService(settings, agent.registry, metrics, agent, state=state)
    declared = 0
    if settings.mqtt.devices:  # the home's parsers cost 25-60 ms of start: only when used
        from daemon.home.declared import parse_declared_devices  # already checked at start

        declared = len(parse_declared_devices(settings.mqtt.devices)[0])
    metrics.home_devices.labels("discovery").set(0)
    metrics.home_devices.labels("config").set(declared)
    logging.getLogger("daemon.home.service").info(
        "no MQTT broker configured (mqtt.host): device tools are off")
    return None


def _background_tasks(
    settings: Settings, key: SecretStr, metrics: Metrics, state: StateStore, agent: Agent
) -> TaskManager | None:
    """`[interactions]`: the task manager and its tools, the Agent as its conversation."""
    if not settings.interactions.enabled:
        return None
    from daemon.tasks.client import Endpoint, InteractionsClient
    from daemon.tasks.manager import TaskManager
    from daemon.tasks.metrics import TaskMetrics
    from daemon.tasks.store import TaskStore
    from daemon.tasks.tools import task_tools

    s = settings.interactions
    client = InteractionsClient(s, Endpoint.of(s, settings.live), key)
    manager = TaskManager(s, TaskStore(state.directory), client, TaskMetrics(metrics.registry))
    manager.conversation = agent
    agent.status_extras.append(manager.ha_status)
    photo = agent.camera_photo if agent.peripheral.has_camera else None
    for tool in task_tools(manager, photo):
        agent.registry.register(tool)
    return manager


class FallbackTools:
    """The fallback road's tool runner: the daemon's tools through a dispatcher of its
    own (deadlines, argument checks, metrics as for Live), answers gathered per turn."""

    def __init__(self, agent: Agent) -> None:
        from daemon.tools.dispatch import ToolDispatcher

        self._waiting: dict[str, asyncio.Future[ToolResponse]] = {}
        self.dispatcher = ToolDispatcher(agent.registry, agent.metrics, self._answer)

    def _answer(self, response: ToolResponse) -> None:
        future = self._waiting.pop(response.id, None)
        if future is not None and not future.done():
            future.set_result(response)

    async def __call__(self, calls: Sequence[FunctionCall]) -> list[ToolResponse]:
        """Run the calls; their answers in order (a withdrawn call has none: the turn's
        deadline bounds the wait)."""
        loop = asyncio.get_running_loop()
        futures = [self._waiting.setdefault(c.id, loop.create_future()) for c in calls]
        try:
            self.dispatcher.submit(calls)
            return list(await asyncio.gather(*futures))
        finally:
            for call in calls:
                self._waiting.pop(call.id, None)


class _Fallback:
    """The road and its tool runner, run together."""

    def __init__(self, road: FallbackRoad, tools: FallbackTools) -> None:
        self.road = road
        self.dispatcher = tools.dispatcher

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.dispatcher.run(), name="fallback-tools")
            tg.create_task(self.road.run(), name="fallback-road")


def _fallback_road(settings: Settings, key: SecretStr, metrics: Metrics,
                   agent: Agent) -> _Fallback | None:
    """`[interactions] fallback`: turn-based through the Interactions API while Live is down;
    off, none of it is imported or run."""
    if not settings.interactions.fallback:
        return None
    from daemon.tasks.client import Endpoint, InteractionsClient
    from daemon.tasks.fallback import FallbackRoad
    from daemon.tasks.metrics import FallbackMetrics

    s = settings.interactions
    client = InteractionsClient(s, Endpoint.of(s, settings.live), key)
    tools = FallbackTools(agent)
    road = FallbackRoad(s, client, agent.link, agent.peripheral, tools,
                        agent.registry.declarations, FallbackMetrics(metrics.registry))
    agent.road = road
    agent.status_extras.append(road.status)
    return _Fallback(road, tools)


def _state_store(settings: Settings) -> StateStore:
    """The state directory (`$STATE_DIRECTORY`, else `ops.state_dir`), or memory only.

    Without one, `serve` says so once the configuration has been accepted. One that is
    set must work (a ConfigError, exit 2): a daemon that cannot keep its pin, switches
    and session would forget them at the next restart without a word at start.
    """
    store = StateStore(state_dir_from(settings.ops.state_dir, os.environ))
    if store.directory is not None:
        ok, why = store.writable()
        if not ok:
            key = "$STATE_DIRECTORY" if os.environ.get("STATE_DIRECTORY") else "ops.state_dir"
            raise ConfigError(f"{key}: {why}")
    return store


async def _pause_when(done: asyncio.Event, agent: Agent) -> None:
    """A simulated source that cannot say so itself has ended (the demo's glasses)."""
    await done.wait()
    agent.input_paused()


def _runtime_status() -> dict[str, int]:
    """Live asyncio tasks and threads, read at scrape time: a leak shows as a rising floor."""

    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # scraped outside the event loop: nothing to count
        return {"threads": threading.active_count()}
    return {"asyncio_tasks": tasks, "threads": threading.active_count()}


async def _start_ops(
    stack: contextlib.AsyncExitStack, settings: Settings, metrics: Metrics, agent: Agent
) -> None:
    """Crash logging, the health endpoint, systemd readiness and its watchdog."""
    from daemon.ops import health, logsetup, memdump, systemd

    logsetup.install_asyncio_handler()
    memdump.install(asyncio.get_running_loop())  # only under PYTHONTRACEMALLOC
    metrics.add_status_source("runtime", _runtime_status)
    server = health.health_server_from_settings(settings.ops, metrics, agent.healthy)
    if server is not None:
        try:
            await stack.enter_async_context(server)
        except OSError as exc:
            raise UsageError(
                f"ops.health_port: cannot listen on 127.0.0.1:{settings.ops.health_port} "
                f"({exc.strerror or exc})"
            ) from None
        log.info("health endpoint on http://127.0.0.1:%d/healthz", server.port)
    systemd.ready()
    stack.callback(systemd.stopping)
    if systemd.watchdog_interval() is not None:
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        task = tg.create_task(systemd.watchdog_loop(lambda: agent.link.state != "failed"))
        stack.callback(task.cancel)



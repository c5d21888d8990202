"""The home on loopback, for the home tool, service and safety tests.

A `Rig` is the real thing on loopback: a private mosquitto, the virtual home, a
running `HomeService` with its device tools in a `ToolRegistry`, a
`ToolDispatcher` to call them as the Live link would, and a `Watcher` subscribed
to `#` that records every message the broker delivers, whoever published it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from daemon.agent import Agent
from daemon.config import MqttSettings, PeripheralSettings, Settings, ToolsSettings
from daemon.home.confirm import ConfirmationBook, ConfirmationGate
from daemon.home.consent import ECHO_TAIL_SECONDS, ConsentTracker
from daemon.home.discovery import Discovered
from daemon.home.sensitivity import Entity, SensitivityPolicy
from daemon.home.service import HomeService
from daemon.live.calls import FunctionCall, ToolResponse
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from daemon.peripherals.base import MediaSink, Peripheral
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import ToolRegistry
from simulator.broker import PrivateBroker
from simulator.home import VirtualDevice, VirtualHome, default_devices, extra_devices
from tests.support.mqtt import Proxy, Watcher, fast_connection
from tests.support.waiting import eventually

CLIENT_ID = "edge-test"


class FakeUser:
    """The user beside the conversation, for tests without an Agent.

    `says(yes)` plays one exchange into a real `ConsentTracker`: the model asks the open
    question (a turn whose audio has finished playing), then the user answers "Yes."
    and taps their glasses (a lock wants a tap or the PIN) or says "No.". The real
    Agent is tested in test_home_service, test_agent_policy and test_home_consent.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tracker = ConsentTracker()
        self.answers: list[tuple[float, bool]] = []

    def says(self, yes: bool = True) -> None:
        t = self.clock()
        self.answers.append((t, yes))
        tracker = self.tracker
        tracker.model_speaking(t)
        tracker.model_turn_done(t, 0.0)
        at = t + ECHO_TAIL_SECONDS + 0.01
        tracker.user_onset(at, True)
        tracker.user_words("Yes." if yes else "No.", True, at)
        if yes:
            tracker.user_tap(at, True)


@dataclass
class Rig:
    broker: PrivateBroker
    home: VirtualHome | None
    watcher: Watcher
    settings: Settings
    registry: ToolRegistry
    metrics: Metrics
    service: HomeService
    dispatcher: ToolDispatcher
    answers: dict[str, ToolResponse] = field(default_factory=dict)
    proxy: Any = None
    user: FakeUser | None = None
    outcomes: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def barrier(self) -> None:
        await self.watcher.barrier(via=self.service.conn)

    def on_answer(self, response: ToolResponse) -> None:
        self.answers[response.id] = response

    def on_outcome(self, call: FunctionCall, outcome: str, _resp: dict[str, Any] | None) -> None:
        self.outcomes[call.id] = outcome

    def submit(self, name: str, args: dict[str, Any] | None = None) -> str:
        call_id = f"call-{next(self._ids)}"
        self.dispatcher.submit([FunctionCall(call_id, name, dict(args or {}))])
        return call_id

    async def answer(self, call_id: str, within: float = 10.0) -> dict[str, Any]:
        await eventually(lambda: call_id in self.outcomes, within)
        return self.answers[call_id].response

    async def call(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.answer(self.submit(name, args))

    def declaration(self, name: str) -> dict[str, Any] | None:
        tool = self.registry.get(name)
        return tool.declaration() if tool else None

    def enum(self, tool: str, prop: str = "device_id") -> list[str]:
        decl = self.declaration(tool)
        return list(decl["parameters"]["properties"][prop]["enum"]) if decl else []

    def command_topics(self) -> set[str]:
        topics: set[str] = set()
        for dev in self.service.inventory.devices():
            topics |= dev.command_topics
        return topics

    def commands_since(self, mark: int) -> list[tuple[str, str]]:
        """Every message on any device's command topic since `mark` (the broker's view)."""
        topics = self.command_topics()
        return [(m.topic, m.text()) for m in self.watcher.since(mark, topics.__contains__)]


@contextlib.asynccontextmanager
async def _task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """A TaskGroup that leaves the body's exception alone (no ExceptionGroup wrapping)."""
    tg = asyncio.TaskGroup()
    await tg.__aenter__()
    try:
        yield tg
    finally:
        await tg.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def home_rig(
    devices: Sequence[VirtualDevice] | None = None,
    *,
    mqtt: dict[str, Any] | None = None,
    tools: dict[str, Any] | None = None,
    agent: Any = None,
    with_home: bool = True,
    proxy: bool = False,
    mqtt5: bool = True,
    user: bool = True,
    peripheral: PeripheralSettings | None = None,
    **service_kw: Any,
) -> AsyncIterator[Rig]:
    """Everything running on a private broker; torn down in reverse order.

    With `proxy`, the service reaches the broker through a TCP relay (`rig.proxy`)
    that a test can cut, as if the daemon's host vanished (with `mqtt5=False` the relay
    plays a broker that speaks MQTT 3.1.1 only). Without an `agent`, a
    `FakeUser` (`rig.user`) answers the confirmation questions, unless `user=False`.
    """
    async with PrivateBroker() as broker, contextlib.AsyncExitStack() as stack:
        relay = None
        if proxy:
            relay = await stack.enter_async_context(Proxy(broker.port, mqtt5=mqtt5))
        home = None
        if with_home:
            home = await stack.enter_async_context(
                VirtualHome(broker.host, broker.port, devices or default_devices() + extra_devices())
            )
        watcher = await stack.enter_async_context(Watcher(broker))
        settings = Settings(
            mqtt=MqttSettings(
                host=broker.host, port=broker.port, client_id=CLIENT_ID, **(mqtt or {})
            ),
            tools=ToolsSettings(**(tools or {})),
            peripheral=peripheral or PeripheralSettings(),
        )
        metrics = agent.metrics if agent is not None else Metrics()
        registry = agent.registry if agent is not None else ToolRegistry(settings.tools.deadline)
        via = settings.mqtt.model_copy(update={"port": relay.port}) if relay else settings.mqtt
        fake_user = FakeUser() if user and agent is None else None
        if fake_user is not None:
            service_kw.setdefault("consent", fake_user.tracker)
            service_kw.setdefault("taps_possible", lambda: True)
        service = HomeService(
            settings, registry, metrics, agent, connection=fast_connection(via), **service_kw
        )
        rig = Rig(broker, home, watcher, settings, registry, metrics, service, None)  # type: ignore[arg-type]
        rig.proxy = relay
        rig.user = fake_user
        rig.dispatcher = ToolDispatcher(registry, metrics, rig.on_answer, rig.on_outcome)
        tg = await stack.enter_async_context(_task_group())
        tasks = [tg.create_task(service.run()), tg.create_task(rig.dispatcher.run())]
        if agent is not None:
            tasks.append(tg.create_task(agent.run()))
        stack.callback(lambda: [t.cancel() for t in tasks])
        assert await service.wait_ready(10), "home service not ready"
        if home is not None:
            inv = service.inventory
            await eventually(
                lambda: all(
                    inv.available(f"sim-{oid}") and (inv.state(f"sim-{oid}") or not d.state)
                    for oid, d in home.devices.items()
                ),
                10,
            )
        yield rig


def schema_for_default_home(settings: Settings | None = None) -> HomeService:
    """The service (and its registry) for the default virtual home, without a broker."""
    service = HomeService(settings or Settings(), ToolRegistry(), Metrics())
    for dev in default_devices():
        result = service.inventory.handle_discovery(
            dev.discovery_topic("homeassistant"), json.dumps(dev.config)
        )
        assert isinstance(result, Discovered), result
    service.tools.refresh()
    return service


# ----------------------------------------------------------- an Agent without a network


class FakeLink:
    """Just enough of LiveLink for the Agent: events go in by hand, answers are kept."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.responses: list[ToolResponse] = []
        self.audio: list[AudioChunk] = []
        self.video: list[VideoFrame] = []
        self.stream_ends = 0
        self.tools_changes = 0
        self.state = "connected"
        self.session_count = 1
        self.replay_seconds = 0.0
        self.withheld: list[tuple[bool, bool]] = []

    async def run(self) -> None:
        await asyncio.Future()

    async def next_event(self) -> Any:
        return await self.events.get()

    def send_audio(self, chunk: AudioChunk) -> None:
        self.audio.append(chunk)

    def send_video(self, frame: VideoFrame, *, force: bool = False) -> None:
        self.video.append(frame)

    def end_audio_stream(self) -> None:
        self.stream_ends += 1

    def withhold_unsent(self, *, audio: bool = False, video: bool = False) -> None:
        """Nothing waits here (every chunk counts as sent at once): only noted."""
        self.withheld.append((audio, video))

    def send_tool_response(self, response: ToolResponse) -> None:
        self.responses.append(response)

    def tools_changed(self) -> None:
        self.tools_changes += 1


class FakeGlasses(Peripheral):
    """A BLE-like peripheral whose connection and battery a test can change."""

    kind = "ble"

    def __init__(self) -> None:
        self.connected = True
        self.battery: int | None = 80
        self.sink: MediaSink | None = None

    async def run(self, sink: MediaSink) -> None:
        self.sink = sink
        await asyncio.Future()

    def play(self, pcm: bytes, rate: int) -> None:
        pass

    def flush_playback(self) -> float:
        return 0.0

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "connected": self.connected}
        if self.battery is not None:
            out["battery"] = self.battery
        return out


# ------------------------------------------------------- the confirmation gate

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LOCK = Entity("lock.front", "Front door", "lock", None, frozenset({"home/front/set"}))

UNLOCK: dict[str, Any] = {"action": "unlock", "args": {}, "topic": "home/front/set",
                          "payload": "UNLOCK"}


def gate_for(clock: FakeClock, user: FakeUser | None, **kw: Any) -> ConfirmationGate:
    return ConfirmationGate(
        ConfirmationBook(ttl=10, clock=clock), SensitivityPolicy(),
        user.tracker if user else None, taps_possible=lambda: True, **kw,
    )


def make_agent() -> tuple[Agent, FakeLink, FakeGlasses]:
    link, glasses = FakeLink(), FakeGlasses()
    agent = Agent(cast(Any, link), glasses, ToolRegistry(), Metrics())
    return agent, link, glasses

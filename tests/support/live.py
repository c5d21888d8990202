"""The Live side for tests: a talker whose every audio chunk carries its sequence number,
and an Agent wired to the fake Live server over TLS with the real SDK."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pytest
from google.genai import live as genai_live
from pydantic import SecretStr

from daemon.agent import Agent
from daemon.backoff import Backoff
from daemon.config import LiveSettings
from daemon.live.calls import FunctionCall
from daemon.live.events import LiveEvent, TurnComplete
from daemon.live.link import LiveLink
from daemon.media.types import AudioChunk
from daemon.ops.metrics import Metrics
from daemon.peripherals.base import MediaSink, Peripheral
from daemon.tools.registry import ToolRegistry
from simulator.live_server import FakeLiveServer
from simulator.probe import read_stamps, stamped_chunk
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn
from tests.support.waiting import eventually

KEY = "test-key-0123456789"
E = TypeVar("E")


class Talker(Peripheral):
    """Speaks a schedule of (speech?, seconds) segments, `speed` times real time."""

    kind = "talker"

    def __init__(self, schedule: Sequence[tuple[bool, float]], speed: float = 2.0) -> None:
        self.schedule = schedule
        self.speed = speed
        self.sent = 0
        self.done = asyncio.Event()
        self.played = bytearray()
        self.flushes = 0

    async def run(self, sink: MediaSink) -> None:
        interval = 0.02 / self.speed
        start = time.monotonic()
        for speech, seconds in self.schedule:
            for _ in range(round(seconds / 0.02)):
                due = start + self.sent * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sink.audio(AudioChunk(stamped_chunk(self.sent, speech), 16_000, time.monotonic()))
                self.sent += 1
        self.done.set()
        await asyncio.Future()

    def play(self, pcm: bytes, rate: int) -> None:
        # What a real speaker needs (the file peripheral's numpy and soxr fail on less).
        if len(pcm) % 2 or not 8_000 <= rate <= 48_000:
            raise ValueError(f"unplayable model audio: {len(pcm)} bytes at {rate} Hz")
        self.played += pcm

    def flush_playback(self) -> float:
        self.flushes += 1
        return 0.0


def conversation(turns: int = 3) -> Scenario:
    first = Turn(
        user="turn one",
        reply="first: {result}",
        audio=ReplyAudio(duration_ms=200),
        tool_calls=(ToolCallSpec(name="agent_status", args={}),),
    )
    rest = [Turn(user=f"turn {i + 2}", reply=f"reply {i + 2}", audio=ReplyAudio(duration_ms=200))
            for i in range(turns - 1)]
    return Scenario(turns=(first, *rest), loop=True)


def utterances(n: int, speech: float = 0.5, gap: float = 0.9) -> list[tuple[bool, float]]:
    out: list[tuple[bool, float]] = [(False, 0.2)]
    for _ in range(n):
        out += [(True, speech), (False, gap)]
    return out


@dataclass
class Run:
    server: FakeLiveServer
    agent: Agent
    talker: Talker
    metrics: Metrics
    events: list[LiveEvent] = field(default_factory=list)
    calls: list[tuple[FunctionCall, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def link(self) -> LiveLink:
        return self.agent.link

    def turns_completed(self) -> int:
        return sum(isinstance(e, TurnComplete) for e in self.events)

    async def until(self, predicate: Any, limit: float = 10.0) -> None:
        """Poll; an Agent that stopped fails at once, with its own exception."""

        def holds() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # raises what ended the Agent
                raise AssertionError("the Agent stopped")
            return bool(predicate())

        await eventually(holds, limit)

    async def all_audio_delivered(self, limit: float = 10.0) -> None:
        await self.until(
            lambda: self.talker.done.is_set()
            and self.link.replay_seconds == 0
            and len(self.received()) >= self.talker.sent - self.dropped(),
            limit,
        )

    def dropped(self) -> int:
        return int(self.metrics.value("edge_live_uplink_audio_dropped_chunks_total"))

    def received(self) -> list[tuple[int | None, int]]:
        """(sequence number, connection) of every 20 ms chunk the server got, in order."""
        return [(seq, c.connection) for c in self.server.audio_chunks
                for seq in read_stamps(c.pcm)]

    def received_seqs(self) -> list[int | None]:
        return [seq for seq, _ in self.received()]


def live_settings(server: FakeLiveServer, **overrides: Any) -> LiveSettings:
    base: dict[str, Any] = {
        "base_url": server.base_url,
        "ca_file": server.ca_pem_path,
        "connect_timeout": 2.0,
        "stall_timeout": 5.0,
        "ping_interval": 0.5,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "goaway_margin": 0.5,
    }
    base.update(overrides)
    return LiveSettings(**base)


@contextlib.asynccontextmanager
async def bare_link(
    server: FakeLiveServer,
    metrics: Metrics | None = None,
    *,
    backoff: Backoff | None = None,
    refused_backoff: Backoff | None = None,
    declarations: Callable[[], list[dict[str, Any]]] = list,
    fallback_declarations: Callable[[], list[dict[str, Any]]] | None = None,
    **overrides: Any,
) -> AsyncIterator[LiveLink]:
    """A LiveLink with no Agent: the test answers (or not) the model itself."""
    link = LiveLink(live_settings(server, **overrides), SecretStr(KEY), metrics or Metrics(),
                    backoff=backoff, refused_backoff=refused_backoff, declarations=declarations,
                    fallback_declarations=fallback_declarations)
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_event_of(link: LiveLink, kind: type[E], limit: float = 5.0) -> E:
    """The next event of this kind; the ones before it are skipped."""
    async with asyncio.timeout(limit):
        while True:
            event = await link.next_event()
            if isinstance(event, kind):
                return event


def say(link: LiveLink, speech: float = 0.3, silence: float = 0.8, first: int = 0) -> int:
    """Hand the link one stamped utterance at once; returns the next sequence number."""
    seq = first
    for is_speech, seconds in ((True, speech), (False, silence)):
        for _ in range(round(seconds / 0.02)):
            link.send_audio(AudioChunk(stamped_chunk(seq, is_speech), 16_000, time.monotonic()))
            seq += 1
    return seq


@contextlib.asynccontextmanager
async def running(
    server: FakeLiveServer,
    talker: Talker,
    *,
    tool_deadline: float = 2.0,
    refused_backoff: Backoff | None = None,
    **overrides: Any,
) -> AsyncIterator[Run]:
    metrics = Metrics()
    registry = ToolRegistry(tool_deadline)
    link = LiveLink(live_settings(server, **overrides), SecretStr(KEY), metrics,
                    declarations=registry.declarations, refused_backoff=refused_backoff)
    run: Run
    agent = Agent(link, talker, registry, metrics,
                  on_event=lambda e: run.events.append(e),
                  on_call=lambda c, outcome, _: run.calls.append((c, outcome)))
    run = Run(server, agent, talker, metrics)
    task = run.task = asyncio.create_task(agent.run())
    try:
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ------------------------------------------------ audio for the energy detector

def speech(ms: float, rate: int = 16_000) -> bytes:
    """A loud 300 Hz tone: 'speech' to the energy detector."""
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 0.3 * 32767).astype("<i2").tobytes()


def silence(ms: float, rate: int = 16_000) -> bytes:
    return bytes(2 * int(rate * ms / 1000))


# ------------------------------- an SDK that keeps its socket elsewhere (the door)

UNAVAILABLE = "edge_live_sdk_socket_unavailable_total"


class ForeignSocket:
    """What a later SDK might keep at `_ws`: a socket that works, not websockets' own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def keep_socket_elsewhere(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Make the SDK's sessions keep their socket the way a later release might."""
    original = genai_live.AsyncSession.__init__

    def init(self: genai_live.AsyncSession, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if how == "renamed":  # the attribute is gone (the SDK's own methods would fail too)
            vars(self)["_websocket"] = vars(self).pop("_ws")
        else:  # still there, but another library's connection
            vars(self)["_ws"] = ForeignSocket(vars(self)["_ws"])

    monkeypatch.setattr(genai_live.AsyncSession, "__init__", init)


def door_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "daemon.live.socket_door" and r.levelno == logging.WARNING]

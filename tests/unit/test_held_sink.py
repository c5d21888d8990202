"""The glasses' early start: what a peripheral captures before the Agent exists is held in
order (bounded, drops counted) and replayed; the early task is joined or stopped.

End to end (the real glasses on the virtual radio, held audio replayed into a real Agent
and Live link): tests/integration/test_early_start.py; the timing: bench/startup.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from daemon.app import _start_early
from daemon.media.held_sink import EarlyRun, HeldSink
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.state import StateStore
from daemon.ops.switches import SWITCHES
from daemon.peripherals.base import MediaSink, Peripheral


class Recorder:
    """A sink that notes every call, as the Agent would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def audio(self, chunk: AudioChunk) -> None:
        self.calls.append(("audio", chunk.pcm))

    def video(self, frame: VideoFrame) -> None:
        self.calls.append(("video", frame))

    def input_paused(self) -> None:
        self.calls.append(("input_paused", None))

    def backlog_seconds(self) -> float:
        return 1.5

    def speech_ended(self) -> None:
        self.calls.append(("speech_ended", None))

    def user_tap(self) -> None:
        self.calls.append(("user_tap", None))


def chunk(n: int) -> AudioChunk:
    return AudioChunk(bytes([n]) * 640, 16_000, float(n))


def test_held_calls_are_replayed_in_order_then_forwarded() -> None:
    sink, agent = HeldSink(), Recorder()
    sink.audio(chunk(1))
    sink.user_tap()
    sink.audio(chunk(2))
    sink.input_paused()
    assert sink.backlog_seconds() == 0.0 and agent.calls == []
    sink.attach(agent)
    # a tap before the conversation existed confirms nothing: dropped, counted
    assert agent.calls == [("audio", bytes([1]) * 640),
                           ("audio", bytes([2]) * 640), ("input_paused", None)]
    assert sink.taps_dropped == 1
    sink.audio(chunk(3))
    sink.speech_ended()
    sink.user_tap()  # once attached, a tap is the Agent's
    assert agent.calls[-3:] == [("audio", bytes([3]) * 640), ("speech_ended", None),
                                ("user_tap", None)]
    assert sink.backlog_seconds() == 1.5  # the Agent's own answer from now on
    with pytest.raises(RuntimeError):
        sink.attach(Recorder())


def test_past_the_limit_the_oldest_are_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "daemon.media.held_sink")
    sink, agent = HeldSink(limit=3), Recorder()
    for n in range(5):
        sink.audio(chunk(n))
    sink.user_tap()
    sink.attach(agent)
    assert [c[1][0] for c in agent.calls] == [2, 3, 4]
    assert sink.dropped == 2
    assert "2 captured chunks were dropped" in caplog.text
    assert "1 tap(s) before the conversation started were dropped" in caplog.text


async def test_join_reports_the_final_counts_once_attached() -> None:
    held = HeldSink(limit=2)
    for n in range(3):
        held.audio(chunk(n))
    held.user_tap()
    counts: list[tuple[int, int]] = []
    early = EarlyRun(asyncio.create_task(asyncio.sleep(0)), held)
    await early.join(Recorder(), on_attached=lambda s: counts.append((s.dropped, s.taps_dropped)))
    assert counts == [(1, 1)]


async def test_join_runs_on_as_the_peripheral_and_cancel_stops_it() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def peripheral(sink: HeldSink) -> None:
        sink.audio(chunk(7))
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    held = HeldSink()
    early = EarlyRun(asyncio.create_task(peripheral(held)), held)
    await started.wait()
    agent = Recorder()
    joined = asyncio.create_task(early.join(agent))
    await asyncio.sleep(0)
    assert agent.calls == [("audio", bytes([7]) * 640)]
    joined.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joined
    assert stopped.is_set() and early.task.cancelled()


async def test_a_failed_peripheral_fails_the_join_and_stop_is_quiet() -> None:
    async def broken(_sink: HeldSink) -> None:
        raise OSError("no radio")

    held = HeldSink()
    early = EarlyRun(asyncio.create_task(broken(held)), held)
    await asyncio.sleep(0)
    with pytest.raises(OSError, match="no radio"):
        await early.join(Recorder())
    await early.stop()  # again, as `serve` does after a failed start: no error


async def test_stop_before_join_cancels_the_early_task() -> None:
    held = HeldSink()
    early = EarlyRun(asyncio.create_task(asyncio.Event().wait()), held)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await early.stop()
    assert early.task.cancelled()


class Glasses(Peripheral):
    """A stand-in BLE peripheral that notes the order of the calls `serve` makes."""

    kind = "ble"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run(self, sink: MediaSink) -> None:
        self.calls.append("run")
        sink.audio(chunk(1))

    def play(self, pcm: bytes, rate: int) -> None:
        raise AssertionError("not played")

    def flush_playback(self) -> float:
        return 0.0

    def set_camera_enabled(self, enabled: bool) -> None:
        self.calls.append(f"camera {'on' if enabled else 'off'}")


async def test_a_saved_camera_switch_is_applied_before_the_glasses_start() -> None:
    state = StateStore(None)
    state.save(SWITCHES, {"microphone_muted": False, "camera_enabled": False})
    glasses = Glasses()
    early = _start_early(glasses, state)
    assert early is not None
    await early.task
    assert glasses.calls == ["camera off", "run"]
    agent = Recorder()
    early.sink.attach(agent)
    assert agent.calls == [("audio", bytes([1]) * 640)]
    plain = Glasses()
    early = _start_early(plain, StateStore(None))
    assert early is not None
    await early.stop()
    assert "camera off" not in plain.calls

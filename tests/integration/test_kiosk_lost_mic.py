"""A kiosk whose microphone is lost lets its talk button go and stops showing
"listening": the blocks that would tick the hold limit no longer come (review of
2026-12-06). The kiosk's own run loop, with its devices replaced by a microphone that
is gone and a speaker that stays (no sound card needed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np
import pytest

from daemon.agent import Agent
from daemon.config import KioskPeripheralSettings
from daemon.ops.metrics import Metrics
from daemon.peripherals import kiosk as kiosk_mod
from daemon.peripherals.audio_device import AudioDeviceError
from daemon.tools.registry import ToolRegistry
from tests.support.home import FakeLink

pytestmark = pytest.mark.timeout(30)


class _LostMic:
    """Unplugged: every attempt to open it fails (its counters are the real one's)."""

    active = False

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    async def blocks(self) -> Any:
        raise AudioDeviceError("device unplugged")

    def close(self) -> None:
        pass


class _Speaker:
    active = True
    played_seconds = 0.0

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Sink:
    def input_paused(self) -> None:
        pass


async def test_a_lost_microphone_lets_the_talk_button_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kiosk_mod, "find_device", lambda *a, **k: None)
    ks = KioskPeripheralSettings(echo="off", vad="off", listen="push_to_talk",
                                 push_to_talk_mqtt=True, earcons=False,
                                 push_to_talk_max_hold=60.0)
    kiosk = kiosk_mod.KioskPeripheral("x", "y", block_ms=20, settings=ks)
    fe = kiosk.frontend
    assert fe is not None
    agent = Agent(cast(Any, FakeLink()), kiosk, ToolRegistry(), Metrics())
    kiosk.push_to_talk(True, "mqtt")
    voice = (np.sin(np.arange(320) / 3) * 8000).astype("<i2").tobytes()
    t = time.monotonic()
    for i in range(5):
        kiosk._through_frontend(fe, voice, t + i * 0.02, agent)  # noqa: SLF001 - blocks handed in
    assert kiosk.status()["assistant"] == "listening" and kiosk.status()["push_to_talk"]
    mic, speaker = kiosk._mic, kiosk._speaker  # noqa: SLF001 - replaced below
    kiosk._mic = cast(Any, _LostMic(mic.stats))  # noqa: SLF001 - the USB microphone is pulled out
    kiosk._speaker = cast(Any, _Speaker(speaker.stats))  # noqa: SLF001 - and the speaker stays
    task = asyncio.create_task(kiosk._run_devices(cast(Any, _Sink())))  # noqa: SLF001 - its loop
    try:
        async with asyncio.timeout(10):
            while kiosk.state != "reopening":
                await asyncio.sleep(0.01)
        status = kiosk.status()
        assert status["assistant"] == "idle" and not status["push_to_talk"], status
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

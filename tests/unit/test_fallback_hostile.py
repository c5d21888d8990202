"""A malformed answer on the fallback road costs that turn, never the road (whose end
would end the daemon's TaskGroup): bad base64, a broken WAV, a rate no speaker plays.

The road and the client's decoding run for real; only the client's call to the
service is a stand-in that returns the hostile answer (review of 2026-12-06).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from array import array
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from daemon.config import InteractionsSettings
from daemon.media.resample import Resampler
from daemon.tasks.client import Endpoint, InteractionsClient
from daemon.tasks.fallback import FallbackRoad
from daemon.tasks.metrics import FallbackMetrics
from daemon.tasks.utterance import Utterance


class Client(InteractionsClient):
    """Answers every call with `audio`, as the SDK would hand it over."""

    def __init__(self, audio: Any) -> None:
        s = InteractionsSettings(fallback=True, fallback_audio_out=True)
        super().__init__(s, Endpoint("http://127.0.0.1:1", "v1beta", None), SecretStr("k"))
        self.audio = audio

    def prepare(self) -> None:
        pass

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return SimpleNamespace(id="i1", status="completed", steps=[], output_text="",
                               output_audio=self.audio)


class Link:
    connected = False

    async def send_text(self, text: str) -> None:
        pass


class Speaker:
    """Like the kiosk's SoundCardSpeaker.play: a resampler for the answer's rate."""

    def __init__(self) -> None:
        self.played: list[tuple[bytes, int]] = []

    def play(self, pcm: bytes, rate: int) -> None:
        Resampler(rate, 48_000)
        self.played.append((pcm, rate))

    def play_earcon(self, pcm: bytes, rate: int) -> None:
        pass


async def no_tools(calls: Any) -> list[Any]:
    return []


def road(audio: Any) -> FallbackRoad:
    s = InteractionsSettings(fallback=True, fallback_audio_out=True)
    return FallbackRoad(s, Client(audio), Link(), Speaker(), no_tools, lambda: [],
                        FallbackMetrics(CollectorRegistry()))


UTT = Utterance(array("h", (int(6000 * math.sin(i / 5)) for i in range(8000))).tobytes(),
                16_000, 0.0)

CASES = {
    "bad_base64": SimpleNamespace(data="abc", mime_type="audio/l16", sample_rate=24000),
    "riff_garbage": SimpleNamespace(data=base64.b64encode(b"RIFF" + b"\0" * 10).decode(),
                                    mime_type="audio/wav", sample_rate=None),
    "rate_zero": SimpleNamespace(data=base64.b64encode(b"\1\0" * 100).decode(),
                                 mime_type="audio/L16;rate=0", sample_rate=None),
    "rate_negative": SimpleNamespace(data=base64.b64encode(b"\1\0" * 100).decode(),
                                     mime_type="audio/l16", sample_rate=-1),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_malformed_answer_audio_is_a_failed_turn_not_a_crash(case: str) -> None:
    r = road(CASES[case])
    assert await r._turn(UTT) == "error"  # noqa: SLF001 - one turn, without the road's timing


async def test_the_road_keeps_running_after_a_malformed_answer() -> None:
    metrics = FallbackMetrics(CollectorRegistry())
    s = InteractionsSettings(fallback=True, fallback_audio_out=True)
    r = FallbackRoad(s, Client(CASES["bad_base64"]), Link(), Speaker(), no_tools, list, metrics)
    task = asyncio.create_task(r.run())
    r._utterance(UTT)  # noqa: SLF001 - an utterance as the cutter hands it over
    async with asyncio.timeout(10):
        while metrics.turns.labels("error")._value.get() < 1:  # noqa: SLF001 - prometheus_client keeps no public getter
            await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

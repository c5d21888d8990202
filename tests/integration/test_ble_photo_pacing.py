"""Photos out of speech's way: omiGlass on the virtual radio, asked for a photo mid-sentence.

The glasses' microphone plays 1 s of tone (the user speaking) and 1.5 s of silence, over
and over. A photo asked for while the tone plays is written to the glasses in the next
pause (its ~90 notifications would otherwise queue audio behind them), one asked for in
a pause is written at once, and every request is counted.
"""

from __future__ import annotations

import time

import pytest

from daemon.media.level import mean_square
from daemon.peripherals.ble.photo_pacing import VOICE_RMS
from simulator import radio as sim_radio
from simulator.glasses import VirtualGlasses
from tests.support.ble import Sink, make_ble, running, tone

pytestmark = pytest.mark.timeout(60)

RATE = 16_000
SPEAKING, PAUSE = 1.0, 1.5
QUIET = 0.3


def loud(chunk_pcm: bytes) -> bool:
    return mean_square(chunk_pcm) >= VOICE_RMS**2


def last_seconds_quiet(sink: Sink, seconds: float) -> bool:
    """Whether the sink's last `seconds` of audio (from the newest chunk back) were quiet."""
    newest = sink.chunks[-1].captured_at
    recent = [c for c in sink.chunks if c.captured_at >= newest - seconds]
    return all(not loud(c.pcm) for c in recent)


async def test_a_photo_asked_for_mid_sentence_is_taken_in_the_next_pause() -> None:
    talk = tone(SPEAKING, RATE) + bytes(int(PAUSE * RATE) * 2)
    async with (
        sim_radio.VirtualRadio(2) as hub,
        VirtualGlasses("omiglass", hub.transport(0), pcm=talk, pcm_rate=RATE, loop=True),
    ):
        sink = Sink()
        ble = make_ble("omiglass", hub.transport(1), silence_timeout=30.0,
                       photo_quiet=QUIET, photo_max_wait=20.0)
        assert ble.pacer is not None
        async with running(ble, sink):
            # the user is speaking: the newest frame is loud, after a quiet one
            await sink.until(lambda: len(sink.chunks) > 5 and loud(sink.chunks[-1].pcm)
                             and not loud(sink.chunks[-6].pcm), within=20)
            await ble.take_photo()
            # written only once the user had been quiet QUIET seconds (a frame of margin)
            assert last_seconds_quiet(sink, QUIET - 0.05)
            await sink.until(lambda: bool(sink.frames), within=10)
            stats = ble.pacer.stats
            assert (stats.requests, stats.deferred, stats.forced, stats.immediate) == (1, 1, 0, 0)
            assert stats.deferred_seconds >= SPEAKING / 2  # it waited out the speech

            # while the user is quiet, a photo is asked for at once
            pacer = ble.pacer
            await sink.until(lambda: pacer.paused(time.monotonic()), within=20)
            await ble.take_photo()
            await sink.until(lambda: len(sink.frames) == 2, within=10)
            assert (stats.requests, stats.immediate) == (2, 1)
            assert ble.status()["photo_pacing"]["deferred"] == 1  # /healthz and /metrics
            assert ble.status()["media"]["photos"] == 2

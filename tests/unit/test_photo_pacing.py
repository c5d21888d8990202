"""PhotoPacer: a photo request waits for a pause in the user's speech, bounded, counted."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from daemon.media.level import mean_square
from daemon.peripherals.ble.photo_pacing import VOICE_RMS, PhotoPacer

pytestmark = pytest.mark.timeout(30)

LOUD = float(VOICE_RMS**2) * 4
QUIET = float(VOICE_RMS**2) / 4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outcomes(pacer: PhotoPacer) -> tuple[int, int, int, int, int]:
    s = pacer.stats
    return s.requests, s.immediate, s.deferred, s.forced, s.abandoned


async def test_quiet_user_gets_the_photo_at_once() -> None:
    clock = Clock()
    pacer = PhotoPacer(quiet=0.3, max_wait=5.0, clock=clock)
    assert await pacer.wait_for_pause()  # nothing heard yet: quiet
    pacer.heard(LOUD, 100.0)
    clock.now = 100.31  # quiet frames for longer than `quiet` since the last loud one
    pacer.heard(QUIET, 100.31)
    assert await pacer.wait_for_pause()
    assert outcomes(pacer) == (2, 2, 0, 0, 0)


async def test_a_request_in_speech_waits_for_the_pause_not_for_a_gap_between_words() -> None:
    clock = Clock()
    pacer = PhotoPacer(quiet=0.3, max_wait=60.0, clock=clock)
    pacer.heard(LOUD, 100.0)
    request = asyncio.create_task(pacer.wait_for_pause())
    await asyncio.sleep(0)
    pacer.heard(QUIET, 100.1)  # a gap between words
    pacer.heard(QUIET, 100.2)
    pacer.heard(LOUD, 100.25)  # speech goes on
    pacer.heard(QUIET, 100.5)
    await asyncio.sleep(0.01)
    assert not request.done()
    clock.now = 100.6
    pacer.heard(QUIET, 100.56)  # 0.31 s after the last loud frame: a pause
    assert await asyncio.wait_for(request, 5) is True
    assert outcomes(pacer) == (1, 0, 1, 0, 0)
    assert pacer.stats.deferred_seconds == pytest.approx(0.6)


async def test_no_pause_within_max_wait_is_forced_not_lost() -> None:
    pacer = PhotoPacer(quiet=0.3, max_wait=0.05)
    pacer.heard(LOUD, time.monotonic())
    assert await pacer.wait_for_pause() is True  # after max_wait, whatever the user does
    assert outcomes(pacer) == (1, 0, 0, 1, 0)


async def test_waiters_share_the_pause_and_one_leaving_leaves_the_others() -> None:
    pacer = PhotoPacer(quiet=0.3, max_wait=60.0)
    pacer.heard(LOUD, time.monotonic())
    first = asyncio.create_task(pacer.wait_for_pause())
    second = asyncio.create_task(pacer.wait_for_pause())
    leaving = asyncio.create_task(pacer.wait_for_pause())
    await asyncio.sleep(0)
    leaving.cancel()  # e.g. the `look` tool's deadline
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not first.done() and not second.done()
    pacer.heard(QUIET, time.monotonic() + 1.0)
    assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [True, True]
    assert outcomes(pacer) == (3, 0, 2, 0, 1)


async def test_abandoned_and_cancelled_requests_are_counted() -> None:
    pacer = PhotoPacer(quiet=0.3, max_wait=60.0)
    pacer.heard(LOUD, time.monotonic())
    waiting = asyncio.create_task(pacer.wait_for_pause())
    await asyncio.sleep(0)
    pacer.abandon()  # the link ended
    assert await asyncio.wait_for(waiting, 5) is False
    cancelled = asyncio.create_task(pacer.wait_for_pause())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert outcomes(pacer) == (2, 0, 0, 0, 2)
    assert not pacer._waiting  # noqa: SLF001 - nothing left behind


def test_quiet_zero_never_waits() -> None:
    pacer = PhotoPacer(quiet=0.0)
    pacer.heard(LOUD, time.monotonic())
    assert pacer.paused(time.monotonic())


def test_levels_of_real_pcm_against_the_voice_level() -> None:
    t = np.arange(320) / 16_000
    speech = (np.sin(2 * np.pi * 220 * t) * 2000).astype("<i2").tobytes()  # ~1400 rms
    hiss = (np.sin(2 * np.pi * 220 * t) * 100).astype("<i2").tobytes()  # ~70 rms
    assert mean_square(speech) >= VOICE_RMS**2 > mean_square(hiss)

"""The far end on the monotonic clock: what the loudspeaker played, found by time."""

from __future__ import annotations

import numpy as np

from daemon.audio.reference import FarEndTimeline

RATE = 16_000


def ramp(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_the_samples_playing_at_a_time_are_found_by_that_time() -> None:
    tl = FarEndTimeline(RATE, seconds=1.0)
    for k in range(10):  # ten 20 ms blocks, stamped when they start to play
        tl.played(ramp(320 * k, 320), 100.0 + 0.02 * k)
    # the 160 samples that played up to 100.05 s: samples 640..799
    assert np.array_equal(tl.window(100.05, 160), ramp(640, 160))


def test_before_anything_played_and_in_the_future_it_is_silence() -> None:
    tl = FarEndTimeline(RATE)
    assert not tl.window(5.0, 160).any()
    tl.played(ramp(1, 320), 10.0)
    assert not tl.window(9.99, 160).any()  # before the first block
    assert np.array_equal(tl.window(10.02, 320), ramp(1, 320))
    half = tl.window(10.03, 320)  # the last 160 samples are not played yet
    assert np.array_equal(half[:160], ramp(161, 160))
    assert not half[160:].any()


def test_a_drifting_speaker_clock_is_followed_block_by_block() -> None:
    """A speaker 0.2 % fast: each block's own stamp re-anchors the lookup."""
    tl = FarEndTimeline(RATE, seconds=2.0)
    t = 50.0
    for k in range(100):  # 2 s of 20 ms blocks, each 0.2 % shorter in real time
        tl.played(ramp(320 * k, 320), t)
        t += 0.02 * 0.998
    # the newest block started at `t - 0.02*0.998`; its samples are found there
    last_start = t - 0.02 * 0.998
    got = tl.window(last_start + 0.01, 160)
    assert np.array_equal(got, ramp(320 * 99, 160))
    assert tl.gaps == 0


def test_a_late_block_leaves_silence_where_nothing_played() -> None:
    tl = FarEndTimeline(RATE)
    tl.played(ramp(0, 320), 1.0)
    tl.played(ramp(320, 320), 1.1)  # 80 ms of nothing between the blocks
    assert tl.gaps == 1
    assert not tl.window(1.09, 160).any()
    assert np.array_equal(tl.window(1.11, 160), ramp(320, 160))


def test_the_ring_forgets_what_is_older_than_its_span() -> None:
    tl = FarEndTimeline(RATE, seconds=0.5)
    for k in range(100):
        tl.played(ramp(320 * k, 320), 0.02 * k)
    assert not tl.window(0.1, 160).any()  # 1.9 s before the newest: gone
    assert np.array_equal(tl.window(1.99, 160), ramp(320 * 99, 160))
    tl.reset()
    assert not tl.window(1.99, 160).any()

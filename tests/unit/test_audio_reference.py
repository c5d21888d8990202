"""The far end on the monotonic clock: what the loudspeaker played, found by time."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.audio.reference import DeviceClock, FarEndTimeline

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


def test_callbacks_late_for_the_interpreter_lock_do_not_move_the_stamps() -> None:
    """PyAudio's callback waits for the GIL: time.monotonic() read there is late (and
    bunched), PortAudio's own stamps are not; the least late callback gives the offset."""
    clock = DeviceClock(window_s=10.0)
    offset = 1000.0  # monotonic = PortAudio's clock + 1000 s
    lateness = [0.001, 0.3, 0.28, 0.26, 0.0005, 0.12, 0.002, 0.25]  # seconds, per callback
    for k, late in enumerate(lateness):
        pa_now = 50.0 + 0.02 * k
        clock.observe(pa_now, pa_now + offset + late)
        least_late = min(lateness[: k + 1])
        # a block's first sample, 20 ms before PortAudio's "now": off by the least lateness only
        assert clock.to_monotonic(pa_now - 0.02) == pytest.approx(
            pa_now - 0.02 + offset + least_late)


def test_the_offset_follows_a_slewing_clock_within_its_window() -> None:
    clock = DeviceClock(window_s=2.0)
    for k in range(1000):  # 10 s of 10 ms callbacks, PortAudio's clock 1 ms/s slower
        t = 0.01 * k
        clock.observe(t * (1 - 0.001), 500.0 + t)
    # monotonic - pa at t: 500 + 0.001 t; the window's oldest (t = 8 s) is its minimum
    assert clock.to_monotonic(0.0) == pytest.approx(500.0 + 0.001 * 8.0, abs=2e-4)
    with pytest.raises(ValueError, match="no callback observed"):
        DeviceClock().to_monotonic(1.0)


def test_the_reference_rests_in_silence_and_matches_a_resampler_that_never_does() -> None:
    """The loudspeaker's reference (24 kHz -> 16 kHz) skips the resampler once nothing
    has played for a while: the far end the canceller reads is the same as when every
    silent block is resampled, and the timeline sees no gap or overlap."""
    from daemon.peripherals.audio_device import ReferenceWriter

    dev = 24_000
    rng = np.random.default_rng(3)
    # sound, a long silence (rests), sound, a short silence (does not), sound, silence
    plan = [(True, 50), (False, 40), (True, 50), (False, 5), (True, 30), (False, 30)]
    blocks = [(rng.normal(0, 3000, 240).astype("<i2").tobytes() if sound else b"")
              for sound, count in plan for _ in range(count)]
    resting, never = FarEndTimeline(RATE, seconds=4.0), FarEndTimeline(RATE, seconds=4.0)
    writer, plain = ReferenceWriter(resting, dev, 240), ReferenceWriter(never, dev, 240)
    rested = 0
    for k, pcm in enumerate(blocks):
        at = 10.0 + 0.01 * k
        writer.played(pcm or bytes(480), at, silent=not pcm)
        plain.played(pcm or bytes(480), at, silent=False)
        rested += writer.resting
    assert rested >= 40  # most of the long and the closing silence
    for k in range(len(blocks) - 3):  # soxr releases its output ~30 ms late
        if not blocks[k] and blocks[k + 1]:
            continue  # before an onset a continuous stream pre-rings (linear-phase filter)
        at = 10.0 + 0.01 * (k + 1)
        # (soxr dithers its int16 output: two streams differ by a few LSB, -80 dBFS)
        assert np.abs(resting.window(at, 160).astype(int)
                      - never.window(at, 160).astype(int)).max() <= 3, k
    assert (resting.gaps, resting.overlaps) == (never.gaps, never.overlaps) == (0, 0)

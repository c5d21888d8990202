import random

import pytest

from daemon.backoff import Backoff

pytestmark = pytest.mark.timeout(10)


def test_first_retry_immediate_then_full_jitter_capped() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(1))
    assert b.next_delay() == 0.0
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    for ceiling in ceilings:
        d = b.next_delay()
        assert 0.0 <= d <= ceiling


def test_jitter_spreads_over_the_whole_range() -> None:
    delays = []
    for seed in range(200):
        b = Backoff(1.0, 30.0, rng=random.Random(seed))
        for _ in range(7):
            d = b.next_delay()
        delays.append(d)
    assert max(delays) <= 30.0
    assert min(delays) < 5.0 and max(delays) > 25.0


def test_reset_starts_over() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(2))
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.next_delay() == 0.0
    assert b.failures == 1


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="initial"):
        Backoff(2, 1)

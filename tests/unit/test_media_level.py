"""mean_square: the level the Agent and the photo pacing compare, without numpy."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.media.level import mean_square

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("n", [1, 2, 319, 320, 960])
def test_equals_numpys_mean_of_squares(n: int) -> None:
    samples = np.random.default_rng(n).integers(-32768, 32768, n).astype("<i2")
    expected = float(np.mean(samples.astype(np.float64) ** 2))
    assert mean_square(samples.tobytes()) == pytest.approx(expected, rel=1e-12)


def test_extremes_empty_and_an_odd_byte() -> None:
    assert mean_square(b"") == 0.0
    assert mean_square(b"\x01") == 0.0
    full = np.full(320, -32768, "<i2").tobytes()
    assert mean_square(full) == pytest.approx(32768.0**2, rel=1e-12)
    assert mean_square(full + b"\x7f") == mean_square(full)  # the trailing byte is ignored
    assert mean_square(bytes(640)) == 0.0

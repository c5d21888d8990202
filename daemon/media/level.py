"""The level of a piece of 16-bit PCM, without numpy.

Why pure Python: the Agent and the glasses' photo pacing measure every 20 ms frame,
and a daemon whose audio needs no resampling (Opus 16 kHz glasses, a 16 kHz file)
should not import numpy (~11 MB, ~35 ms) for that alone. `math.hypot` sums the squares
in C: ~6 µs for 320 samples here, against ~1.6 µs for numpy's dot product, which is
0.02 % of a core at 50 frames a second.
"""

from __future__ import annotations

import math
import sys
from array import array

__all__ = ["mean_square"]

_NATIVE_LE = sys.byteorder == "little"


def mean_square(pcm: bytes) -> float:
    """Mean of the squared samples of 16-bit little-endian PCM (0.0 if none);
    a trailing odd byte is ignored. Compare with an RMS threshold squared."""
    n = len(pcm) // 2
    if not n:
        return 0.0
    if _NATIVE_LE:
        samples: memoryview | array[int] = memoryview(pcm)[: 2 * n].cast("h")
    else:  # pragma: no cover - big-endian hosts
        samples = array("h", pcm[: 2 * n])
        samples.byteswap()
    root = math.hypot(*samples)
    return root * root / n

"""Earcons: short soft tone pairs that tell the user what changed without words.

One generator, several meanings, told apart by their pitches: listening started
(rising) or stopped (falling) on the kiosk and the glasses; the fallback road taken
(falling, wider) or the Live API back (rising, wider). Pure array code, no numpy, so
the glasses path does not load it for a beep.
"""

from __future__ import annotations

import math
from array import array
from functools import lru_cache

EARCON_RATE = 24_000  # the model's output rate: every speaker path already takes it
LISTEN_START = (660.0, 880.0)
LISTEN_STOP = (880.0, 660.0)
ROAD_LIVE = (660.0, 990.0)
ROAD_FALLBACK = (990.0, 660.0)


@lru_cache(maxsize=8)  # a handful of distinct tones, played again and again
def earcon(pitches: tuple[float, ...], *, tone_s: float = 0.08, gap_s: float = 0.0,
           level: float = 0.15, rate: int = EARCON_RATE) -> bytes:
    """16-bit mono PCM at `rate`: each pitch for `tone_s` with 10 ms fades, then `gap_s`."""
    out = array("h")
    n = int(tone_s * rate)
    ramp = 0.01 * rate
    peak = level * 32767
    for pitch in pitches:
        step = 2 * math.pi * pitch / rate
        out.extend(int(peak * min(1.0, i / ramp, (n - i) / ramp) * math.sin(step * i))
                   for i in range(n))
        out.extend([0] * int(gap_s * rate))
    return out.tobytes()

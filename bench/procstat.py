"""What a benchmark reads about another process from /proc, percentiles, and an
optional profile of a benchmark process (BENCH_PROFILE=file)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def run(coro: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, under cProfile when BENCH_PROFILE names an output file.

    BENCH_PROFILE_AFTER=seconds starts the profile late, so imports and set-up stay
    out of a steady-state profile.
    """
    target = os.environ.get("BENCH_PROFILE")
    if not target:
        asyncio.run(coro)
        return
    import cProfile

    prof = cProfile.Profile()
    after = float(os.environ.get("BENCH_PROFILE_AFTER", "0"))

    async def profiled() -> None:
        asyncio.get_running_loop().call_later(after, prof.enable)
        await coro

    try:
        asyncio.run(profiled())
    finally:
        prof.disable()
        prof.dump_stats(target)

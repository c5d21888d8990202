"""The one way tests wait for a condition: `eventually`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(predicate: Callable[[], object], within: float = 5.0) -> None:
    """Poll `predicate` every 10 ms until it is true; fail the test after `within` s.

    An exception from `predicate` ends the wait at once (it is the test's failure).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, f"condition not reached within {within} s"
        await asyncio.sleep(0.01)

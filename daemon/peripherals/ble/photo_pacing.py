"""When the daemon asks the glasses for a photo: in a pause of the user's speech.

Why: a photo is about ninety notifications that the glasses send as fast as they can.
Audio notifications queued behind them in the glasses' transmit queue reach the
daemon late: 10-40 ms on the virtual radio, and a real radio needs 100-180 ms of air
time for 17 KB. The glasses decide nothing here; the daemon decides when it asks. So a
one-shot request (`BlePeripheral.take_photo`, the `look` tool) waits until the user has
been quiet for `quiet` seconds - a pause, not the gap between two words - and is
written then; after `max_wait` without a pause it is written anyway (counted as
forced), so no photo asked for is lost. Photos the glasses take on their own interval
are not paced: the device's timer decides those.

`heard` is called for every decoded audio frame (the session's receive path): one
comparison, and a release of the waiters when a pause begins. No task, no timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["PacingStats", "PhotoPacer"]

QUIET_SECONDS: Final = 0.3  # longer than the gaps between words
MAX_WAIT_SECONDS: Final = 3.0  # below the `look` tool's 4 s for the photo to arrive
VOICE_RMS: Final = 300  # of 32767: the Agent's speech onset level


@dataclass(slots=True)
class PacingStats:
    """What happened to each photo request; every one ends in exactly one outcome."""

    requests: int = 0
    immediate: int = 0  # the user was quiet: written at once
    deferred: int = 0  # waited for a pause, then written
    forced: int = 0  # no pause within max_wait: written anyway
    abandoned: int = 0  # the link ended or the camera was switched off while it waited
    deferred_seconds: float = 0.0  # total wait of the deferred and forced ones


class PhotoPacer:
    """Holds photo requests until the user pauses (see the module docstring)."""

    def __init__(
        self,
        *,
        quiet: float = QUIET_SECONDS,
        max_wait: float = MAX_WAIT_SECONDS,
        voice_rms: float = VOICE_RMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = max(0.0, quiet)
        self.max_wait = max(0.0, max_wait)
        self.voice_level = float(voice_rms) ** 2  # compared with a mean square
        self.stats = PacingStats()
        self._clock = clock
        self._last_voice = -1e9  # when the last frame with voice was captured
        self._waiting: list[asyncio.Future[bool]] = []  # one per request waiting for a pause

    def paused(self, now: float) -> bool:
        """Whether the user has been quiet for `quiet` seconds at `now`."""
        return now - self._last_voice >= self.quiet

    def heard(self, mean_square: float, at: float) -> None:
        """One decoded audio frame's level (`daemon.media.level.mean_square`), captured at `at`."""
        if mean_square >= self.voice_level:
            self._last_voice = at
        elif self._waiting and at - self._last_voice >= self.quiet:
            self._release(True)

    def abandon(self) -> None:
        """The link ended or the camera went off: waiting requests give up now."""
        self._release(False)

    def _release(self, pause: bool) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(pause)

    async def wait_for_pause(self) -> bool:
        """Return when the photo may be asked for: at once if the user is quiet, else at the
        next pause or after `max_wait`. False if abandoned (the caller checks the link)."""
        stats = self.stats
        stats.requests += 1
        started = self._clock()
        if self.paused(started):
            stats.immediate += 1
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait):
                pause = await waiter
        except TimeoutError:
            stats.forced += 1
            pause = True
        except asyncio.CancelledError:
            stats.abandoned += 1
            raise
        else:
            if pause:
                stats.deferred += 1
            else:
                stats.abandoned += 1
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            stats.deferred_seconds += self._clock() - started
        return pause

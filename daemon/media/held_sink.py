"""A peripheral's sink before the Agent exists: what it captures is held, then handed over.

The daemon starts the glasses (radio set-up, scan, connect) before the Agent is built, so
the radio's round trips overlap the Live SDK's import (daemon/app.py). Whatever the
glasses deliver in that time is held here, in order and bounded, and replayed into the
Agent when it attaches; from then on the sink's methods are the Agent's own (no extra
call per chunk).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.media.types import AudioChunk, VideoFrame

__all__ = ["HOLD_LIMIT", "EarlyRun", "HeldSink"]

log = logging.getLogger(__name__)

HOLD_LIMIT = 1000  # calls (20 s of 20 ms audio): the Agent attaches within a second or so
_FORWARDED = ("audio", "video", "input_paused", "backlog_seconds", "speech_ended", "user_tap")


class _Sink(Protocol):
    """daemon.peripherals.base.MediaSink, the Agent's side (a lower layer cannot import it)."""

    def audio(self, chunk: AudioChunk) -> None: ...
    def video(self, frame: VideoFrame) -> None: ...
    def input_paused(self) -> None: ...
    def backlog_seconds(self) -> float: ...
    def speech_ended(self) -> None: ...
    def user_tap(self) -> None: ...


class HeldSink:
    """Holds a peripheral's calls until `attach`, then forwards them (nothing lost silently:
    past `limit` the oldest are dropped, counted in `dropped` and logged at attach)."""

    def __init__(self, limit: int = HOLD_LIMIT) -> None:
        self._held: deque[tuple[str, tuple[Any, ...]]] = deque(maxlen=limit)
        self.dropped = 0
        self.taps_dropped = 0
        self.attached = False

    def _hold(self, name: str, *args: Any) -> None:
        if len(self._held) == self._held.maxlen:
            self.dropped += 1
        self._held.append((name, args))

    def audio(self, chunk: AudioChunk) -> None:
        """Held until the Agent attaches."""
        self._hold("audio", chunk)

    def video(self, frame: VideoFrame) -> None:
        """Held until the Agent attaches."""
        self._hold("video", frame)

    def input_paused(self) -> None:
        """Held until the Agent attaches."""
        self._hold("input_paused")

    def backlog_seconds(self) -> float:
        """Nothing is sent upstream yet: a paced source need not wait."""
        return 0.0

    def speech_ended(self) -> None:
        """Held until the Agent attaches."""
        self._hold("speech_ended")

    def user_tap(self) -> None:
        """Dropped and counted: no question can be open before the conversation exists,
        and a tap replayed later would carry the replay's time, not its own."""
        self.taps_dropped += 1

    def attach(self, target: _Sink) -> None:
        """Replay what was held into `target`, in order; then become `target`'s methods."""
        if self.attached:
            raise RuntimeError("HeldSink.attach: already attached")
        held, self._held = list(self._held), deque()
        for name, args in held:
            getattr(target, name)(*args)
        for name in _FORWARDED:
            setattr(self, name, getattr(target, name))
        self.attached = True
        if self.dropped:
            log.warning("%d captured chunks were dropped before the conversation started "
                        "(more than %d held)", self.dropped, len(held))
        if self.taps_dropped:
            log.info("%d tap(s) before the conversation started were dropped: no question "
                     "was open", self.taps_dropped)


@dataclass
class EarlyRun:
    """A peripheral's `run(sink)` started before the Agent, and the sink it was given."""

    task: asyncio.Task[None]
    sink: HeldSink

    async def join(
        self, target: _Sink, on_attached: Callable[[HeldSink], None] | None = None
    ) -> None:
        """Hand the held media to `target` and run on as its peripheral task: returns or
        raises as the peripheral does; cancelled, it cancels the peripheral and waits.
        `on_attached` sees the sink once its counts are final (for /metrics)."""
        self.sink.attach(target)
        if on_attached is not None:
            on_attached(self.sink)
        try:
            await asyncio.shield(self.task)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel the peripheral (if still running) and wait until it has ended."""
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.exception()  # retrieved: raised by `join`, or moot after a failed start

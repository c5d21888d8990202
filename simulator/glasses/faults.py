"""What to break on the virtual glasses, and the clock that breaks it on time.

Why on the streamed-seconds clock: a test or the `sim glasses` CLI says "go silent
after 2 s" and means two seconds of microphone stream, whatever the connection did
meanwhile, so a fault lands at the same point of the audio on a loaded machine too.
Rates and indices act per notification inside the microphone stream; the time-based
faults below fire once each per instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from simulator.glasses.report import Report

__all__ = ["FaultClock", "Faults"]

_RATE_KEYS: Final = ("drop", "duplicate", "reorder", "malformed")
_INDEX_KEYS: Final = ("drop-at", "duplicate-at", "reorder-at", "malformed-at", "photo-drop-at")
_TIME_KEYS: Final = ("silent-after", "silent-for", "disconnect-after", "vanish-after")
_TIMES_KEYS: Final = ("tap-at",)


def _rate(raw: str) -> float:
    rate = float(raw)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("a rate is 0..1")
    return rate


def _indices(raw: str) -> frozenset[int]:
    items = {int(v) for v in raw.split(",") if v.strip()}
    if any(i < 0 for i in items):
        raise ValueError("indices are >= 0")
    return frozenset(items)


def _seconds(raw: str) -> float:
    seconds = float(raw)
    if seconds < 0:
        raise ValueError("seconds are >= 0")
    return seconds


def _times(raw: str) -> frozenset[float]:
    times = {float(v) for v in raw.split(",") if v.strip()}
    if not times or any(t < 0 for t in times):
        raise ValueError("give seconds >= 0, e.g. 1.5,4")
    return frozenset(times)


_READERS: Final[dict[str, Callable[[str], Any]]] = {
    **dict.fromkeys(_RATE_KEYS, _rate),
    **dict.fromkeys(_INDEX_KEYS, _indices),
    **dict.fromkeys(_TIME_KEYS, _seconds),
    **dict.fromkeys(_TIMES_KEYS, _times),
    "seed": int,
}


@dataclass(frozen=True, slots=True)
class Faults:
    """What to break. Rates are per audio notification (0..1); indices count the audio
    notifications (or photo chunks) of each connection from 0; times count seconds of
    streaming since the first connection's stream began and fire once per instance."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # send this notification after the next one
    malformed: float = 0.0  # send a too-short notification before this one
    drop_at: frozenset[int] = frozenset()
    duplicate_at: frozenset[int] = frozenset()
    reorder_at: frozenset[int] = frozenset()
    malformed_at: frozenset[int] = frozenset()
    photo_drop_at: frozenset[int] = frozenset()
    silent_after: float | None = None  # stop sending audio, stay connected
    silent_for: float | None = None  # ... for this long (None: until the link ends)
    disconnect_after: float | None = None  # terminate the connection
    vanish_after: float | None = None  # radio gone: stop advertising, links time out
    tap_at: frozenset[float] = frozenset()  # the wearer taps the glasses at these times
    seed: int = 0

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        """``name=value`` items, e.g. ``drop=0.05``, ``drop-at=3,4``, ``silent-after=2``,
        ``tap-at=1.5,4``.

        ValueError with one line naming the item on any mistake.
        """
        values: dict[str, Any] = {}
        for spec in specs:
            name, sep, raw = spec.partition("=")
            name = name.strip().lower()
            if not sep:
                raise ValueError(f"--fault {spec!r}: expected name=value")
            try:
                reader = _READERS.get(name)
                if reader is None:
                    raise ValueError(f"unknown fault (known: {', '.join(_READERS)})")
                values[name.replace("-", "_")] = reader(raw)
            except ValueError as exc:
                raise ValueError(f"--fault {spec!r}: {exc}") from None
        return cls(**values)


class FaultTarget(Protocol):
    """What the clock does to the glasses."""

    def go_silent(self, seconds: float | None = None) -> None: ...

    async def tap(self) -> bool: ...

    async def disconnect(self) -> None: ...

    async def vanish(self) -> None: ...


class FaultClock:
    """Seconds streamed since the first stream began; fires the time-based faults."""

    def __init__(self, faults: Faults, report: Report) -> None:
        self.faults = faults
        self.report = report
        self.seconds: float | None = None  # None until the first stream begins
        self._fired: set[str] = set()

    def advance(self, seconds: float) -> None:
        """The microphone streamed `seconds` more."""
        self.seconds = (self.seconds or 0.0) + seconds

    def _due(self, name: str, at: float | None) -> bool:
        if at is None or name in self._fired or self.seconds is None:
            return False
        if self.seconds < at:
            return False
        self._fired.add(name)
        self.report.stats.faults_fired.append(name)
        self.report.emit("fault", fault=name)
        return True

    async def run(self, glasses: FaultTarget) -> None:
        """Fires the time-based faults once each, on the streamed-seconds clock."""
        f = self.faults
        if (
            f.silent_after is None
            and f.disconnect_after is None
            and f.vanish_after is None
            and not f.tap_at
        ):
            return
        while True:
            await asyncio.sleep(0.02)
            if self._due("silent", f.silent_after):
                glasses.go_silent(f.silent_for)
            for at in sorted(f.tap_at):
                if self._due(f"tap@{at:g}", at):
                    await glasses.tap()
            if self._due("disconnect", f.disconnect_after):
                await glasses.disconnect()
            if self._due("vanish", f.vanish_after):
                await glasses.vanish()
                return

"""Everything a soak run leaves behind, as plain data the checks can judge.

Kept apart from the rig so the checks are pure: a unit test builds an `Evidence` by
hand (a duplicate answer, a leaking lifetime) and sees the check fail, without a
socket or a process.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.live_server import (
    ConnectionRecord,
    ToolCallRecord,
    ToolCancellationRecord,
    ToolResponseRecord,
    TurnRecord,
)
from simulator.soak.daemon_proc import Lifetime
from simulator.soak.injector import FaultRecord
from simulator.soak.rig import GlassesEvent

if TYPE_CHECKING:
    from simulator.soak.injector import Injector
    from simulator.soak.rig import Rig

__all__ = ["Evidence", "collect_evidence", "log_levels", "log_problems"]

# What must never be in the daemon's log: an exception nobody handled.
PROBLEM = re.compile(
    r"Traceback \(most recent call last\)|exception was never retrieved|"
    r"Exception in callback|Task was destroyed but it is pending|\bCRITICAL\b|"
    r"Fatal error|Unclosed|unhandled|daemon\.crash"  # daemon.crash: the asyncio handler's log
)
MAX_PROBLEM_LINES = 20
LEVEL = re.compile(r" (WARNING|ERROR|CRITICAL) ([\w.]+):")


@dataclass
class Evidence:
    """What happened in one run, from every side: injector, daemon, server, peers."""

    seed: int
    duration: float
    stopped: str  # why the run ended early ("" if it did not)
    final_code: int | None  # the daemon's exit status at the end (SIGTERM)
    faults: list[FaultRecord]
    lifetimes: list[Lifetime]
    connections: list[ConnectionRecord]
    calls: list[ToolCallRecord]
    responses: list[ToolResponseRecord]  # accepted answers (one per call at most)
    duplicates: list[ToolResponseRecord]  # answers to calls already answered
    unexpected: list[ToolResponseRecord]  # answers to no pending call (duplicates too)
    cancellations: list[ToolCancellationRecord]
    turns: list[TurnRecord]
    commands: list[tuple[float, str, str]]  # (t, topic, payload) seen on command topics
    glasses_events: list[GlassesEvent]
    glasses_frames: int
    server_errors: list[str]
    broker_errors: list[str] = field(default_factory=list)  # the rig's own mosquitto
    log_problems: dict[int, list[str]] = field(default_factory=dict)  # by lifetime
    log_levels: dict[str, int] = field(default_factory=dict)  # "WARNING daemon.x" -> lines
    command_topics: dict[str, str] = field(default_factory=dict)  # topic -> device id

    def lifetime_at(self, t: float) -> Lifetime | None:
        """The daemon lifetime that held moment `t`."""
        return next((life for life in self.lifetimes if life.holds(t)), None)

    def connections_of(self, life: Lifetime, until: float | None = None) -> list[ConnectionRecord]:
        """Server connections the daemon opened in `life` (set up by `until`, if given)."""
        out = []
        for c in self.connections:
            if not life.holds(c.started_at):
                continue
            if until is not None and (c.setup_completed_at is None
                                      or c.setup_completed_at > until):
                continue
            out.append(c)
        return out


def log_problems(path: Path, limit: int = MAX_PROBLEM_LINES) -> list[str]:
    """The lines of a daemon log that show an exception nobody handled."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return [f"cannot read {path}: {exc}"]
    lines = [line for line in text.splitlines() if PROBLEM.search(line)]
    return lines[:limit]


def log_levels(paths: Sequence[Path]) -> dict[str, int]:
    """Warning and error lines of the daemon's logs, counted by level and logger."""
    counts: Counter[str] = Counter()
    for path in paths:
        try:
            with path.open(errors="replace") as lines:
                for line in lines:
                    if (m := LEVEL.search(line)) is not None:
                        counts[f"{m.group(1)} {m.group(2)}"] += 1
        except OSError:
            continue
    return dict(counts.most_common())


def _topics(rig: Rig) -> dict[str, str]:
    return {topic: f"sim-{dev.object_id}" for dev in rig.home.devices.values()
            for topic in dev.command_topics()}


def collect_evidence(
    rig: Rig, injector: Injector, seed: int, duration: float, stopped: str,
    final_code: int | None,
) -> Evidence:
    """Take everything the run left in the rig, the injector and the logs."""
    server = rig.server
    lifetimes = list(rig.daemon.lifetimes)
    return Evidence(
        seed=seed,
        duration=duration,
        stopped=stopped,
        final_code=final_code,
        faults=list(injector.records),
        lifetimes=lifetimes,
        connections=list(server.connections),
        calls=list(server.tool_calls),
        responses=list(server.tool_responses),
        duplicates=list(server.duplicate_tool_responses),
        unexpected=list(server.unexpected_tool_responses),
        cancellations=list(server.tool_cancellations),
        turns=list(server.turns),
        commands=list(rig.monitor.commands),
        glasses_events=list(rig.glasses.events),
        glasses_frames=rig.glasses.frames(),
        server_errors=list(server.internal_errors),
        broker_errors=[line for line in rig.broker.log_text().splitlines()
                       if "Error:" in line][:MAX_PROBLEM_LINES],
        log_problems={life.index: log_problems(life.log_path) for life in lifetimes},
        log_levels=log_levels([life.log_path for life in lifetimes]),
        command_topics=_topics(rig),
    )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; nan when empty."""
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def as_json(value: Any) -> Any:
    """A JSON-safe copy of figures (tuples to lists, keys to strings)."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value

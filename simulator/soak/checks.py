"""The verdicts of a soak run: each check reads the `Evidence` and says ok or not, why,
and the figures the report prints.

The checks and what they hold the run to:
- process: no daemon exited on its own, SIGTERM exits 0, no unhandled exception or
  traceback in any of its logs, and nothing failed inside the fake server;
- recovery: every fault recovered within its kind's bound;
- tool calls: every call the model made answered exactly once, or cancelled by the
  model, or open in a daemon that was killed or stopped (accounted apart), or lost
  with a session the daemon had to start afresh (accounted apart);
- answers: every answer from the process that got the call is a success;
- commands: no device command published twice for one call, none without a call;
- conversation: turns keep completing (no gap longer than its bound);
- audio, resources, counters: see accounting.py.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.soak.evidence import Evidence, percentile
from simulator.soak.plan import FaultKind

__all__ = ["Check", "run_checks"]

MAX_DETAILS = 12
IN_FLIGHT_AT_END = 10.0  # a call this close to the end may still be running
CONVERSATION_GAP = 45.0  # no turn completes for longer than this: the talk is stuck
FAULT_GRACE = 3.0  # a call this soon after a recovery may still meet its after-effects


@dataclass
class Check:
    """One verdict: its name, ok or not, a line of figures, and what went wrong."""

    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def fail(self, line: str) -> None:
        """Record a failure (the first few are kept word for word)."""
        self.ok = False
        if len(self.details) < MAX_DETAILS:
            self.details.append(line)


def check_process(ev: Evidence) -> Check:
    """No crash, SIGTERM exits 0, no unhandled exception in any log."""
    check = Check("process", True, "")
    ends = Counter(life.end for life in ev.lifetimes)
    for life in ev.lifetimes:
        if life.end in ("term", "final") and life.exit_code != 0:
            check.fail(f"lifetime {life.index}: SIGTERM exit status {life.exit_code}, not 0")
        elif life.end not in ("kill", "term", "final"):
            check.fail(f"lifetime {life.index} (pid {life.pid}): ended '{life.end}' with "
                       f"status {life.exit_code}; log {life.log_path}")
        for line in ev.log_problems.get(life.index, []):
            check.fail(f"lifetime {life.index} log: {line.strip()[:200]}")
    for error in ev.server_errors:
        check.fail(f"fake Live server: {error[:200]}")
    for error in ev.broker_errors:  # a broker that cannot save loses retained configs
        check.fail(f"the rig's mosquitto: {error[:200]}")
    if ev.stopped:
        check.fail(f"the run stopped early: {ev.stopped}")
    problems = sum(len(v) for v in ev.log_problems.values())
    how = ", ".join(f"{n} {e}" for e, n in ends.items())
    check.summary = (f"{len(ev.lifetimes)} lifetimes ({how}), "
                     f"{problems} log lines with an unhandled exception")
    errors = sum(n for k, n in ev.log_levels.items() if not k.startswith("WARNING"))
    warnings = sum(n for k, n in ev.log_levels.items() if k.startswith("WARNING"))
    check.summary += f"; {warnings} warnings and {errors} errors logged (the faults' own)"
    check.figures = {"lifetimes": len(ev.lifetimes), "ends": dict(ends), "log_problems": problems,
                     "log_levels": ev.log_levels}
    return check


def check_recovery(ev: Evidence) -> Check:
    """Every fault back within its bound; figures by kind."""
    check = Check("recovery", True, "")
    by_kind: dict[FaultKind, list[float]] = defaultdict(list)
    failed: Counter[FaultKind] = Counter()
    for rec in ev.faults:
        if rec.recovery is None or rec.detail:
            failed[rec.kind] += 1
            check.fail(f"fault {rec.planned.index} {rec.planned.describe()} (lifetime "
                       f"{rec.lifetime}): {rec.detail or 'not recovered'}")
            continue
        by_kind[rec.kind].append(rec.recovery)
        if rec.recovery > rec.bound:
            failed[rec.kind] += 1
            check.fail(f"fault {rec.planned.index} {rec.planned.describe()}: recovered in "
                       f"{rec.recovery:.2f} s, bound {rec.bound:.0f} s")
    rows = {}
    for kind in FaultKind:
        times = by_kind.get(kind, [])
        n = len(times) + sum(1 for r in ev.faults if r.kind is kind and r.recovery is None)
        if not n:
            continue
        bound = next(r.bound for r in ev.faults if r.kind is kind)
        rows[kind.value] = {
            "n": n, "failed": failed[kind], "bound": bound,
            "p50": percentile(times, 50), "p99": percentile(times, 99),
            "max": max(times) if times else float("nan"),
        }
    check.figures = {"faults": len(ev.faults), "by_kind": rows}
    check.summary = (f"{len(ev.faults)} faults of {len(rows)} kinds, "
                     f"{sum(failed.values())} not recovered within their bound")
    return check


def _call_fate(ev: Evidence, answered: set[str], cancelled: set[str],
               resumed_later: Callable[[int, float], bool]) -> Callable[..., str]:
    """A function naming what became of one call (see `check_tool_calls`)."""
    end = max((life.ended_at or 0.0 for life in ev.lifetimes), default=0.0)

    def fate(call: Any) -> str:
        if call.id in answered:
            return "answered"
        if call.id in cancelled:
            return "cancelled"
        life = ev.lifetime_at(call.t)
        if life is not None and life.end in ("kill", "term"):
            return f"open_at_{life.end}"
        if end and call.t > end - IN_FLIGHT_AT_END:
            return "in_flight_at_end"
        if not resumed_later(call.connection, call.t):
            return "lost_with_session"
        return "unanswered"

    return fate


def check_tool_calls(ev: Evidence) -> Check:
    """Every call answered exactly once, or cancelled, or accounted apart."""
    check = Check("tool calls", True, "")
    answered = Counter(r.id for r in ev.responses if r.id is not None)
    cancelled = {i for c in ev.cancellations for i in c.ids}
    sessions = {c.index: c.session_id for c in ev.connections}

    def resumed_later(conn_index: int, t: float) -> bool:
        session = sessions.get(conn_index)
        return session is not None and any(
            c.session_id == session and c.index > conn_index for c in ev.connections)

    fate = _call_fate(ev, set(answered), cancelled, resumed_later)
    fates: Counter[str] = Counter()
    for call in ev.calls:
        what = fate(call)
        fates[what] += 1
        if what == "unanswered":
            check.fail(f"call {call.id} {call.name}{dict(call.args)} at connection "
                       f"{call.connection}: never answered nor cancelled")
        if answered[call.id] > 1:
            check.fail(f"call {call.id}: {answered[call.id]} answers accepted")
    for dup in ev.duplicates:
        check.fail(f"call {dup.id} {dup.name}: answered again on connection {dup.connection}")
    late = [r for r in ev.unexpected if r.id in cancelled]
    for r in late:
        check.fail(f"call {r.id} {r.name}: answered after the model cancelled it")
    others = len(ev.unexpected) - len(ev.duplicates) - len(late)
    check.figures = {"calls": len(ev.calls), **fates, "duplicates": len(ev.duplicates),
                     "after_cancel": len(late), "unexpected_other": others}
    check.summary = (f"{len(ev.calls)} calls: " + ", ".join(
        f"{n} {what.replace('_', ' ')}" for what, n in sorted(fates.items()))
        + f"; {len(ev.duplicates)} answered twice")
    return check


def check_commands(ev: Evidence) -> Check:
    """Each device command seen on the broker belongs to one call, and no call has two."""
    check = Check("device commands", True, "")
    calls_by_device: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for call in ev.calls:
        if call.name == "control_device":
            calls_by_device[str(call.args.get("device_id"))].append((call.t, call.id))
    for calls in calls_by_device.values():
        calls.sort()
    per_call: Counter[str] = Counter()
    orphans = 0
    for t, topic, payload in ev.commands:
        device = ev.command_topics.get(topic, "")
        calls = calls_by_device.get(device, [])
        i = bisect_right(calls, (t, "\uffff")) - 1
        if i < 0:
            orphans += 1
            check.fail(f"{topic} {payload!r} at {t:.3f}: no call asked for it")
            continue
        per_call[calls[i][1]] += 1
    twice = {cid: n for cid, n in per_call.items() if n > 1}
    for cid, n in twice.items():
        check.fail(f"call {cid}: its command published {n} times")
    control_calls = sum(len(v) for v in calls_by_device.values())
    check.figures = {"commands": len(ev.commands), "control_calls": control_calls,
                     "calls_with_command": len(per_call), "published_twice": len(twice),
                     "without_call": orphans}
    check.summary = (f"{len(ev.commands)} commands for {control_calls} control calls; "
                     f"{len(twice)} published twice, {orphans} without a call")
    return check


def _failure(response: Any) -> str | None:
    """Why an answer is not a success (an error, or a device command that failed)."""
    if not isinstance(response, dict):
        return None
    if "error" in response:
        return str(response["error"])[:160]
    out = response.get("output")
    if isinstance(out, dict) and out.get("status") == "failed":
        return str(out.get("message", "failed"))[:160]
    return None


def check_answers(ev: Evidence) -> Check:
    """What the model was told works: every call answered by the process that received
    it is a success (a command sent to a silent device counts as sent). Errors only
    come from a restart's 'interrupted' answers, which the tool call check accounts."""
    check = Check("answers", True, "")
    lifetime_of_conn = {c.index: ev.lifetime_at(c.started_at) for c in ev.connections}
    calls = {c.id: c for c in ev.calls}
    kinds: Counter[str] = Counter()
    for r in ev.responses:
        call = calls.get(r.id or "")
        if call is None or lifetime_of_conn.get(r.connection) is not lifetime_of_conn.get(
                call.connection):
            continue  # answered by a later process: an interrupted call
        why = _failure(r.response)
        if why is None:
            kinds["ok"] += 1
            continue
        if _fault_time(ev, call.t - FAULT_GRACE, call.t) > 0:
            kinds["failed_during_fault"] += 1  # e.g. devices offline while the broker restarts
            continue
        kinds["failed"] += 1
        check.fail(f"call {call.id} {call.name}{dict(call.args)} at t={call.t:.1f} answered "
                   f"with a failure: {why}")
    check.figures = dict(kinds)
    check.summary = (f"{kinds['ok']} answers by the process that got the call were "
                     f"successes, {kinds['failed_during_fault']} failures while a fault was "
                     f"being recovered from, {kinds['failed']} other failures")
    return check


def _fault_time(ev: Evidence, a: float, b: float) -> float:
    """Seconds of [a, b] during which a fault was being recovered from."""
    total = 0.0
    for rec in ev.faults:
        end = rec.recovered_at if rec.recovered_at is not None else rec.at + rec.bound
        total += max(0.0, min(b, end) - max(a, rec.at))
    return total


def check_conversation(ev: Evidence, max_gap: float = CONVERSATION_GAP) -> Check:
    """Turns keep completing: the longest stretch without one stays under `max_gap`."""
    check = Check("conversation", True, "")
    done = sorted(t.turn_complete_at for t in ev.turns if t.turn_complete_at is not None)
    starts = [life.ready_at for life in ev.lifetimes if life.ready_at is not None]
    ends = [life.ended_at for life in ev.lifetimes if life.ended_at is not None]
    if not starts or not done:
        check.fail("no turn completed")
        check.summary = "no turn completed"
        return check
    marks = [min(starts), *done, max(ends) if ends else done[-1]]
    gaps = [(b - a, a) for a, b in itertools.pairwise(marks)]
    longest = max(gaps)[0]
    for gap, start in gaps:
        # Time spent recovering from faults does not count: a daemon restarted every
        # few seconds cannot finish an utterance, and is not stuck for that.
        busy = _fault_time(ev, start, start + gap)
        if gap - busy > max_gap:
            check.fail(f"no turn completed for {gap:.1f} s from t={start:.1f}, {busy:.1f} s "
                       f"of it recovering from faults (bound {max_gap:.0f} s besides)")
    interrupted = sum(1 for t in ev.turns if t.interrupted)
    check.figures = {"turns": len(ev.turns), "completed": len(done), "interrupted": interrupted,
                     "longest_gap": longest}
    check.summary = (f"{len(done)} turns completed of {len(ev.turns)} started, longest "
                     f"stretch without one {longest:.1f} s")
    return check


def run_checks(ev: Evidence) -> list[Check]:
    """Every check, in the report's order."""
    from simulator.soak.accounting import check_audio, check_counters, check_resources

    return [
        check_process(ev),
        check_recovery(ev),
        check_tool_calls(ev),
        check_answers(ev),
        check_commands(ev),
        check_audio(ev),
        check_resources(ev),
        check_counters(ev),
        check_conversation(ev),
    ]

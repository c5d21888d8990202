"""The checks that balance books: audio, resources, and the daemon's counters against
what the injector did. Each works per daemon lifetime, since a process's counters and
memory start from nothing; the figures add the lifetimes up.

A killed process cannot be asked afterwards, so each lifetime is judged at its last
scrape of /metrics, taken right before the kill (or at the end of the run), and only
the faults fired before that scrape are held against it.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from simulator.soak.checks import Check
from simulator.soak.daemon_proc import Lifetime, MetricsSnapshot, ProcSample
from simulator.soak.evidence import Evidence
from simulator.soak.injector import FaultRecord
from simulator.soak.plan import CLOSE_CODES, PROCESS_KINDS, FaultKind

__all__ = ["check_audio", "check_counters", "check_resources"]

BYTES_PER_SECOND = 32_000  # 16 kHz, 16-bit mono: what the Live uplink carries
AUDIO_SLACK_S = 0.5  # per lifetime: audio after its last scrape, rounding
BLE_FAULT_FRAMES = 10  # frames a dying link may swallow (200 ms), per BLE fault
BLE_IN_FLIGHT_FRAMES = 25  # frames between the glasses and a busy daemon at a scrape
CUT_LOSS_S = 0.6  # live.confirm_interval (0.5 s) and a round trip: on the wire at a cut
RSS_LIMIT_KB = 5 * 1024
MIN_CALM_SAMPLES = 10  # fewer after warm-up: the lifetime is too short to judge
# asyncio's default executor starts its worker threads one by one as writes overlap
# (the state record, the health server) and keeps them: bounded, not a leak
EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)
WINDOW = 5  # samples at each end whose median (RSS) or minimum (counts) is compared


def _faults_in(ev: Evidence, life: Lifetime, until: float) -> list[FaultRecord]:
    """The faults fired at this lifetime before `until` (its own end excluded)."""
    return [f for f in ev.faults
            if f.lifetime == life.index and f.at <= until and f.kind not in PROCESS_KINDS]


# -- audio ----------------------------------------------------------------------------

def _ble_sent(ev: Evidence, life: Lifetime, snap: MetricsSnapshot) -> int:
    """Audio frames the glasses sent on links to this lifetime's daemon, up to `snap`."""
    total, start = 0, None
    for e in ev.glasses_events:
        if e.t > snap.t:
            break
        if e.event == "connected" and life.holds(e.t):
            start = e.frames
        elif e.event in ("disconnected", "vanished") and start is not None:
            total += e.frames - start
            start = None
    if start is not None:
        total += snap.glasses_frames - start
    return total


@dataclass
class _AudioBook:
    """One lifetime's audio, in seconds, from the glasses to the server."""

    glasses: float
    daemon_in: float
    server: float
    counted: float  # losses the daemon counted (BLE gaps, drops, withheld, still queued)
    allowed: float  # lost where the injector cut a BLE link
    taken: float  # unconfirmed at a close, taken as delivered by the daemon
    lost_taken: float  # of which never reached the server
    resent: float  # sent twice after a stall, by the daemon's count
    ble_uncounted: float
    uplink_uncounted: float
    surplus: float  # reached the server beyond what came in and was resent


def _closes(ev: Evidence, life: Lifetime, until: float) -> int:
    """Live faults that cut a socket under the daemon's audio (not a stall, not a GoAway)."""
    cut = {FaultKind.LIVE_CLOSE, FaultKind.LIVE_ABORT, FaultKind.LIVE_REJECT_RESUME,
           FaultKind.LIVE_SETUP_HANG, FaultKind.LIVE_REFUSED}
    return sum(1 for f in _faults_in(ev, life, until) if f.kind in cut)


def _audio_book(ev: Evidence, life: Lifetime, snap: MetricsSnapshot) -> _AudioBook:
    chunks = snap.stat("peripheral", "media.audio_chunks")
    daemon_in = snap.stat("peripheral", "media.audio_seconds")
    chunk_s = daemon_in / chunks if chunks else 0.02
    frame_s = chunk_s  # one Opus frame per chunk on the omi profile
    sent_frames = _ble_sent(ev, life, snap)
    got_frames = snap.stat("peripheral", "audio_framing.frames")
    ble_counted = snap.stat("peripheral", "audio_framing.missing_packets")
    ble_faults = sum(1 for f in _faults_in(ev, life, snap.t)
                     if f.kind in (FaultKind.BLE_DISCONNECT, FaultKind.BLE_VANISH))
    allowed = BLE_FAULT_FRAMES * ble_faults
    ble_uncounted = sent_frames - got_frames - ble_counted - allowed - BLE_IN_FLIGHT_FRAMES
    unconfirmed = snap.by_label("edge_live_uplink_unconfirmed_at_close_chunks_total", "reason")
    resent = unconfirmed.pop("stall", 0.0) * chunk_s
    taken = sum(unconfirmed.values()) * chunk_s
    lost_counted = (
        snap.value("edge_live_uplink_audio_dropped_chunks_total")
        + snap.value("edge_uplink_withheld_total", kind="audio")
        + snap.value("edge_uplink_withheld_total", kind="echo_gate")
    ) * chunk_s + snap.value("edge_live_replay_buffer_seconds")
    server = sum(c.audio_bytes for c in ev.connections_of(life)) / BYTES_PER_SECOND
    missing = max(0.0, daemon_in - server - lost_counted)
    # What crossed a cut socket unconfirmed may be lost, but only what was on the
    # wire at the cut: a confirmation window per cut, never seconds of it.
    excusable = min(taken, _closes(ev, life, snap.t) * CUT_LOSS_S)
    return _AudioBook(
        glasses=sent_frames * frame_s,
        daemon_in=daemon_in,
        server=server,
        counted=ble_counted * frame_s + lost_counted,
        allowed=allowed * frame_s,
        taken=taken,
        lost_taken=min(missing, taken),
        resent=resent,
        ble_uncounted=max(0.0, ble_uncounted) * frame_s,
        uplink_uncounted=max(0.0, missing - excusable - AUDIO_SLACK_S),
        surplus=max(0.0, server - daemon_in - resent - AUDIO_SLACK_S),
    )


def check_audio(ev: Evidence) -> Check:
    """Audio lost only where the counters (or the injector) say so, per lifetime."""
    check = Check("audio", True, "")
    totals: Counter[str] = Counter()
    for life in ev.lifetimes:
        snap = life.last
        if snap is None:
            continue
        book = _audio_book(ev, life, snap)
        for name, value in vars(book).items():
            totals[name] += value
        if book.ble_uncounted > 0:
            check.fail(f"lifetime {life.index}: {book.ble_uncounted:.2f} s of glasses audio "
                       f"never reached the daemon and no counter says so")
        if book.uplink_uncounted > 0:
            check.fail(f"lifetime {life.index}: {book.uplink_uncounted:.2f} s of audio never "
                       f"reached the server beyond what the daemon counted as lost (of "
                       f"{book.taken:.2f} s it took as delivered at a close)")
        if book.surplus > 0:
            check.fail(f"lifetime {life.index}: the server got {book.surplus:.2f} s more "
                       f"audio than came in and was resent")
    check.figures = {k: round(v, 2) for k, v in totals.items()}
    check.summary = (
        f"glasses {totals['glasses']:.1f} s -> daemon {totals['daemon_in']:.1f} s -> server "
        f"{totals['server']:.1f} s; counted losses {totals['counted']:.1f} s, lost at "
        f"injected BLE cuts <= {totals['allowed']:.1f} s, taken as delivered at a close "
        f"{totals['taken']:.1f} s (never arrived: {totals['lost_taken']:.2f} s), resent "
        f"after stalls {totals['resent']:.1f} s; uncounted "
        f"{totals['ble_uncounted'] + totals['uplink_uncounted']:.2f} s"
    )
    return check


# -- resources ------------------------------------------------------------------------

def _floor(values: list[int]) -> int:
    return min(values) if values else 0


def _second_half_growth(calm: list[ProcSample]) -> float:
    """RSS growth (kB) from the middle of the judged window to its end."""
    mid = len(calm) // 2
    middle = calm[max(0, mid - WINDOW // 2):mid + WINDOW // 2 + 1]
    return (statistics.median(s.rss_kb for s in calm[-WINDOW:])
            - statistics.median(s.rss_kb for s in middle))


def _judge_lifetime(life: Lifetime, check: Check) -> dict[str, Any] | None:
    """RSS growth and task, fd and thread floors of one lifetime after its warm-up."""
    if life.warm_at is None:
        return None
    calm = [s for s in life.samples if s.calm and s.t >= life.warm_at]
    if len(calm) < MIN_CALM_SAMPLES:
        return None
    head, tail = calm[:WINDOW], calm[-WINDOW:]
    rss = (statistics.median(s.rss_kb for s in tail)
           - statistics.median(s.rss_kb for s in head))
    tasks = [s.tasks for s in calm if s.tasks is not None]
    row: dict[str, Any] = {
        "lifetime": life.index,
        "seconds": round(calm[-1].t - calm[0].t),
        "rss_start_mb": round(statistics.median(s.rss_kb for s in head) / 1024, 1),
        "rss_growth_mb": round(rss / 1024, 2),
        # a leak keeps growing in the second half; an allocator settling does not
        "rss_growth_second_half_mb": round(_second_half_growth(calm) / 1024, 2),
        "fds": (_floor([s.fds for s in head]), _floor([s.fds for s in tail])),
        "threads": (_floor([s.threads for s in head]), _floor([s.threads for s in tail])),
        "tasks": (_floor(tasks[:3]), _floor(tasks[-3:])) if len(tasks) >= 4 else None,
    }
    if rss > RSS_LIMIT_KB:
        check.fail(f"lifetime {life.index}: RSS grew {rss / 1024:.1f} MB after warm-up")
    for what, allowed in (("fds", 0), ("threads", EXECUTOR_THREADS), ("tasks", 0)):
        pair = row[what]
        if isinstance(pair, tuple) and pair[1] > pair[0] + allowed:
            check.fail(f"lifetime {life.index}: {what} floor grew from {pair[0]} to {pair[1]}")
    return row


def check_resources(ev: Evidence) -> Check:
    """RSS growth under 5 MB after warm-up; no growth of task, fd or thread floors."""
    check = Check("resources", True, "")
    rows = [row for life in ev.lifetimes if (row := _judge_lifetime(life, check)) is not None]
    peak = max((s.rss_kb for life in ev.lifetimes for s in life.samples), default=0)
    check.figures = {"judged": rows, "peak_rss_mb": round(peak / 1024, 1)}
    if not rows:
        check.summary = "no lifetime long enough after warm-up to judge"
        return check
    worst = max(rows, key=lambda r: r["rss_growth_mb"])
    longest = max(rows, key=lambda r: r["seconds"])
    check.summary = (
        f"{len(rows)} lifetimes judged; RSS growth at most {worst['rss_growth_mb']:.2f} MB "
        f"(lifetime {worst['lifetime']}); longest {longest['seconds']} s: fds "
        f"{longest['fds'][0]}->{longest['fds'][1]}, tasks {longest['tasks']}; peak RSS "
        f"{peak / 1024:.1f} MB"
    )
    return check


# -- counters -------------------------------------------------------------------------

@dataclass
class _Row:
    """One counter compared with what the injector did: exactly, or as a bound."""

    name: str
    expected: float
    actual: float
    rule: str  # "==" | "<=" | ">="

    def holds(self) -> bool:
        if self.rule == "==":
            return abs(self.actual - self.expected) < 1e-6
        if self.rule == "<=":
            return self.actual <= self.expected + 1e-6
        return self.actual >= self.expected - 1e-6


def _count(faults: list[FaultRecord], *kinds: FaultKind, effect: str | None = None) -> int:
    picked = [f for f in faults if f.kind in kinds]
    if effect is None:
        return len(picked)
    return sum(f.effects.get(effect, 0) for f in picked)


def _live_rows(ev: Evidence, life: Lifetime, snap: MetricsSnapshot,
               faults: list[FaultRecord]) -> list[_Row]:
    conns = ev.connections_of(life, until=snap.t)
    reasons = snap.by_label("edge_live_disconnects_total", "reason")
    deadline = sum(1 for c in conns if c.close_sent == (1011, "Deadline expired")
                   and any(f == "goaway" for _, f in c.faults))
    goaways = _count(faults, FaultKind.LIVE_GOAWAY)
    queued = (FaultKind.LIVE_REJECT_RESUME, FaultKind.LIVE_SETUP_HANG, FaultKind.LIVE_REFUSED)
    triggers = _count(faults, *queued)
    rows = [
        _Row("live connects = setups the server completed", len(conns),
             snap.value("edge_live_connects_total", result="fresh")
             + snap.value("edge_live_connects_total", result="resumed"), "=="),
        _Row("live disconnects = live faults", sum(1 for f in faults if f.kind.value.startswith(
            "live_")), sum(reasons.values()), "=="),
        _Row("live disconnects: stall = quiet or deaf servers",
             _count(faults, FaultKind.LIVE_QUIET, FaultKind.LIVE_DEAF),
             reasons.get("stall", 0.0), "=="),
        _Row("live disconnects: closed:1006 = TCP aborts", _count(faults, FaultKind.LIVE_ABORT),
             reasons.get("closed:1006", 0.0), "=="),
        _Row("live disconnects: goaway = GoAways handed over", goaways - deadline,
             reasons.get("goaway", 0.0), "=="),
        _Row("live connects: resume_refused = refused resumes",
             _count(faults, FaultKind.LIVE_REJECT_RESUME, effect="reject_resume"),
             snap.value("edge_live_connects_total", result="resume_refused"), "=="),
        _Row("live connects: setup_timeout = hung setups",
             _count(faults, FaultKind.LIVE_SETUP_HANG, effect="setup_hang"),
             snap.value("edge_live_connects_total", result="setup_timeout"), "=="),
        _Row("live refusals: http_403 = refused handshakes",
             _count(faults, FaultKind.LIVE_REFUSED, effect="reject_key"),
             snap.value("edge_live_refusals_total", reason="http_403"), "=="),
        _Row("fresh sessions: invalid_request = 1007 closes",
             sum(1 for f in faults if f.kind is FaultKind.LIVE_CLOSE
                 and f.planned.params.get("code") == 1007),
             snap.value("edge_live_fresh_sessions_total", reason="invalid_request"), "=="),
    ]
    for code in CLOSE_CODES:
        want = sum(1 for f in faults if f.kind is FaultKind.LIVE_CLOSE
                   and f.planned.params.get("code") == code)
        if code == 1011:
            want += triggers + deadline
        rows.append(_Row(f"live disconnects: closed:{code} = closes with {code}", want,
                         reasons.get(f"closed:{code}", 0.0), "=="))
    return rows


def _peer_rows(ev: Evidence, snap: MetricsSnapshot, faults: list[FaultRecord]) -> list[_Row]:
    ble = _count(faults, FaultKind.BLE_DISCONNECT, FaultKind.BLE_VANISH)
    brokers = _count(faults, FaultKind.BROKER_RESTART, FaultKind.BROKER_KILL)
    lost = sum(v for (n, ls), v in snap.samples.items() if n == "edge_peripheral_stat"
               and dict(ls).get("key", "").startswith("link.disconnects."))
    cancels = _count(faults, FaultKind.TOOL_CANCEL, effect="cancelled")
    return [
        _Row("BLE connects = 1 + glasses cut off", 1 + ble,
             snap.stat("peripheral", "link.connects"), "=="),
        _Row("BLE link losses = glasses cut off", ble, lost, "=="),
        _Row("malformed notifications counted = sent",
             _count(faults, FaultKind.BLE_MALFORMED, effect="malformed"),
             snap.stat("peripheral", "audio_framing.malformed"), "=="),
        _Row("silence watchdog disconnects = 0", 0,
             snap.stat("peripheral", "media.watchdog_disconnects"), "=="),
        _Row("MQTT connects = 1 + broker faults", 1 + brokers,
             snap.value("edge_mqtt_events_total", event="connects"), "=="),
        _Row("MQTT losses = broker faults", brokers,
             snap.value("edge_mqtt_events_total", event="disconnects"), "=="),
        _Row("tool calls cancelled = calls the model cancelled mid-flight", cancels,
             snap.value("edge_tool_calls_total", outcome="cancelled"), "=="),
        _Row("commands sent unconfirmed >= silent devices",
             _count(faults, FaultKind.DEVICE_SILENT),
             snap.value("edge_home_commands_total", result="sent_unconfirmed"), ">="),
    ]


def _flow_rows(ev: Evidence, life: Lifetime, snap: MetricsSnapshot) -> list[_Row]:
    conns = {c.index for c in ev.connections_of(life)}
    made = sum(1 for c in ev.calls if c.connection in conns and c.t <= snap.t)
    seen = sum(1 for t, _, _ in ev.commands if life.started_at <= t <= snap.t)
    published = sum(snap.value("edge_home_commands_total", result=r)
                    for r in ("done", "sent_unconfirmed", "broker_unacked"))
    finished = snap.value("edge_tool_calls_total")
    return [
        _Row("tool calls finished <= calls made", made, finished, "<="),
        _Row("commands seen on the broker <= published + cancelled or unfinished calls",
             published + snap.value("edge_tool_calls_total", outcome="cancelled")
             + max(0.0, made - finished), seen, "<="),
        _Row("uplink chunks sent <= chunks in + resent after stalls",
             snap.stat("peripheral", "media.audio_chunks")
             + snap.value("edge_live_uplink_unconfirmed_at_close_chunks_total", reason="stall"),
             snap.value("edge_live_uplink_audio_chunks_total"), "<="),
        _Row("reconnect gaps timed = live connects - 1",
             snap.value("edge_live_connects_total", result="fresh")
             + snap.value("edge_live_connects_total", result="resumed") - 1,
             snap.value("edge_live_reconnect_gap_seconds_count"), "=="),
    ]


def _left_open(ev: Evidence, life: Lifetime) -> int:
    """Calls the process before `life` was killed or stopped with, unanswered by it."""
    if life.index == 0:
        return 0
    before = ev.lifetimes[life.index - 1]
    conns = {c.index for c in ev.connections_of(before)}
    answered = {r.id for r in ev.responses if r.connection in conns}
    cancelled = {i for c in ev.cancellations for i in c.ids}
    return sum(1 for c in ev.calls if c.connection in conns
               and c.id not in answered and c.id not in cancelled)


def _restart_rows(ev: Evidence, life: Lifetime, snap: MetricsSnapshot,
                  faults: list[FaultRecord]) -> list[_Row]:
    """What a start and the stall detector count (edge_live_start_sessions, _stalls,
    _interrupted_calls)."""
    return [
        _Row("first Live sessions after a start = 1", 1,
             snap.value("edge_live_start_sessions_total"), "=="),
        _Row("stalls detected = quiet or deaf servers",
             _count(faults, FaultKind.LIVE_QUIET, FaultKind.LIVE_DEAF),
             snap.value("edge_live_stalls_total"), "=="),
        _Row("interrupted calls = calls the previous process left unanswered",
             _left_open(ev, life), snap.value("edge_live_interrupted_calls_total"), "=="),
    ]


def check_counters(ev: Evidence) -> Check:
    """Every lifetime's counters against the injector: exact where the fault decides
    the count alone, bounds where traffic adds to it."""
    check = Check("counters", True, "")
    totals: dict[str, list[float]] = {}
    rules: dict[str, str] = {}
    for life in ev.lifetimes:
        snap = life.last
        if snap is None:
            continue
        faults = _faults_in(ev, life, snap.t)
        rows = (_live_rows(ev, life, snap, faults) + _restart_rows(ev, life, snap, faults)
                + _peer_rows(ev, snap, faults) + _flow_rows(ev, life, snap))
        for row in rows:
            pair = totals.setdefault(row.name, [0.0, 0.0])
            pair[0] += row.expected
            pair[1] += row.actual
            rules[row.name] = row.rule
            if not row.holds():
                check.fail(f"lifetime {life.index}: {row.name}: expected {row.rule} "
                           f"{row.expected:g}, counted {row.actual:g}")
    check.figures = {name: {"expected": e, "actual": a, "rule": rules[name]}
                     for name, (e, a) in totals.items()}
    exact = sum(1 for r in rules.values() if r == "==")
    check.summary = (f"{len(rules)} counters compared per lifetime ({exact} exactly, "
                     f"{len(rules) - exact} as bounds); {len(check.details)} mismatches")
    return check

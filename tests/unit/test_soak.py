"""The soak's pure parts: the seeded fault plan, the script, and every check on evidence
built by hand, so each check is seen to fail on the fault it exists to catch.

The soak itself (the daemon under faults for 90 s): tests/integration/test_soak.py.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from simulator.live_server import (
    ConnectionRecord,
    ToolCallRecord,
    ToolCancellationRecord,
    ToolResponseRecord,
    TurnRecord,
)
from simulator.soak.accounting import check_audio, check_counters, check_resources
from simulator.soak.checks import (
    check_answers,
    check_commands,
    check_conversation,
    check_process,
    check_recovery,
    check_tool_calls,
    run_checks,
)
from simulator.soak.daemon_proc import Lifetime, MetricsSnapshot, ProcSample
from simulator.soak.evidence import PROBLEM, Evidence
from simulator.soak.injector import FaultRecord
from simulator.soak.plan import (
    DEFAULT_WEIGHTS,
    PROCESS_KINDS,
    FaultKind,
    PlannedFault,
    SoakScript,
    fault_plan,
)
from simulator.soak.report import SECTION_TITLE, render, write_results
from simulator.soak.rig import GlassesEvent

pytestmark = pytest.mark.timeout(30)

# -- the plan ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_faults_and_another_seed_others() -> None:
    first = list(itertools.islice(fault_plan(7), 60))
    assert first == list(itertools.islice(fault_plan(7), 60))
    assert [f.kind for f in first] != [f.kind for f in itertools.islice(fault_plan(8), 60)]
    assert [f.index for f in first] == list(range(60))


def test_every_deck_holds_every_kind_by_weight_and_never_opens_with_a_kill() -> None:
    deck = sum(DEFAULT_WEIGHTS.values())
    plan = list(itertools.islice(fault_plan(3, mean_pause=2.0), deck * 4))
    for n in range(4):
        part = plan[n * deck:(n + 1) * deck]
        assert Counter(f.kind for f in part) == Counter(DEFAULT_WEIGHTS)
        assert part[0].kind not in PROCESS_KINDS
    assert all(0.5 <= f.pause <= 3.5 for f in plan)
    closes = {f.params["code"] for f in plan if f.kind is FaultKind.LIVE_CLOSE}
    assert closes <= {1000, 1001, 1007, 1008, 1011, 1013} and len(closes) >= 4
    assert all(1.5 <= f.params["away"] <= 6.0 for f in plan if f.kind is FaultKind.BLE_VANISH)


def test_a_restricted_plan_fires_only_the_kinds_asked_for() -> None:
    weights = {FaultKind.LIVE_ABORT: 1, FaultKind.BROKER_KILL: 2}
    kinds = {f.kind for f in itertools.islice(fault_plan(1, weights=weights), 30)}
    assert kinds == set(weights)
    with pytest.raises(ValueError, match="nothing to fire"):
        next(fault_plan(1, weights={FaultKind.LIVE_ABORT: 0}))


def test_the_script_loops_and_serves_a_requested_turn_once() -> None:
    script = SoakScript()
    n = len(script.turns)
    assert script.turn_at(0) == script.turn_at(n)  # loops
    script.request("bedroom_fan", cancel_after_ms=300.0, action="turn_off")
    special = script.turn_at(5)
    assert special is not None and special.tool_calls[0].cancel_after_ms == 300.0
    assert dict(special.tool_calls[0].args) == {"device_id": "sim-bedroom_fan",
                                                 "action": "turn_off"}
    assert script.turn_at(5) == script.turns[5]
    assert script.turns_served == 4


# -- evidence built by hand ----------------------------------------------------------------

T0 = 1000.0


def _snap(t: float, frames: int = 500, **values: float) -> MetricsSnapshot:
    """A scrape of a healthy daemon that took in `frames` 20 ms chunks, plus `values`
    (name or name{label=value} -> number)."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {
        ("edge_peripheral_stat", frozenset({("key", "media.audio_chunks")})): frames,
        ("edge_peripheral_stat", frozenset({("key", "media.audio_seconds")})): frames * 0.02,
        ("edge_peripheral_stat", frozenset({("key", "audio_framing.frames")})): frames,
        ("edge_peripheral_stat", frozenset({("key", "link.connects")})): 1,
        ("edge_live_connects_total", frozenset({("result", "fresh")})): 1,
        ("edge_live_start_sessions_total", frozenset({("reason", "none")})): 1,
        ("edge_mqtt_events_total", frozenset({("event", "connects")})): 1,
        ("edge_live_uplink_audio_chunks_total", frozenset()): frames,
    }
    for key, value in values.items():
        name, _, label = key.partition("{")
        labels = frozenset([tuple(label.rstrip("}").split("="))]) if label else frozenset()
        samples[(name, labels)] = value  # type: ignore[index]
    return MetricsSnapshot(t, samples, glasses_frames=frames)


def _life(index: int = 0, start: float = T0, end: float = T0 + 100, how: str = "final",
          snap: MetricsSnapshot | None = None) -> Lifetime:
    life = Lifetime(index, 4242 + index, start, Path(f"/nonexistent/daemon-{index}.log"),
                    ended_at=end, end=how, exit_code=-9 if how == "kill" else 0,
                    ready_at=start + 1, warm_at=start + 5)
    life.snapshots.append(snap or _snap(end - 1))
    return life


def _conn(index: int, start: float, audio_s: float = 10.0, session: str = "s1",
          **kw: object) -> ConnectionRecord:
    rec = ConnectionRecord(index=index, api_version="v1beta", path="/ws", started_at=start,
                           setup_completed_at=start + 0.05, session_id=session,
                           audio_bytes=int(audio_s * 32000), ended_at=start + 50)
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def _call(cid: str, t: float, conn: int = 0, device: str = "sim-kitchen_light") -> ToolCallRecord:
    return ToolCallRecord(t, conn, cid, "control_device",
                          {"device_id": device, "action": "turn_on"})


def _answer(cid: str, t: float, conn: int = 0) -> ToolResponseRecord:
    return ToolResponseRecord(t, conn, cid, "control_device", {"output": "done"}, None)


def _turns(times: list[float]) -> list[TurnRecord]:
    return [TurnRecord(0, i, True, "silence", t - 1, t - 1, turn_complete_at=t)
            for i, t in enumerate(times)]


def _evidence(**kw: object) -> Evidence:
    """A run where nothing went wrong: one lifetime, one call answered, one command."""
    base: dict[str, object] = {
        "seed": 1, "duration": 100.0, "stopped": "", "final_code": 0, "faults": [],
        "lifetimes": [_life()],
        "connections": [_conn(0, T0 + 0.5)],
        "calls": [_call("c1", T0 + 10)],
        "responses": [_answer("c1", T0 + 10.1)],
        "duplicates": [], "unexpected": [], "cancellations": [],
        "turns": _turns([T0 + 10 + 10 * i for i in range(9)]),
        "commands": [(T0 + 10.05, "sim/kitchen_light/set", "ON")],
        "glasses_events": [GlassesEvent(T0 + 0.8, "connected", 0)],
        "glasses_frames": 500,
        "server_errors": [],
        "command_topics": {"sim/kitchen_light/set": "sim-kitchen_light",
                           "sim/bedroom_fan/set": "sim-bedroom_fan"},
    }
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def _fault(kind: FaultKind, at: float, recovery: float = 0.5, lifetime: int = 0,
           **effects: int) -> FaultRecord:
    rec = FaultRecord(PlannedFault(0, kind, 1.0), lifetime, at, 15.0, back_at=at,
                      recovered_at=at + recovery, effects=dict(effects))
    return rec


def test_a_run_where_nothing_went_wrong_passes_every_check() -> None:
    checks = run_checks(_evidence())
    assert [(c.name, c.details) for c in checks if not c.ok] == []


def test_process_check_catches_a_crash_a_bad_exit_and_a_traceback(tmp_path: Path) -> None:
    log = tmp_path / "daemon-0.log"
    log.write_text("INFO ok\nTraceback (most recent call last):\n  boom\n")
    crashed = _life(how="crash")
    termed = _life(1, how="term")
    termed.exit_code = 1
    ev = _evidence(lifetimes=[crashed, termed], log_problems={0: ["Traceback (most recent"]})
    details = check_process(ev).details
    assert any("ended 'crash'" in d for d in details)
    assert any("SIGTERM exit status 1" in d for d in details)
    assert any("Traceback" in d for d in details)
    assert PROBLEM.search("Task exception was never retrieved")
    assert not PROBLEM.search("WARNING daemon.live.link: Live connection lost (stall)")


def test_recovery_check_fails_a_fault_past_its_bound_or_never_back() -> None:
    slow = _fault(FaultKind.LIVE_ABORT, T0 + 20, recovery=16.0)
    lost = _fault(FaultKind.BLE_VANISH, T0 + 40)
    lost.recovered_at, lost.detail = None, "not recovered within the bound"
    check = check_recovery(_evidence(faults=[slow, lost, _fault(FaultKind.LIVE_GOAWAY, T0 + 60)]))
    assert not check.ok and len(check.details) == 2
    assert check.figures["by_kind"]["live_goaway"]["failed"] == 0
    assert check.figures["by_kind"]["live_abort"]["max"] == pytest.approx(16.0)


def test_tool_call_check_fails_a_second_answer_and_an_unanswered_call() -> None:
    again = _answer("c1", T0 + 12, conn=1)
    ev = _evidence(duplicates=[again], unexpected=[again])
    assert not check_tool_calls(ev).ok
    # c2 was never answered although its session went on (connection 1 resumed it)
    ev = _evidence(calls=[_call("c1", T0 + 10), _call("c2", T0 + 20)],
                   connections=[_conn(0, T0 + 0.5), _conn(1, T0 + 30)])
    check = check_tool_calls(ev)
    assert not check.ok and "c2" in check.details[0]


def test_tool_calls_open_at_a_kill_or_lost_with_their_session_are_accounted_apart() -> None:
    killed = _life(0, T0, T0 + 30, "kill")
    later = _life(1, T0 + 30.5, T0 + 100)
    ev = _evidence(
        lifetimes=[killed, later],
        connections=[_conn(0, T0 + 0.5), _conn(1, T0 + 31, session="s2"),
                     _conn(2, T0 + 40, session="s3")],
        calls=[_call("c1", T0 + 10), _call("k", T0 + 29.9),
               _call("x", T0 + 35, conn=1), _call("cancel", T0 + 50, conn=2)],
        cancellations=[ToolCancellationRecord(T0 + 50.3, 2, ("cancel",))],
    )
    check = check_tool_calls(ev)
    assert check.ok, check.details
    assert check.figures["open_at_kill"] == 1
    assert check.figures["lost_with_session"] == 1  # session s2 never came back
    assert check.figures["cancelled"] == 1
    late = _answer("cancel", T0 + 51, conn=2)
    assert not check_tool_calls(_evidence(**{**vars(ev), "unexpected": [late]})).ok


def test_answer_check_fails_an_error_outside_any_fault() -> None:
    unknown = ToolResponseRecord(T0 + 10.1, 0, "c1", "control_device",
                                 {"error": "invalid arguments: unknown tool 'control_device'"},
                                 None)
    check = check_answers(_evidence(responses=[unknown]))
    assert not check.ok and "unknown tool" in check.details[0]
    # the same while the broker was restarting: counted, not failed
    broker = _fault(FaultKind.BROKER_RESTART, T0 + 9, recovery=0.5)
    check = check_answers(_evidence(responses=[unknown], faults=[broker]))
    assert check.ok and check.figures["failed_during_fault"] == 1


def test_command_check_fails_a_command_published_twice_or_for_no_call() -> None:
    twice = [(T0 + 10.05, "sim/kitchen_light/set", "ON"), (T0 + 10.5, "sim/kitchen_light/set", "ON")]
    check = check_commands(_evidence(commands=twice))
    assert not check.ok and "published 2 times" in check.details[0]
    stray = [(T0 + 10.05, "sim/kitchen_light/set", "ON"), (T0 + 11, "sim/bedroom_fan/set", "ON")]
    check = check_commands(_evidence(commands=stray))
    assert not check.ok and "no call asked for it" in check.details[0]


def test_audio_check_fails_audio_lost_where_no_counter_says_so() -> None:
    # the server got 8 s of the 10 s the daemon took in, and the daemon counted nothing
    ev = _evidence(connections=[_conn(0, T0 + 0.5, audio_s=8.0)])
    check = check_audio(ev)
    assert not check.ok and "never reached the server" in check.details[0]
    # the same loss, counted as dropped by the replay buffer: fine
    snap = _snap(T0 + 99, edge_live_uplink_audio_dropped_chunks_total=100)
    assert check_audio(_evidence(connections=[_conn(0, T0 + 0.5, audio_s=8.0)],
                                 lifetimes=[_life(snap=snap)])).ok
    # "taken as delivered" at a close excuses a confirmation window, not seconds
    snap = _snap(T0 + 99, **{"edge_live_uplink_unconfirmed_at_close_chunks_total{reason=closed:1006}": 100})
    faults = [_fault(FaultKind.LIVE_ABORT, T0 + 50)]
    check = check_audio(_evidence(connections=[_conn(0, T0 + 0.5, audio_s=8.0)],
                                  lifetimes=[_life(snap=snap)], faults=faults))
    assert not check.ok
    # glasses frames that never reached the daemon
    snap = _snap(T0 + 99)
    snap = MetricsSnapshot(snap.t, snap.samples, glasses_frames=600)
    check = check_audio(_evidence(lifetimes=[_life(snap=snap)]))
    assert not check.ok and "never reached the daemon" in check.details[0]


def _samples(life: Lifetime, rss: list[int], fds: int = 10, tasks: int = 25,
             fds_end: int | None = None) -> None:
    for i, kb in enumerate(rss):
        last = i >= len(rss) - 5
        life.samples.append(ProcSample(life.started_at + 10 + i, kb, 3,
                                       fds_end if (last and fds_end) else fds, tasks, True))


def test_resource_check_fails_rss_growth_over_5_mb_and_a_rising_fd_floor() -> None:
    life = _life()
    _samples(life, [100_000] * 10 + [106_000] * 10)
    check = check_resources(_evidence(lifetimes=[life]))
    assert not check.ok and "RSS grew 5.9 MB" in check.details[0]
    life = _life()
    _samples(life, [100_000] * 20, fds_end=12)
    check = check_resources(_evidence(lifetimes=[life]))
    assert not check.ok and "fds floor grew from 10 to 12" in check.details[0]
    life = _life()
    _samples(life, [100_000, 101_000] * 10)
    assert check_resources(_evidence(lifetimes=[life])).ok


def test_counter_check_holds_the_daemon_to_what_the_injector_did() -> None:
    quiet = _fault(FaultKind.LIVE_QUIET, T0 + 20)
    conns = [_conn(0, T0 + 0.5), _conn(1, T0 + 25)]
    honest = _snap(T0 + 99, **{"edge_live_connects_total{result=resumed}": 1,
                               "edge_live_disconnects_total{reason=stall}": 1,
                               "edge_live_stalls_total{evidence=silence}": 1,
                               "edge_live_reconnect_gap_seconds_count": 1})
    ev = _evidence(faults=[quiet], connections=conns, lifetimes=[_life(snap=honest)])
    assert check_counters(ev).ok, check_counters(ev).details
    wrong = _snap(T0 + 99, **{"edge_live_connects_total{result=resumed}": 1,
                              "edge_live_disconnects_total{reason=closed:1006}": 1,
                              "edge_live_reconnect_gap_seconds_count": 1})
    check = check_counters(_evidence(faults=[quiet], connections=conns,
                                     lifetimes=[_life(snap=wrong)]))
    assert not check.ok
    assert any("stall = quiet or deaf servers: expected == 1, counted 0" in d
               for d in check.details)


def test_conversation_check_fails_a_long_silence() -> None:
    ev = _evidence(turns=_turns([T0 + 10, T0 + 20, T0 + 90]))
    check = check_conversation(ev, max_gap=45.0)
    assert not check.ok and "no turn completed for 70.0 s" in check.details[0]
    # the same silence, but 30 s of it spent recovering from restarts: not stuck
    restarts = [_fault(FaultKind.DAEMON_KILL, T0 + 25 + 10 * i, recovery=10.0) for i in range(3)]
    assert check_conversation(_evidence(turns=ev.turns, faults=restarts), max_gap=45.0).ok


def test_the_report_replaces_its_own_section_only(tmp_path: Path) -> None:
    ev = _evidence()
    checks = run_checks(ev)
    text = render(ev, checks, "edge-agent sim soak --seed 1")
    assert text.startswith("soak: PASS") and "| tool calls | ok |" in text
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    write_results(results, ev, checks, "cmd one", machine="test machine")
    write_results(results, ev, checks, "cmd two", machine="test machine")
    out = results.read_text()
    assert out.count(SECTION_TITLE) == 1 and "cmd two" in out and "cmd one" not in out
    assert "## Other\n\nkept" in out and "test machine" in out


def test_counter_check_flags_a_restart_that_answers_an_answered_call_again() -> None:
    """What the soak found (seed 11): the call was answered before the SIGTERM, yet the
    next process counted it as left open and answered it again."""
    first = _life(0, T0, T0 + 30, "term")
    answered_again = _snap(T0 + 99, **{"edge_live_interrupted_calls_total{outcome=answered}": 1})
    second = _life(1, T0 + 30.5, T0 + 100, snap=answered_again)
    ev = _evidence(lifetimes=[first, second],
                   connections=[_conn(0, T0 + 0.5), _conn(1, T0 + 31)])
    check = check_counters(ev)
    assert not check.ok
    assert any("lifetime 1: interrupted calls" in d and "expected == 0, counted 1" in d
               for d in check.details)

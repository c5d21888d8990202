"""The figures of a soak run: a Markdown table for the terminal and for bench/RESULTS.md.

One format for both, so what a person reads after a run is what the results file
keeps. `write_results` replaces the soak section of RESULTS.md (or appends it), and
leaves every other section as it was.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulator.soak.checks import Check
from simulator.soak.daemon_proc import MetricsSnapshot
from simulator.soak.evidence import Evidence, as_json

__all__ = ["SECTION_TITLE", "figures_json", "machine_line", "render", "write_results"]

SECTION_TITLE = "## Soak: an hour of chaos (`edge-agent sim soak`)"


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _fault_table(check: Check) -> list[str]:
    lines = ["| fault | fired | not recovered in bound | p50 | p99 | max | bound |",
             "|---|---|---|---|---|---|---|"]
    rows: dict[str, Any] = check.figures.get("by_kind", {})
    for kind, row in rows.items():
        lines.append(f"| {kind} | {row['n']} | {row['failed']} | {_ms(row['p50'])} | "
                     f"{_ms(row['p99'])} | {_ms(row['max'])} | {row['bound']:.0f} s |")
    total = sum(r["n"] for r in rows.values())
    failed = sum(r["failed"] for r in rows.values())
    lines.append(f"| **all** | **{total}** | **{failed}** | | | | |")
    return lines


def _check_table(checks: Sequence[Check]) -> list[str]:
    lines = ["| check | result | figures |", "|---|---|---|"]
    for c in checks:
        lines.append(f"| {c.name} | {'ok' if c.ok else '**FAIL**'} | {c.summary} |")
    return lines


def _resource_table(check: Check) -> list[str]:
    rows = check.figures.get("judged", [])
    if not rows:
        return []
    lines = [("| lifetime | judged for | RSS at warm-up | RSS growth | ... in its second half "
              "| fds | threads | tasks |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tasks = "-" if r["tasks"] is None else f"{r['tasks'][0]} -> {r['tasks'][1]}"
        lines.append(f"| {r['lifetime']} | {r['seconds']} s | {r['rss_start_mb']} MB | "
                     f"{r['rss_growth_mb']:+.2f} MB | {r['rss_growth_second_half_mb']:+.2f} MB | "
                     f"{r['fds'][0]} -> {r['fds'][1]} | "
                     f"{r['threads'][0]} -> {r['threads'][1]} | {tasks} |")
    return lines


def _counter_table(check: Check) -> list[str]:
    lines = ["| counter (summed over lifetimes) | injector / peers | /metrics | rule |",
             "|---|---|---|---|"]
    for name, row in check.figures.items():
        lines.append(f"| {name} | {row['expected']:g} | {row['actual']:g} | {row['rule']} |")
    return lines


def render(ev: Evidence, checks: Sequence[Check], command: str = "") -> str:
    """The whole report: the verdicts, then the faults, resources and counters."""
    ok = all(c.ok for c in checks)
    head = [
        f"soak: {'PASS' if ok else 'FAIL'} - {ev.duration:.0f} s, seed {ev.seed}, "
        f"{len(ev.faults)} faults, {len(ev.lifetimes)} daemon lifetimes",
        "",
    ]
    if command:
        head += ["```", command, "```", ""]
    parts = [*head, *_check_table(checks), ""]
    by_name = {c.name: c for c in checks}
    parts += [*_fault_table(by_name["recovery"]), ""]
    res = _resource_table(by_name["resources"])
    if res:
        parts += [*res, ""]
    parts += [*_counter_table(by_name["counters"]), ""]
    if ev.log_levels:
        logged = ", ".join(f"{k} {n}" for k, n in ev.log_levels.items())
        parts += [f"Logged by the daemon: {logged}.", ""]
    failures = [f"- {c.name}: {d}" for c in checks for d in c.details]
    if failures:
        parts += ["Failures:", "", *failures, ""]
    return "\n".join(parts)


def machine_line() -> str:
    """Cores, CPU model, OS, Python, and the load average when the run ended."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mosquitto = ""
    try:
        done = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5,
                              check=False)
        out = done.stdout or done.stderr
        mosquitto = ", " + out.splitlines()[0].strip() if out else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {sys.version.split()[0]}{mosquitto}; load average at the end {load}")


def write_results(path: Path, ev: Evidence, checks: Sequence[Check], command: str,
                  machine: str | None = None) -> None:
    """Put the run's section into RESULTS.md in place of the last soak section."""
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    machine = machine if machine is not None else machine_line()
    body = "\n".join([
        SECTION_TITLE,
        "",
        f"Run on {date}. The real daemon (`edge-agent run`, a child process) with virtual "
        "omi glasses on the virtual radio, the fake Live server over TLS and the virtual "
        "home on a private mosquitto, through a looping conversation of device commands "
        "and status questions, while one seeded fault at a time is fired and its recovery "
        "timed (simulator/soak/). Machine: " + machine + ".",
        "",
        render(ev, checks, command).rstrip(),
        "",
    ])
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text)


def figures_json(ev: Evidence, checks: Sequence[Check]) -> str:
    """Every check's verdict and figures as JSON (for scripts and CI artefacts)."""
    data = {
        "seed": ev.seed,
        "duration": ev.duration,
        "faults": len(ev.faults),
        "ok": all(c.ok for c in checks),
        "checks": {c.name: {"ok": c.ok, "summary": c.summary, "details": c.details,
                            "figures": c.figures} for c in checks},
        "fault_log": [
            {"index": f.planned.index, "fault": f.planned.describe(), "lifetime": f.lifetime,
             "at": f.at, "recovery": f.recovery, "effects": f.effects, "detail": f.detail}
            for f in ev.faults
        ],
        "lifetimes": [
            {"index": life.index, "pid": life.pid, "started_at": life.started_at,
             "ended_at": life.ended_at, "end": life.end, "exit_code": life.exit_code,
             "log": str(life.log_path), "last_metrics": _metrics_log(life.last)}
            for life in ev.lifetimes
        ],
        "calls": [_call_log(ev, call) for call in ev.calls],
    }
    return json.dumps(as_json(data), indent=1, default=str)


def _call_log(ev: Evidence, call: Any) -> dict[str, Any]:
    """One call with every answer and cancellation the server saw, for post-mortems."""
    life = ev.lifetime_at(call.t)
    return {
        "id": call.id, "name": call.name, "args": dict(call.args), "t": call.t,
        "connection": call.connection, "lifetime": None if life is None else life.index,
        "answers": [(r.connection, r.t, r.response) for r in ev.responses if r.id == call.id],
        "again": [(r.connection, r.t, r.response) for r in ev.duplicates if r.id == call.id],
        "cancelled": [c.t for c in ev.cancellations if call.id in c.ids],
    }


def _metrics_log(snap: MetricsSnapshot | None) -> dict[str, float]:
    """A lifetime's last scrape, non-zero samples only (timestamps left out)."""
    if snap is None:
        return {}
    out = {}
    for (name, labels), value in sorted(snap.samples.items(), key=lambda kv: kv[0][0]):
        if not value or name.endswith(("_created", "_bucket")):
            continue
        tags = ",".join(f"{k}={v}" for k, v in sorted(labels))
        out[f"{name}{{{tags}}}" if tags else name] = value
    return out

"""``edge-agent sim soak``: the whole daemon under seeded faults for a while, then the
verdicts and the figures; exit 0 only when every check holds.

    edge-agent sim soak --duration 90 --seed 7
    edge-agent sim soak --duration 3600 --seed 1 --results bench/RESULTS.md

Exit codes as the daemon's: 0 every check held, 1 a check failed (or the run could
not start), 2 a bad argument.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from simulator.soak.checks import run_checks
from simulator.soak.evidence import Evidence
from simulator.soak.plan import FaultKind
from simulator.soak.report import figures_json, render, write_results
from simulator.soak.runner import SoakOptions, run_soak

__all__ = ["main"]

PROG = "edge-agent sim soak"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=90.0,
                   help="seconds of faults (default 90; the 1-hour run: 3600)")
    p.add_argument("--seed", type=int, default=1, help="the fault plan's seed (default 1)")
    p.add_argument("--mean-pause", type=float, default=4.0,
                   help="mean seconds of calm between a recovery and the next fault")
    p.add_argument("--warmup", type=float, default=20.0,
                   help="seconds after a start before RSS and counts are judged")
    p.add_argument("--bound-scale", type=float, default=1.0,
                   help="multiply every recovery bound (a slower machine)")
    p.add_argument("--min-faults", type=int, default=0,
                   help="keep firing past --duration until this many faults were fired")
    p.add_argument("--kinds", default="",
                   help="only these fault kinds, comma-separated (default: all): "
                        + ", ".join(k.value for k in FaultKind))
    p.add_argument("--workdir", type=Path,
                   help="keep logs and state here (default: a temporary directory, kept "
                        "only when a check fails)")
    p.add_argument("--results", type=Path,
                   help="write the figures as a section of this file (bench/RESULTS.md)")
    p.add_argument("--json", type=Path, help="write every figure as JSON to this file")
    p.add_argument("--wav", type=Path,
                   help="what the glasses hear, looped (default: the demo's speech)")
    p.add_argument("--verbose", action="store_true", help="log every part at INFO")
    return p


def _kinds(raw: str) -> dict[FaultKind, int] | None:
    if not raw:
        return None
    try:
        return {FaultKind(k.strip()): 1 for k in raw.split(",") if k.strip()}
    except ValueError as exc:
        raise ValueError(f"--kinds: {exc}") from None


def _options(args: argparse.Namespace, workdir: Path, wav: Path) -> SoakOptions:
    if args.duration <= 0 or args.mean_pause < 0 or args.warmup < 0 or args.bound_scale <= 0:
        raise ValueError("--duration, --bound-scale: must be > 0; --mean-pause, --warmup: >= 0")
    return SoakOptions(
        duration=args.duration, seed=args.seed, workdir=workdir, wav=wav,
        mean_pause=args.mean_pause, warmup=args.warmup, weights=_kinds(args.kinds),
        bound_scale=args.bound_scale, min_faults=args.min_faults,
    )


async def _run_stoppable(opts: SoakOptions) -> Evidence:
    """`run_soak`, cancelled by SIGTERM as by Ctrl-C: the rig stops its daemon and broker
    instead of leaving them behind (a plain SIGTERM would end Python at once)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_soak(opts)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _command(argv: list[str]) -> str:
    return "edge-agent sim soak " + " ".join(shlex.quote(a) for a in argv)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the report; 0 when every check held."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(  # the simulated parts' own warnings are the faults themselves
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("simulator.soak").setLevel(logging.INFO)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edge-soak-"))
    try:
        from simulator.cli import DEMO_WAV, asset

        with asset(DEMO_WAV) as demo_wav:
            opts = _options(args, workdir, args.wav or demo_wav)
            evidence = asyncio.run(_run_stoppable(opts))
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except (asyncio.CancelledError, KeyboardInterrupt):
        print(f"{PROG}: stopped before the end; logs and state kept in {workdir}",
              file=sys.stderr)
        return 1
    checks = run_checks(evidence)
    ok = all(c.ok for c in checks)
    command = _command(argv)
    print(render(evidence, checks, command), flush=True)
    if args.json is not None:
        args.json.write_text(figures_json(evidence, checks))
    if args.results is not None:
        write_results(args.results, evidence, checks, command)
        print(f"{PROG}: figures written to {args.results}", flush=True)
    if ok and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print(f"{PROG}: logs and state kept in {workdir}", file=sys.stderr)
    return 0 if ok else 1

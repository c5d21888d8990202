"""One soak run: the rig up, the daemon started, faults until the time is up, the
evidence gathered, the checks run and the figures printed.

`edge-agent sim soak` (cli.py) parses the options into `SoakOptions` and calls
`run_soak`; a test does the same. Nothing here judges: `checks.py` does, from the
`Evidence` this module collects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from simulator.soak.evidence import Evidence, collect_evidence
from simulator.soak.injector import Injector, supported
from simulator.soak.plan import DEFAULT_BOUNDS, DEFAULT_WEIGHTS, FaultKind, fault_plan
from simulator.soak.rig import Rig

__all__ = ["SoakOptions", "run_soak"]

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # the first start: imports, BLE scan, first connections
SAMPLE_EVERY = 1.0


@dataclass
class SoakOptions:
    """What one run does; the command line fills it (see cli.py)."""

    duration: float
    seed: int
    workdir: Path
    wav: Path
    mean_pause: float = 4.0
    warmup: float = 20.0
    weights: dict[FaultKind, int] | None = None
    bound_scale: float = 1.0
    min_faults: int = 0
    bounds: dict[FaultKind, float] = field(default_factory=dict)

    def bound(self, kind: FaultKind) -> float:
        """The recovery bound of `kind`, scaled."""
        return self.bounds.get(kind, DEFAULT_BOUNDS[kind]) * self.bound_scale


async def _sampler(rig: Rig, injector: Injector) -> None:
    """RSS, threads and fds of the daemon every second (flagged calm or not)."""
    while True:
        rig.daemon.sample(calm=injector.calm)
        await asyncio.sleep(SAMPLE_EVERY)


async def _calm_point(rig: Rig, injector: Injector) -> None:
    """Between faults, with everything up: /metrics (with the task count) and /proc."""
    snap = await rig.daemon.scrape()
    tasks = None if snap is None else int(snap.stat("runtime", "asyncio_tasks"))
    rig.daemon.sample(calm=injector.calm, tasks=tasks)


async def _faults(rig: Rig, injector: Injector, opts: SoakOptions, started: float) -> str:
    """Fire planned faults until the duration is spent; '' or why the run stopped early."""
    weights = {k: n for k, n in (opts.weights or DEFAULT_WEIGHTS).items() if supported(k)}
    for planned in fault_plan(opts.seed, mean_pause=opts.mean_pause, weights=weights):
        budget = started + opts.duration - time.monotonic()
        if budget < planned.pause + opts.bound(planned.kind) / 3 and (
            len(injector.records) >= opts.min_faults
        ):
            return ""
        await asyncio.sleep(planned.pause)
        await _calm_point(rig, injector)
        rec = await injector.fire(planned)
        life = rig.daemon.current
        if life.warm_at is None and life.ready_at is not None:
            life.warm_at = life.ready_at + opts.warmup
        if rec.recovered_at is None:
            log.warning("fault %d (%s) not recovered: %s", planned.index,
                        planned.describe(), rec.detail)
            up = await injector.everything_up(time.monotonic(), START_TIMEOUT)
            if up is None:
                return f"stopped after fault {planned.index}: the daemon did not come back"
            injector.calm = True
    return ""


async def run_soak(opts: SoakOptions) -> Evidence:
    """Run the soak; the evidence for the checks (the run's own failures included)."""
    opts.workdir.mkdir(parents=True, exist_ok=True)
    async with Rig(opts.workdir, opts.wav) as rig:
        injector = Injector(rig, {k: opts.bound(k) for k in FaultKind})
        started = time.monotonic()
        life = await rig.daemon.start()
        ready = await injector.everything_up(started, START_TIMEOUT)
        stopped = ""
        if ready is None:
            stopped = "the daemon did not come up at the start"
        else:
            life.ready_at = ready
            life.warm_at = ready + opts.warmup
            injector.calm = True
        async with asyncio.TaskGroup() as tg:
            sampler = tg.create_task(_sampler(rig, injector), name="soak-sampler")
            try:
                if not stopped:
                    stopped = await _faults(rig, injector, opts, started)
                if not stopped:
                    await asyncio.sleep(2.0)  # the last recovery's audio settles
                    await _calm_point(rig, injector)
            finally:
                sampler.cancel()
        final_code: int | None = None
        if rig.daemon.check_alive():
            final_code = await rig.daemon.stop_final()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0.5)  # the server records the last connection's end
        return collect_evidence(rig, injector, opts.seed, time.monotonic() - started,
                                stopped, final_code)

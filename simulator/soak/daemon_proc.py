"""The daemon under test as a child process: its configuration, its lives, its numbers.

Why a process and not `serve()` in this one: SIGKILL must be a real SIGKILL, the log
must be the daemon's own, and RSS, threads and file descriptors must be those of the
daemon alone. Every start is a new `Lifetime`; what the soak reads about it (its
/metrics, its /healthz, /proc) is kept there, so checks compare one process's
counters with what the injector did while that process lived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["DaemonProcess", "Lifetime", "MetricsSnapshot", "ProcSample", "http_get"]

SOAK_KEY = "edge-agent-soak-key"

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class MetricsSnapshot:
    """One scrape of /metrics: every sample by name and labels, and when it was taken."""

    t: float
    samples: Mapping[tuple[str, Labels], float]
    glasses_frames: int = 0  # audio frames the glasses had sent when it was taken

    @classmethod
    def parse(cls, t: float, text: str, glasses_frames: int = 0) -> MetricsSnapshot:
        """Read the Prometheus text format (the daemon's /metrics body)."""
        samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = float(s.value)
        return cls(t, samples, glasses_frames)

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample of `name` whose labels include `labels` (0 if none)."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """The samples of `name` summed by one label's value (zeros left out)."""
        out: dict[str, float] = {}
        for (n, ls), v in self.samples.items():
            if n != name or not v:
                continue
            key = dict(ls).get(label, "")
            out[key] = out.get(key, 0.0) + v
        return out

    def stat(self, source: str, key: str) -> float:
        """`edge_<source>_stat{key=...}`, the status sources (peripheral, runtime)."""
        return self.value(f"edge_{source}_stat", key=key)


@dataclass(frozen=True)
class ProcSample:
    """What /proc says about the daemon at one moment, and whether all was calm then."""

    t: float
    rss_kb: int
    threads: int
    fds: int
    tasks: int | None  # asyncio tasks, from /metrics when scraped at the same time
    calm: bool  # every link up and no fault under way


@dataclass
class Lifetime:
    """One run of the daemon process, from spawn to exit."""

    index: int
    pid: int
    started_at: float
    log_path: Path
    ended_at: float | None = None
    end: str = ""  # kill | term | final | crash
    exit_code: int | None = None
    warm_at: float | None = None  # RSS and counts are judged from here on
    ready_at: float | None = None  # first time everything was up
    snapshots: list[MetricsSnapshot] = field(default_factory=list)
    samples: list[ProcSample] = field(default_factory=list)

    @property
    def last(self) -> MetricsSnapshot | None:
        """The newest scrape of /metrics."""
        return self.snapshots[-1] if self.snapshots else None

    def holds(self, t: float) -> bool:
        """Whether `t` falls within this process's life."""
        return self.started_at <= t and (self.ended_at is None or t <= self.ended_at)


async def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:  # noqa: ASYNC109
    """GET http://127.0.0.1:port/path with a deadline; (status, body). OSError if down."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"bad HTTP answer from 127.0.0.1:{port}{path}") from None
    return status, body.decode("utf-8", errors="replace")


def _proc_numbers(pid: int) -> tuple[int, int, int]:
    """(VmRSS in kB, threads, open file descriptors) of `pid`; OSError once it is gone."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, threads, fds


class DaemonProcess:
    """`edge-agent run --config FILE` as a child, started again after each kill."""

    def __init__(self, workdir: Path, config: Path, health_port: int,
                 glasses_frames: Callable[[], int] = lambda: 0) -> None:
        self.workdir = workdir
        self.glasses_frames = glasses_frames
        self.config = config
        self.health_port = health_port
        self.lifetimes: list[Lifetime] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def current(self) -> Lifetime:
        """The newest lifetime (the running one, if any runs)."""
        return self.lifetimes[-1]

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.returncode is None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EDGE_AGENT_", "GEMINI", "STATE_DIRECTORY",
                                    "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env["GEMINI_API_KEY"] = SOAK_KEY
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def start(self) -> Lifetime:
        """Spawn a new process; its output goes to `daemon-<n>.log` in the workdir."""
        index = len(self.lifetimes)
        path = self.workdir / f"daemon-{index}.log"
        self._log = path.open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", "--config", str(self.config),
            env=self._env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log, stderr=self._log,
        )
        life = Lifetime(index, self._proc.pid, time.monotonic(), path)
        self.lifetimes.append(life)
        return life

    async def kill(self) -> int:
        """SIGKILL and reap; returns the exit status (-9)."""
        return await self._stop(signal.SIGKILL, "kill", 10.0)

    async def terminate(self, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """SIGTERM and wait (SIGKILL after `timeout`); returns the exit status."""
        return await self._stop(signal.SIGTERM, "term", timeout)

    async def stop_final(self, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """The end of the run: SIGTERM, like a term fault but not counted as one."""
        return await self._stop(signal.SIGTERM, "final", timeout)

    async def _stop(self, sig: int, end: str, timeout: float) -> int:  # noqa: ASYNC109
        proc, life = self._proc, self.current
        assert proc is not None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                end = f"{end}_timeout"
        else:
            end = "crash"
        self._ended(life, end, proc.returncode)
        return int(proc.returncode or 0)

    def _ended(self, life: Lifetime, end: str, code: int | None) -> None:
        if life.ended_at is None:
            life.ended_at = time.monotonic()
            life.end = end
            life.exit_code = code
        if self._log is not None:
            self._log.close()
            self._log = None

    def check_alive(self) -> bool:
        """False (and the lifetime closed as a crash) if the child exited on its own."""
        proc = self._proc
        if proc is None or proc.returncode is None:
            return True
        self._ended(self.current, "crash", proc.returncode)
        return False

    async def scrape(self) -> MetricsSnapshot | None:
        """Read /metrics now (kept in the lifetime); None if the daemon does not answer."""
        try:
            status, body = await http_get(self.health_port, "/metrics")
        except (OSError, TimeoutError):
            return None
        if status != 200:
            return None
        frames = self.glasses_frames()  # after: the daemon can only have had fewer
        snap = MetricsSnapshot.parse(time.monotonic(), body, frames)
        self.current.snapshots.append(snap)
        del self.current.snapshots[:-3]  # only the newest few are ever compared
        return snap

    async def health(self) -> dict[str, Any] | None:
        """/healthz as JSON (whatever its status), or None if the daemon does not answer."""
        try:
            _status, body = await http_get(self.health_port, "/healthz")
            data = json.loads(body)
        except (OSError, TimeoutError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def sample(self, *, calm: bool, tasks: int | None = None) -> ProcSample | None:
        """Read RSS, threads and fds of the running child into its lifetime."""
        if not self.running:
            return None
        life = self.current
        try:
            rss, threads, fds = _proc_numbers(life.pid)
        except (OSError, ValueError):
            return None
        sample = ProcSample(time.monotonic(), rss, threads, fds, tasks, calm)
        life.samples.append(sample)
        return sample

    async def close(self) -> None:
        """Make sure nothing is left running (the run's end or a failure)."""
        if self.running:
            await self.kill()
        elif self.lifetimes and self._proc is not None:
            self._ended(self.current, "crash", self._proc.returncode)

"""The daemon's Live uplink against its floors and a peer, interleaved in one run.

One fake Live server; then, round after round and in a rotating order, one
client at a time streams the same stamped 16 kHz audio in real time for the
same time: the daemon's LiveLink (bench/live_uplink.py's client), a bare
websockets client (the floor), picows (over aiofastnet's TLS and over
asyncio's own) and a pipecat pipeline. CPU is read by this process from
/proc/PID/task/*/schedstat (nanoseconds of CPU, every thread) over the same
steady window of each run, started when the client says it is streaming, so
slower imports do not shift it. Ratios are taken within a round, so what other
processes do to the machine cancels as far as it can; the load average is
printed with the figures.

picows and pipecat are not the project's dependencies: they are installed by
this benchmark into their own venv (BENCH_PEERS_VENV, default
~/.cache/edge-agent/bench-peers) the first time, or skipped with the reason.

    .venv/bin/python bench/uplink_peers.py --chunk-ms 20 --rounds 5
    .venv/bin/python bench/uplink_peers.py --only link,ws --rounds 3   # no peers venv
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

from procstat import percentile, rss_mb  # bench/, beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = ("picows==2.3.1", "pipecat-ai[google]==1.14.0")
PEERS_VENV = Path(os.environ.get("BENCH_PEERS_VENV",
                                 Path.home() / ".cache" / "edge-agent" / "bench-peers"))
KINDS = ("link", "ws", "ws-now", "picows", "picows-stdtls", "pipecat")  # and "before" with --before


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process so far, in nanoseconds (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def peers_python(kinds: list[str]) -> tuple[Path | None, str]:
    """The peers venv's python (made and filled on first use), or None and why not."""
    py = PEERS_VENV / "bin" / "python"
    want = [k for k in kinds if k.startswith(("picows", "pipecat"))]
    if not want:
        return None, "not asked for"
    check = "import picows, pipecat.services.google.gemini_live.llm"
    if py.exists() and subprocess.run([py, "-c", check], capture_output=True).returncode == 0:
        return py, "ready"
    print(f"installing {', '.join(PEERS)} into {PEERS_VENV} (once)...", flush=True)
    try:
        venv.create(PEERS_VENV, with_pip=True, clear=True)
        subprocess.run([py, "-m", "pip", "install", "-q", *PEERS], check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not install the peers ({exc})"
    return py, "installed"


class Server:
    """bench/live_uplink.py's fake Live server process, driven line by line."""

    def __init__(self, tmp: Path, chunk_ms: int) -> None:
        self.out = tmp / "server.json"
        self.proc = subprocess.Popen(
            [sys.executable, HERE / "live_uplink.py", "server", str(self.out), str(chunk_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.base_url: str = info["base_url"]
        self.ca_file: str = info["ca_file"]

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def take(self) -> list[tuple[float, int, int]]:
        """The chunks received since the last take: (time, seq, connection)."""
        self.say("dump")
        self.say("clear")
        return [tuple(c) for c in json.loads(self.out.read_text())["chunks"]]  # type: ignore[misc]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def one_run(kind: str, server: Server, args: argparse.Namespace, peers: Path | None,
            tmp: Path) -> dict[str, Any]:
    """One client's run: CPU over the steady window, latency of its chunks at the server."""
    out = tmp / f"{kind}.json"
    seconds = args.warmup + args.window + 1.0
    common = [server.base_url, server.ca_file, str(seconds), str(out), str(args.chunk_ms),
              "1" if args.video else "0"]
    root = args.before if kind == "before" else ROOT
    if kind in ("link", "before"):
        cmd = [sys.executable, str(root / "bench" / "live_uplink.py"), "client", *common]
    elif kind in ("ws", "ws-now"):
        cmd = [sys.executable, str(HERE / "peer_clients.py"), kind, *common]
    else:
        assert peers is not None
        cmd = [str(peers), str(HERE / "peer_clients.py"), kind, *common]
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_SIGNAL": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != "streaming":
        pass
    started = time.monotonic()
    time.sleep(args.warmup)
    c0, t0 = cpu_ns(proc.pid), time.monotonic()
    time.sleep(args.window)
    c1, t1 = cpu_ns(proc.pid), time.monotonic()
    rss = rss_mb(proc.pid)
    proc.wait(timeout=seconds + 60)
    handed = json.loads(out.read_text())["handed"]
    lo, hi = t0 - started, t1 - started
    lat = [(t - handed[s]) * 1000 for t, s, _ in server.take()
           if s is not None and s < len(handed) and lo <= handed[s] - handed[0] <= hi]
    return {"cpu": (c1 - c0) / 1e9 / (t1 - t0) * 100, "p50": statistics.median(lat),
            "p99": percentile(lat, 99), "chunks": len(lat), "rss": rss}


def summary(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Median (min-max) per client, and its CPU as a ratio to the floor of the same round."""
    def mm(v: list[float], f: str = "{:.2f}") -> str:
        return f"{f.format(statistics.median(v))} ({f.format(min(v))}-{f.format(max(v))})"

    lines = [f"{'client':<14}{'CPU % of a core':>22}{'x ws floor':>22}{'x link':>20}"
             f"{'p50 / p99 ms':>16}{'RSS MB':>8}"]
    floor = [r["cpu"] for r in runs.get("ws", [])]
    link = [r["cpu"] for r in runs.get("link", [])]
    for kind, rs in runs.items():
        if not rs:
            continue
        cpu = [r["cpu"] for r in rs]
        vs_floor = mm([c / f for c, f in zip(cpu, floor, strict=False)]) if floor else "-"
        vs_link = mm([c / k for c, k in zip(cpu, link, strict=False)]) if link else "-"
        lat = (f"{statistics.median(r['p50'] for r in rs):.2f} / "
               f"{statistics.median(r['p99'] for r in rs):.2f}")
        lines.append(f"{kind:<14}{mm(cpu, '{:.3f}'):>22}{vs_floor:>22}{vs_link:>20}{lat:>16}"
                     f"{max(r['rss'] for r in rs):>8.1f}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--chunk-ms", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window", type=float, default=12.0, help="seconds of CPU per run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--video", action="store_true", help="also a 30 KB JPEG a second")
    ap.add_argument("--only", default=",".join(KINDS), help="clients, comma-separated")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--before", type=Path, help="a copy of the tree to run as client 'before'")
    args = ap.parse_args()
    kinds = [k for k in args.only.split(",") if k]
    if args.before is not None and "before" not in kinds:
        kinds.insert(1, "before")
    peers, why = peers_python(kinds)
    if peers is None and why != "not asked for":
        print(f"skipping picows and pipecat: {why}")
        kinds = [k for k in kinds if k in ("link", "ws", "ws-now")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    server = Server(tmp, args.chunk_ms)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    load = [os.getloadavg()[0]]
    try:
        for r in range(args.rounds):
            order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
            for kind in order:
                runs[kind].append(one_run(kind, server, args, peers, tmp))
                load.append(os.getloadavg()[0])
            print(f"round {r + 1}: " + ", ".join(f"{k} {runs[k][-1]['cpu']:.3f} %"
                                                  for k in kinds), flush=True)
    finally:
        server.close()
    print(f"\nchunk {args.chunk_ms} ms, video {'on' if args.video else 'off'}, "
          f"{args.rounds} rounds x {args.window:.0f} s, {os.cpu_count()} cores, "
          f"load average {min(load):.2f}-{max(load):.2f}")
    print("\n".join(summary(runs)))
    if args.json:
        print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

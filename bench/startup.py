"""Start-up benchmark: `edge-agent run` to its first audio on the Live link, and its peak RSS.

Each run starts the daemon as users and systemd do (`edge-agent run`, a new process,
configured by environment variables) against the fake Live server, and measures:

* start → first audio: from just before the process is spawned to the fake server's
  receipt of the daemon's first audio message (both CLOCK_MONOTONIC, system-wide);
* peak RSS: the daemon's VmHWM from /proc after `--steady` seconds of streaming.

Both trees are byte-compiled first, as pip compiles an installed daemon.

Two modes, interleaved run by run so that machine load falls on both alike:

* file: `peripheral.kind = file`, a 16 kHz WAV streamed in real time;
* glasses: `peripheral.kind = ble` on the virtual radio (`virtual:tcp-client:...`), omi
  glasses (Opus 16 kHz) already advertising; the time includes scan, connect and set-up.

Then the cost of the imports alone, each in a fresh interpreter (bare Python, the SDK
`google.genai`, a bare websocket client, and what the daemon imports for each mode),
so the part of the start that is google-genai's can be read off.

    .venv/bin/python bench/startup.py            # 5 runs per mode
    .venv/bin/python bench/startup.py --runs 3 --json
    .venv/bin/python bench/startup.py --before DIR   # DIR: a copy of daemon/ (and simulator/)
        # as it was; each round runs both trees in both modes, the order rotating per round
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from procstat import rss_mb  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
AUDIO_WAV = ROOT / "simulator" / "assets" / "demo_conversation.wav"
KEY = "bench-key-0123456789"
TARGETS = {"first_audio_s": 1.0, "glasses_rss_mb": 60.0}

# What `serve` imports for each mode (daemon/app.py), for the import-only figures.
_SERVE = ["daemon.cli", "daemon.app", "daemon.home.service", "daemon.live.link",
          "daemon.tools.registry", "daemon.ops.health", "daemon.ops.systemd"]
_LIBRARIES = ["pydantic", "ssl", "tomllib", "importlib.metadata", "websockets.asyncio.client",
              "prometheus_client", "jsonschema", "aiomqtt", "bleak", "opuslib", "bumble.device"]
IMPORTS = {
    "bare python": [],
    "google.genai": ["google.genai"],
    "websockets client + ssl (no SDK)": ["ssl", "json", "websockets.asyncio.client"],
    "daemon, file mode": [*_SERVE, "daemon.peripherals.file"],
    "daemon, glasses mode (virtual radio)": [
        *_SERVE, "daemon.peripherals.ble.peripheral", "daemon.peripherals.ble.bumble_backend"],
    "daemon, glasses mode (BlueZ)": [*_SERVE, "daemon.peripherals.ble.peripheral"],
    # google-genai's own share: the glasses mode's other libraries first, then the SDK.
    "glasses-mode libraries but google.genai": _LIBRARIES,
    "glasses-mode libraries and google.genai": [*_LIBRARIES, "google.genai"],
}


# -- fake Live server process ------------------------------------------------------
async def serve() -> None:
    """Print the server's address, then `audio <t>` for each connection's first audio."""
    from simulator.live_server import FakeLiveServer
    from simulator.scenario import Scenario

    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=())) as server:
        print(json.dumps({"base_url": server.base_url, "ca_file": str(server.ca_pem_path)}),
              flush=True)
        seen: set[int] = set()
        while True:
            for chunk in list(server.audio_chunks)[-500:]:
                if chunk.connection not in seen:
                    seen.add(chunk.connection)
                    print(f"audio {chunk.t!r}", flush=True)
            await asyncio.sleep(0.005)


# -- orchestrator ----------------------------------------------------------------------
def compiled(tree: Path) -> None:
    """Bytecode for the tree's own modules, as an installed daemon has it.

    pip compiles what it installs; a checkout imported with PYTHONDONTWRITEBYTECODE=1
    (systemd's unit sets it; so do some CI images) compiles every module it has no
    bytecode for at every start, 60-100 ms here that no installed daemon spends.
    """
    for package in ("daemon", "simulator"):
        if (tree / package).is_dir():
            compileall.compile_dir(tree / package, quiet=1, workers=0)


def _json_line(stream: IO[str], timeout: float, what: str) -> Any:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{what} did not start within {timeout:.0f} s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what} exited during start-up")
    return json.loads(line)


def _first_audio_after(server: subprocess.Popen[str], t0: float, timeout: float) -> float:
    assert server.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([server.stdout], [], [], left)
        if not ready:
            break
        line = server.stdout.readline()
        if line.startswith("audio ") and (t := float(line.split()[1])) >= t0:
            return t
    raise RuntimeError(f"no audio reached the fake Live server within {timeout:.0f} s")


def _edge_agent() -> list[str]:
    """The installed console script (what systemd runs), else `python -m daemon`."""
    script = Path(sys.executable).with_name("edge-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]


class _Rig:
    """The fake Live server, the radio hub and advertising omi glasses, up for all runs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
        self.env["PYTHONPATH"] = str(ROOT)

    def spawn(self, args: list[str], name: str, **kw: Any) -> subprocess.Popen[str]:
        err = open(self.tmp / f"{name}.err", "a")  # noqa: SIM115 - the child keeps it
        p = subprocess.Popen(args, env=self.env, cwd=ROOT, text=True, stderr=err, **kw)
        err.close()
        self.procs.append(p)
        return p

    def start(self) -> None:
        py = sys.executable
        self.server = self.spawn([py, __file__, "server"], "server", stdout=subprocess.PIPE)
        assert self.server.stdout is not None
        self.live = _json_line(self.server.stdout, 30, "fake Live server")
        radio = self.spawn([py, "-m", "simulator.radio", "--ports", "2"], "radio",
                           stdout=subprocess.PIPE)
        assert radio.stdout is not None
        self.transports = _json_line(radio.stdout, 20, "radio hub")["transports"]
        glasses = self.spawn([py, "-m", "simulator.glasses", "--profile", "omi", "--transport",
                              self.transports[0], "--wav", str(AUDIO_WAV), "--loop"],
                             "glasses", stdout=subprocess.PIPE)
        assert glasses.stdout is not None
        while _json_line(glasses.stdout, 30, "virtual glasses").get("event") != "advertising":
            pass
        self._glasses_out = glasses.stdout  # keep reading it, or the pipe fills
        (self.tmp / "none.toml").write_text("")

    def daemon_env(self, mode: str) -> dict[str, str]:
        env = {**self.env, "GEMINI_API_KEY": KEY,
               "EDGE_AGENT_CONFIG": str(self.tmp / "none.toml"),
               "EDGE_AGENT_LIVE__BASE_URL": self.live["base_url"],
               "EDGE_AGENT_LIVE__CA_FILE": self.live["ca_file"],
               "EDGE_AGENT_OPS__LOG_LEVEL": "warning"}
        if mode == "file":
            env.update(EDGE_AGENT_PERIPHERAL__KIND="file",
                       EDGE_AGENT_PERIPHERAL__FILE__INPUT=str(AUDIO_WAV))
        else:
            env.update(EDGE_AGENT_PERIPHERAL__KIND="ble",
                       EDGE_AGENT_PERIPHERAL__BLE__PROFILE="omi",
                       EDGE_AGENT_PERIPHERAL__BLE__BACKEND=f"virtual:{self.transports[1]}")
        return env

    def drain(self) -> None:
        while select.select([self._glasses_out], [], [], 0)[0]:
            if not self._glasses_out.readline():
                break

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)


def run_once(rig: _Rig, mode: str, steady: float, tree: Path | None = None) -> dict[str, float]:
    """One `edge-agent run`: seconds to the first audio at the server, peak RSS.

    `tree`: run the daemon of that directory (`python -m daemon run`, both trees alike)."""
    env = rig.daemon_env(mode)
    cmd, cwd = [*_edge_agent(), "run"], ROOT
    if tree is not None:
        cmd, cwd = [sys.executable, "-m", "daemon", "run"], tree
        env["PYTHONPATH"] = str(tree)
    err = open(rig.tmp / f"daemon-{mode}.err", "a")  # noqa: SIM115 - the child keeps it
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    try:
        first = _first_audio_after(rig.server, t0, 30)
        time.sleep(steady)
        rss = rss_mb(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f"edge-agent run ({mode}) exited with {proc.returncode}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        rig.drain()
    return {"first_audio_s": first - t0, "rss_mb": rss}


def import_cost(modules: list[str]) -> dict[str, float]:
    """Seconds and peak RSS of importing `modules` in a fresh interpreter."""
    code = ("import time, sys\nt = time.perf_counter()\n"
            f"for m in {modules!r}: __import__(m)\n"
            "dt = time.perf_counter() - t\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(dt, int(hwm.split()[1]) / 1024, len(sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    seconds, rss, count = out.stdout.split()
    return {"seconds": float(seconds), "rss_mb": float(rss), "modules": int(count)}


def _spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):6.3f}  min {min(values):6.3f}  "
            f"max {max(values):6.3f}")


def main() -> int:
    if sys.argv[1:2] == ["server"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
        return 0
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per mode (default 5)")
    ap.add_argument("--steady", type=float, default=3.0,
                    help="seconds of streaming before the peak RSS is read (default 3)")
    ap.add_argument("--imports", type=int, default=3,
                    help="fresh interpreters per import figure (default 3; 0 = skip)")
    ap.add_argument("--json", action="store_true", help="also print every figure as JSON")
    ap.add_argument("--before", type=Path, help="also run the daemon of this directory")
    ap.add_argument("--modes", default="file,glasses", help="file,glasses (default both)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    rig = _Rig(tmp)
    trees: dict[str, Path | None] = {"": None}
    if args.before:
        trees = {"": ROOT, " (before)": args.before.resolve()}
    for tree in {t or ROOT for t in trees.values()}:
        compiled(tree)
    plan = [(mode, name) for mode in args.modes.split(",") for name in trees]
    runs: dict[str, list[dict[str, float]]] = {mode + name: [] for mode, name in plan}
    load: list[float] = []
    try:
        rig.start()
        for i in range(args.runs):
            for mode, name in plan[i % len(plan):] + plan[:i % len(plan)]:
                runs[mode + name].append(run_once(rig, mode, args.steady, trees[name]))
                load.append(os.getloadavg()[0])
    except BaseException:
        print(f"bench failed; process logs in {tmp}", file=sys.stderr)
        raise
    finally:
        rig.stop()
    imports = {name: [import_cost(mods) for _ in range(args.imports)]
               for name, mods in IMPORTS.items()} if args.imports else {}
    shutil.rmtree(tmp, ignore_errors=True)
    report(runs, imports, load, args)
    return 0


def report(runs: dict[str, list[dict[str, float]]], imports: dict[str, list[dict[str, float]]],
           load: list[float], args: argparse.Namespace) -> None:
    print(f"{args.runs} runs per mode, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"load average {min(load):.2f}-{max(load):.2f}")
    target_s, target_rss = TARGETS["first_audio_s"], TARGETS["glasses_rss_mb"]
    for mode, rs in runs.items():
        first = [r["first_audio_s"] for r in rs]
        rss = [r["rss_mb"] for r in rs]
        ok = "ok" if statistics.median(first) <= target_s else "MISSED"
        print(f"{mode:17s} start -> first audio (s)  {_spread(first)}  target <= {target_s} {ok}")
        if mode.startswith("glasses"):
            ok = "ok" if statistics.median(rss) <= target_rss else "MISSED"
            print(f"{mode:17s} peak RSS (MB)            {_spread(rss)}  target <= {target_rss} {ok}")
        else:
            print(f"{mode:17s} peak RSS (MB)            {_spread(rss)}")
    if imports:
        print("imports alone, each in a fresh interpreter (median):")
        base = statistics.median(r["rss_mb"] for r in imports["bare python"])
        for name, rs in imports.items():
            s = statistics.median(r["seconds"] for r in rs)
            m = statistics.median(r["rss_mb"] for r in rs)
            n = statistics.median(r["modules"] for r in rs)
            print(f"  {name:40s} {s * 1000:6.0f} ms  peak RSS {m:6.1f} MB "
                  f"(+{m - base:5.1f})  {n:4.0f} modules")
    if args.json:
        print(json.dumps({"runs": runs, "imports": imports, "load": load}))


if __name__ == "__main__":
    raise SystemExit(main())

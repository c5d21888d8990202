"""Live link uplink benchmark, measured across the socket in three processes' time.

The fake Live server runs in one process and stamps every audio chunk it
receives; the daemon's LiveLink runs in another and streams sequence-stamped
20 ms chunks in real time plus one JPEG a second. Both use CLOCK_MONOTONIC,
which is system-wide on Linux, so "handed to the link" and "received by the
server" compare directly. CPU and peak RSS of the client process are read from
/proc by the orchestrator, not self-reported.

    .venv/bin/python bench/live_uplink.py            # full run, ~40 s
    .venv/bin/python bench/live_uplink.py --quick    # ~30 s

It also streams the same audio over a bare websocket (no SDK, no link) in the
same run and reports the link's CPU as a ratio of that floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procstat import cpu_seconds, percentile, rss_mb
from procstat import run as run_profiled  # bench/, beside this script

TARGETS = {
    "latency_p50_ms": 2.0,
    "latency_p99_ms": 10.0,
    "goaway_gap_ms": 250.0,
    "abort_gap_ms": 1000.0,
    "lost_frames": 0,
    "cpu_percent": 2.0,
    "rss_mb": 90.0,
}
KEY = "bench-key-0123456789"


# -- server process -------------------------------------------------------------
async def serve(out: Path, chunk_ms: int) -> None:
    from simulator.live_server import FakeLiveServer, Fault
    from simulator.probe import read_stamps
    from simulator.scenario import Scenario

    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=())) as server:
        print(json.dumps({"base_url": server.base_url, "ca_file": str(server.ca_pem_path)}),
              flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "goaway":
                await server.inject(Fault.GOAWAY, time_left=10.0)
            elif line == "abort":
                await server.inject(Fault.ABORT)
            elif line == "dump":
                chunks = [(c.t, seq, c.connection) for c in server.audio_chunks
                          for seq in read_stamps(c.pcm, 16 * chunk_ms)]
                frames = [(f.t, f.connection) for f in server.video_frames]
                data = json.dumps({"chunks": chunks, "frames": frames})
                await asyncio.to_thread(out.write_text, data)
            elif line == "clear":  # bench/uplink_peers.py: one client's run at a time
                server.audio_chunks.clear()
                server.video_frames.clear()
            elif line == "quit":
                break
            print("ok", flush=True)


# -- client process -------------------------------------------------------------
async def client(base_url: str, ca_file: str, seconds: float, out: Path, chunk_ms: int,
                 video: bool = True) -> None:
    from pydantic import SecretStr

    from daemon.config import LiveSettings
    from daemon.live.link import LiveLink
    from daemon.media.types import AudioChunk, VideoFrame
    from daemon.ops.metrics import Metrics
    from simulator.probe import stamped_chunk

    settings = LiveSettings(base_url=base_url, ca_file=Path(ca_file), goaway_margin=1.0)
    link = LiveLink(settings, SecretStr(KEY), Metrics())
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(30_000) + b"\xff\xd9"
    step = chunk_ms / 1000
    samples = 16 * chunk_ms
    chunks = [stamped_chunk(i, speech=False, samples=samples) for i in range(int(seconds / step) + 1)]
    handed: list[float] = []

    async def drain() -> None:
        while True:
            await link.next_event()

    async def stream() -> None:
        while not link.connected:
            await asyncio.sleep(0.01)
        if os.environ.get("BENCH_SIGNAL"):  # bench/uplink_peers.py times its window from here
            print("streaming", flush=True)
        start = time.monotonic()
        for i, pcm in enumerate(chunks):
            await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
            now = time.monotonic()
            handed.append(now)
            link.send_audio(AudioChunk(pcm, 16_000, now))
            if video and i % round(1 / step) == 0:
                link.send_video(VideoFrame(jpeg, now))
        while link.replay_seconds > 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(link.run())
        ev = tg.create_task(drain())
        await stream()
        run.cancel()
        ev.cancel()
    await asyncio.to_thread(out.write_text, json.dumps({"handed": handed}))


async def raw_client(base_url: str, ca_file: str, seconds: float, out: Path, chunk_ms: int) -> None:
    """The floor: the same stream over a bare websocket, no SDK, no link logic."""
    import ssl

    import websockets

    from daemon.live.wire import audio_message
    from simulator.probe import stamped_chunk

    ctx = ssl.create_default_context(cafile=ca_file)
    url = base_url.replace("https://", "wss://") + (
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )
    step = chunk_ms / 1000
    msgs = [audio_message(stamped_chunk(i, False, 16 * chunk_ms))
            for i in range(int(seconds / step) + 1)]
    handed: list[float] = []
    async with websockets.connect(url, ssl=ctx, additional_headers={"x-goog-api-key": KEY},
                                  compression=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        await ws.recv()
        start = time.monotonic()
        for i, msg in enumerate(msgs):
            await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
            handed.append(time.monotonic())
            await ws.send(msg, text=True)
    await asyncio.to_thread(out.write_text, json.dumps({"handed": handed}))


def measure_floor(base_url: str, ca_file: str, chunk_ms: int, seconds: float) -> float:
    """CPU share of the bare-websocket client over the same kind of stream."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, __file__, "raw", base_url, ca_file, str(seconds),
                             str(tmp / "raw.json"), str(chunk_ms)], env=env)
    time.sleep(2.0)
    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds - 3.0)
    cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
    proc.wait(timeout=30)
    return cpu


# -- orchestrator ---------------------------------------------------------------



def orchestrate(quick: bool, chunk_ms: int) -> dict[str, Any]:
    seconds = 15.0 if quick else 40.0
    steady = (2.0, 10.0) if quick else (3.0, 23.0)  # CPU window, seconds after start
    goaway_at, abort_at = (11.0, 13.0) if quick else (25.0, 32.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    py = sys.executable
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    server = subprocess.Popen([py, __file__, "server", str(tmp / "server.json"), str(chunk_ms)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdin is not None
    assert server.stdout is not None
    info = json.loads(server.stdout.readline())
    cli = subprocess.Popen([py, __file__, "client", info["base_url"], info["ca_file"],
                            str(seconds), str(tmp / "client.json"), str(chunk_ms)], env=env)
    t0 = time.monotonic()
    cpu_at: dict[str, float] = {}

    def at(t: float) -> None:
        time.sleep(max(0.0, t0 + t - time.monotonic()))

    at(steady[0])
    cpu_at["start"] = cpu_seconds(cli.pid)
    at(steady[1])
    cpu_at["end"] = cpu_seconds(cli.pid)
    rss = rss_mb(cli.pid)
    at(goaway_at)
    server.stdin.write("goaway\n")
    server.stdin.flush()
    server.stdout.readline()
    at(abort_at)
    server.stdin.write("abort\n")
    server.stdin.flush()
    server.stdout.readline()
    cli.wait(timeout=seconds + 30)
    server.stdin.write("dump\n")
    server.stdin.flush()
    server.stdout.readline()
    floor = measure_floor(info["base_url"], info["ca_file"], chunk_ms, 12.0 if quick else 20.0)
    server.stdin.write("quit\n")
    server.stdin.flush()
    server.wait(timeout=30)

    handed = json.loads((tmp / "client.json").read_text())["handed"]
    got = json.loads((tmp / "server.json").read_text())
    chunks = got["chunks"]
    seqs = [c[1] for c in chunks]
    lost = len(set(range(len(handed))) - set(seqs))
    dups = len(seqs) - len(set(seqs))
    first_conn_change = [i for i in range(1, len(chunks)) if chunks[i][2] != chunks[i - 1][2]]
    gaps = [(chunks[i][0] - chunks[i - 1][0]) * 1000 for i in first_conn_change]
    steady_lat = [
        (t - handed[s]) * 1000
        for t, s, conn in chunks
        if conn == 0 and steady[0] < handed[s] - handed[0] < steady[1]
    ]
    cpu = (cpu_at["end"] - cpu_at["start"]) / (steady[1] - steady[0]) * 100
    return {
        "audio_chunks": len(handed),
        "video_frames": len(got["frames"]),
        "latency_p50_ms": statistics.median(steady_lat),
        "latency_p99_ms": percentile(steady_lat, 99),
        "latency_max_ms": max(steady_lat),
        "goaway_gap_ms": gaps[0] if gaps else float("nan"),
        "abort_gap_ms": gaps[1] if len(gaps) > 1 else float("nan"),
        "lost_frames": lost,
        "duplicated_frames": dups,
        "reordered": seqs != sorted(seqs),
        "cpu_percent": cpu,
        "floor_cpu_percent": floor,
        "cpu_vs_floor": cpu / floor,
        "rss_mb": rss,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        asyncio.run(serve(Path(sys.argv[2]), int(sys.argv[3])))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "raw":
        asyncio.run(raw_client(sys.argv[2], sys.argv[3], float(sys.argv[4]), Path(sys.argv[5]),
                               int(sys.argv[6])))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        coro = client(sys.argv[2], sys.argv[3], float(sys.argv[4]), Path(sys.argv[5]),
                      int(sys.argv[6]), video=sys.argv[7:8] != ["0"])
        run_profiled(coro)  # BENCH_PROFILE=file: where the client's CPU goes
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chunk-ms", type=int, default=40,
                    help="audio handed to the link per call (the file peripheral sends 40)")
    args = ap.parse_args()
    res = orchestrate(args.quick, args.chunk_ms)
    print(f"chunk {args.chunk_ms} ms, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{'figure':<20}{'measured':>12}{'target':>12}")
    for key, value in res.items():
        target = TARGETS.get(key)
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        ok = "" if target is None else ("  ok" if value <= target else "  MISSED")
        tgt = "" if target is None else (f"<= {target}")
        print(f"{key:<20}{shown:>12}{tgt:>12}{ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

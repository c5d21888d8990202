"""BLE pipeline benchmark: glasses notification to the Live server, across four processes.

The radio hub (`simulator.radio`, the `sim radio` main), the virtual glasses, the fake
Live server and the daemon each run in their own process, as in production:

    glasses ──HCI/TCP──▶ radio hub ──HCI/TCP──▶ daemon (BlePeripheral ─▶ Agent ─▶ LiveLink)
                                                                       ══WSS══▶ fake Live server

The glasses (omiGlass by default: Opus 16 kHz in 20 ms frames, one frame per omi
packet id) stream a looped speech WAV; the daemon asks for a photo one second after
the last one was asked for (`take_photo`, the one-shot command: omiGlass intervals start
at 5 s), which the peripheral holds until the user pauses (`BENCH_PHOTO_QUIET=0`: at
once; see daemon/peripherals/ble/photo_pacing.py). Every time is
CLOCK_MONOTONIC, system-wide on Linux, so times taken in different processes compare
directly. Opus is lossy, so frames are matched by the omi packet id, not by stamped
samples:

* glasses: each audio notification's packet id and send time (`on_audio_notify` hook,
  just before the notification is handed to Bumble), written unbuffered to a file so a
  SIGKILL loses nothing already sent;
* daemon: each reassembled frame's packet id and receive time (`on_audio_frame` hook of
  `BlePeripheral`), then the time its decoded chunk is handed to `LiveLink.send_audio`
  (a thin `Agent` subclass) with a CRC of the PCM;
* server: each received audio message's time and CRC (`FakeLiveServer.audio_chunks`);
  the link sends one message per chunk in order, so the n-th message is the n-th
  handed chunk, and the CRCs confirm it.

Latencies are also split by the frame's level at the server: frames carrying the user's
voice (at or above the pacing's VOICE_RMS) and quiet ones, which a photo asked for in a
pause may delay.

CPU and peak RSS of the daemon are read from /proc by the orchestrator, not
self-reported; the daemon reports the garbage collector's share of the steady window
(`gc_percent`, part of `cpu_percent`). Reconnect: the glasses process is SIGKILLed, stays away `--down`
seconds (longer than the radio's 1 s supervision timeout, so the daemon has seen the
link die and is scanning), and is started again with packet ids from a fresh base;
reconnect time is restart to the first frame handed to the link again.

    .venv/bin/python bench/ble_pipeline.py            # full run, ~75 s
    .venv/bin/python bench/ble_pipeline.py --quick    # ~25 s
    .venv/bin/python bench/ble_pipeline.py --profile omi   # audio only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import queue
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import IO, Any

from procstat import cpu_seconds, percentile, rss_mb
from procstat import run as run_profiled  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
AUDIO_WAV = ROOT / "simulator" / "assets" / "demo_conversation.wav"
KEY = "bench-key-0123456789"
PID_STEP = 10_000  # glasses run k numbers its omi packets from k * PID_STEP
RECORD = struct.Struct("<dI")  # glasses send record: monotonic time, packet id
FLOW_GAP = 0.5  # a frame handed after this long without one marks (re)started flow
KILL_MARGIN = 0.1  # frames sent this close before a SIGKILL may die with the process
FRAME_BYTES = 640  # one 20 ms frame of 16 kHz 16-bit audio, as the daemon hands it over
VOICE_RMS = 300  # a frame at least this loud carries the user's voice (photo_pacing's level)

TARGETS = {
    "notify_to_link_p50_ms": 2.0,
    "notify_to_link_p99_ms": 10.0,
    "lost_frames": 0,
    "cpu_percent": 3.0,
}


# -- server process -------------------------------------------------------------
async def serve(out: Path) -> None:
    from daemon.media.level import mean_square
    from simulator.live_server import FakeLiveServer
    from simulator.scenario import Scenario

    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=())) as server:
        print(json.dumps({"base_url": server.base_url, "ca_file": str(server.ca_pem_path)}),
              flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "dump":
                # One entry per 20 ms frame: a catch-up message after a busy moment
                # carries several frames, each matched to the chunk it came from.
                chunks = [(c.t, zlib.crc32(c.pcm[i : i + FRAME_BYTES]), c.connection,
                           mean_square(c.pcm[i : i + FRAME_BYTES]))
                          for c in server.audio_chunks
                          for i in range(0, len(c.pcm), FRAME_BYTES)]
                messages = [(len(c.pcm) + FRAME_BYTES - 1) // FRAME_BYTES
                            for c in server.audio_chunks]
                frames = [(f.t, len(f.jpeg), f.connection) for f in server.video_frames]
                data = json.dumps({"chunks": chunks, "frames": frames,
                                   "multi_frame_messages": sum(n > 1 for n in messages)})
                await asyncio.to_thread(out.write_text, data)
            elif line == "quit":
                break
            print("ok", flush=True)


# -- glasses process ------------------------------------------------------------
async def glasses(transport: str, profile: str, pid_start: int, rec: IO[bytes],
                  log: IO[str]) -> None:
    """`rec` is unbuffered (one write(2) per notification, so a SIGKILL loses no record)
    and `log` line-buffered."""
    from daemon.media.wav import read_wav
    from simulator.glasses import VirtualGlasses

    pcm, rate = read_wav(AUDIO_WAV)

    def on_notify(value: bytes, t: float) -> None:
        rec.write(RECORD.pack(t, int.from_bytes(value[:2], "little")))

    def on_event(event: dict[str, Any]) -> None:
        event.pop("stats", None)
        log.write(json.dumps({"t": time.monotonic(), **event}) + "\n")

    g = VirtualGlasses(profile, transport, pcm=pcm, pcm_rate=rate, loop=True,
                       packet_id_start=pid_start, on_event=on_event, on_audio_notify=on_notify)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, g.stop)
    log.write(json.dumps({"t": time.monotonic(), "event": "process_ready"}) + "\n")
    await g.run()


# -- daemon process -------------------------------------------------------------
async def daemon(transport: str, base_url: str, ca_file: str, profile_name: str, out: Path,
                 photo_every: float) -> None:
    from pydantic import SecretStr

    from daemon.agent import Agent
    from daemon.config import LiveSettings
    from daemon.live.link import LiveLink
    from daemon.media.types import AudioChunk, VideoFrame
    from daemon.ops.metrics import Metrics
    from daemon.peripherals.ble.peripheral import BlePeripheral, PhotoUnavailable
    from daemon.peripherals.ble.photo_pacing import QUIET_SECONDS
    from daemon.peripherals.ble.profile import load_profile
    from daemon.tools.registry import ToolRegistry

    profile = load_profile(profile_name)
    current = [-1, 0.0]  # packet id and receive time of the frame being decoded
    handed: list[tuple[int, float, float, int]] = []  # pid, received, handed, crc32
    videos: list[tuple[float, float, int]] = []  # photo complete, handed, bytes
    requests: list[float] = []
    last = [0.0]

    def on_frame(pid: int, t: float) -> None:
        current[0], current[1] = pid, t

    class TimedLink(LiveLink):
        """Stamps what the (unchanged) Agent hands to the link; the frame being
        decoded is the one `on_frame` named, as decoding is synchronous."""

        def send_audio(self, chunk: AudioChunk) -> None:
            t = time.monotonic()
            handed.append((int(current[0]), current[1], t, zlib.crc32(chunk.pcm)))
            if t - last[0] > FLOW_GAP:
                print(f"flow {t!r}", flush=True)
            last[0] = t
            super().send_audio(chunk)

        def send_video(self, frame: VideoFrame, *, force: bool = False) -> None:
            videos.append((frame.captured_at, time.monotonic(), len(frame.jpeg)))
            super().send_video(frame, force=force)

    gc_time = _gc_clock()
    metrics = Metrics()
    # The server splits each message into 20 ms frames and matches the n-th frame with
    # the n-th chunk handed over (by CRC), whatever the messages held. BENCH_UPLINK_MS=40
    # measures live.uplink_chunk_ms = 40 (then a pair's first frame waits for its second).
    uplink_ms = int(os.environ.get("BENCH_UPLINK_MS", "20"))
    settings = LiveSettings(base_url=base_url, ca_file=Path(ca_file), uplink_chunk_ms=uplink_ms)
    link = TimedLink(settings, SecretStr(KEY), metrics)
    # BENCH_PHOTO_QUIET=0 asks for each photo at once (no pause of the user awaited).
    quiet = float(os.environ.get("BENCH_PHOTO_QUIET", QUIET_SECONDS))
    peripheral = BlePeripheral(profile, f"virtual:{transport}", on_audio_frame=on_frame,
                               photo_quiet=quiet)
    agent = Agent(link, peripheral, ToolRegistry(), metrics)

    async def photos() -> None:
        """A photo asked for `photo_every` seconds after the last one was (the peripheral
        may hold a request until the user pauses; catching up would then ask for two in a
        row, and the link's 1 fps limit would drop the second)."""
        while True:
            await asyncio.sleep(photo_every)
            t = time.monotonic()
            try:
                await peripheral.take_photo()
            except (PhotoUnavailable, TimeoutError):
                continue
            requests.append(t)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(agent.run())]
        if photo_every > 0 and profile.photo.control is not None:
            tasks.append(tg.create_task(photos()))
        marks = await _until_quit(gc_time)
        for task in tasks:
            task.cancel()
    data = {"handed": handed, "videos": videos, "photo_requests": requests,
            **_daemon_figures(peripheral.status(), metrics), "gc_marks": marks}
    await asyncio.to_thread(out.write_text, json.dumps(data))


async def _until_quit(gc_time: list[float]) -> list[tuple[list[int], list[float]]]:
    """Read the orchestrator's stdin until `quit`; each `mark` (the steady window starts
    or ends) notes the garbage collector's counts and time."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    marks: list[tuple[list[int], list[float]]] = []
    while (line := (await reader.readline()).decode().strip()) and line != "quit":
        if line == "mark":
            marks.append(([g["collections"] for g in gc.get_stats()], list(gc_time)))
    return marks


def _daemon_figures(status: dict[str, Any], metrics: Any) -> dict[str, Any]:
    """The peripheral's counters and the link's drop counters at the end of the run."""

    def sample(name: str, **labels: str) -> float:
        return float(metrics.registry.get_sample_value(name, labels) or 0.0)

    return {"media": status["media"], "link": status["link"],
            "photo_pacing": status.get("photo_pacing", {}),
            "decoder": status["decoder"], "framing": status.get("audio_framing", {}),
            "video_withheld": sample("edge_uplink_withheld_total", kind="video_idle"),
            "video_rate_limited": sample("edge_live_uplink_video_skipped_frames_total",
                                         reason="rate"),
            "video_superseded": sample("edge_live_uplink_video_skipped_frames_total",
                                       reason="superseded"),
            "audio_dropped": sample("edge_live_uplink_audio_dropped_chunks_total")}


def _gc_clock() -> list[float]:
    """Process CPU time spent in the cyclic garbage collector, per generation (kept
    up to date in the returned list by a gc callback)."""
    spent = [0.0, 0.0, 0.0]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            spent[info["generation"]] += time.process_time() - started[0]

    gc.callbacks.append(on_gc)
    return spent


# -- orchestrator ---------------------------------------------------------------



def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _read_json_line(stream: IO[str], timeout: float, what: str) -> Any:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{what} did not start within {timeout:.0f} s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what} exited during start-up")
    return json.loads(line)


class _Lines:
    """A subprocess's stdout lines on a queue, read by a thread (no blocking reads)."""

    def __init__(self, stream: IO[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.q.put(line.strip())

    def flow_after(self, t: float, timeout: float) -> float:
        """Monotonic time of the first 'flow' the daemon reports at or after `t`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith("flow ") and float(line.split()[1]) >= t:
                return float(line.split()[1])
        raise RuntimeError(f"no audio reached the Live link within {timeout:.0f} s")


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _sent(path: Path) -> list[tuple[float, int]]:
    data = path.read_bytes() if path.exists() else b""
    data = data[: len(data) - len(data) % RECORD.size]
    return [(t, pid) for t, pid in RECORD.iter_unpack(data)]


class _Fleet:
    """The benchmark's processes: spawned with their stderr in `tmp`, killed at the end."""

    def __init__(self, tmp: Path, profile: str) -> None:
        self.tmp = tmp
        self.profile = profile
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs: list[subprocess.Popen[str]] = []
        self.transports: list[str] = []

    def spawn(self, args: list[str], name: str, **kw: Any) -> subprocess.Popen[str]:
        err = open(self.tmp / f"{name}.err", "a")  # noqa: SIM115 - the child keeps it
        p = subprocess.Popen(args, env=self.env, cwd=ROOT, text=True, stderr=err, **kw)
        err.close()
        self.procs.append(p)
        return p

    def spawn_glasses(self, run: int) -> subprocess.Popen[str]:
        tmp = self.tmp
        return self.spawn([sys.executable, __file__, "glasses", self.transports[0], self.profile,
                           str(run * PID_STEP), str(tmp / f"sent{run}.bin"),
                           str(tmp / f"events{run}.jsonl")],
                          f"glasses{run}", stdout=subprocess.DEVNULL)

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def _start(fleet: _Fleet, photo_every: float) -> dict[str, subprocess.Popen[str]]:
    """Radio hub, fake Live server, glasses run 0, daemon: started in that order."""
    py, tmp = sys.executable, fleet.tmp
    radio = fleet.spawn([py, "-m", "simulator.radio", "--ports", "2"], "radio",
                        stdout=subprocess.PIPE)
    assert radio.stdout is not None
    fleet.transports = _read_json_line(radio.stdout, 20, "radio hub")["transports"]
    server = fleet.spawn([py, __file__, "server", str(tmp / "server.json")], "server",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdin is not None
    assert server.stdout is not None
    info = _read_json_line(server.stdout, 30, "fake Live server")
    gl = fleet.spawn_glasses(0)
    dmn = fleet.spawn([py, __file__, "daemon", fleet.transports[1], info["base_url"],
                       info["ca_file"], fleet.profile, str(tmp / "daemon.json"),
                       str(photo_every)], "daemon",
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert dmn.stdin is not None
    assert dmn.stdout is not None
    return {"daemon": dmn, "glasses": gl, "radio": radio, "server": server}


def _steady_cpu(procs: dict[str, subprocess.Popen[str]], window: float,
                phases: dict[str, Any]) -> dict[str, float]:
    """CPU percent of every process over a window of steady streaming."""
    mark = procs["daemon"].stdin
    assert mark is not None
    c0 = {k: cpu_seconds(p.pid) for k, p in procs.items()}
    t0 = time.monotonic()
    mark.write("mark\n")
    mark.flush()
    time.sleep(window)
    t1 = time.monotonic()
    mark.write("mark\n")
    mark.flush()
    cpu = {k: (cpu_seconds(p.pid) - c0[k]) / (t1 - t0) * 100 for k, p in procs.items()}
    phases["window"] = (t0, t1)
    phases["load"] = os.getloadavg()
    return cpu


def _reconnects(fleet: _Fleet, gl: subprocess.Popen[str], lines: _Lines, cycles: int,
                down: float, settle: float, phases: dict[str, Any]) -> subprocess.Popen[str]:
    """SIGKILL the glasses, keep them away, start them again; returns the last glasses."""
    for run in range(1, cycles + 1):
        phases["kills"].append(time.monotonic())
        os.kill(gl.pid, signal.SIGKILL)
        gl.wait(timeout=10)
        time.sleep(down)
        restart = time.monotonic()
        gl = fleet.spawn_glasses(run)
        phases["restarts"].append(restart)
        lines.flow_after(restart, 60)
        time.sleep(settle)
    return gl


def _stop(gl: subprocess.Popen[str], dmn: subprocess.Popen[str],
          server: subprocess.Popen[str]) -> None:
    """Glasses first, then the daemon writes its records, then the server dumps its."""
    assert dmn.stdin is not None
    assert server.stdin is not None
    assert server.stdout is not None
    gl.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        gl.wait(timeout=10)
    time.sleep(0.5)  # the last frames reach the server
    dmn.stdin.write("quit\n")
    dmn.stdin.flush()
    dmn.wait(timeout=30)
    for cmd in ("dump", "quit"):
        server.stdin.write(cmd + "\n")
        server.stdin.flush()
        if cmd == "dump":
            server.stdout.readline()
    server.wait(timeout=30)


def orchestrate(quick: bool, profile: str, cycles: int, down: float, photo_every: float,
                keep: bool = False) -> dict[str, Any]:
    warm, window, settle = (2.0, 12.0, 3.0) if quick else (3.0, 40.0, 5.0)
    if cycles < 0:
        cycles = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-ble-"))
    fleet = _Fleet(tmp, profile)
    phases: dict[str, Any] = {"restarts": [], "kills": []}
    try:
        procs = _start(fleet, photo_every)
        dmn = procs["daemon"]
        assert dmn.stdout is not None
        lines = _Lines(dmn.stdout)
        phases["first_flow"] = lines.flow_after(0.0, 60)
        time.sleep(warm)
        cpu = _steady_cpu(procs, window, phases)
        gl = _reconnects(fleet, procs["glasses"], lines, cycles, down, settle, phases)
        rss = rss_mb(dmn.pid)
        phases["end"] = time.monotonic()
        _stop(gl, dmn, procs["server"])
    except BaseException:
        print(f"bench failed; process logs in {tmp}", file=sys.stderr)
        raise
    finally:
        fleet.kill_all()
    res = analyse(tmp, cycles, cpu, rss, phases)
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _ms(pairs: list[tuple[float, float]]) -> list[float]:
    return [(b - a) * 1000 for a, b in pairs]


def _match_server(handed: list[Any], chunks: list[Any]) -> tuple[dict[int, float],
                                                                 dict[int, float], int]:
    """Server messages map to handed chunks in order; the CRC confirms each pair.

    Returns handed index -> server time, handed index -> the frame's mean square, and
    how many messages matched none."""
    server_t: dict[int, float] = {}
    level: dict[int, float] = {}
    i = mismatched = 0
    for t, crc, _conn, ms in chunks:
        j = i
        while j < len(handed) and handed[j][3] != crc:
            j += 1
        if j == len(handed):
            mismatched += 1
            continue
        server_t[j] = t
        level[j] = ms
        i = j + 1
    return server_t, level, mismatched


def _reconnect_figures(tmp: Path, handed: list[Any], sent_at: dict[int, float],
                       restarts: list[float]) -> tuple[list[float], list[float],
                                                        list[dict[str, float]]]:
    """Per restart: ms to the first frame handed, ms from advertising, and the parts."""
    reconnect: list[float] = []
    adv_to_link: list[float] = []
    parts: list[dict[str, float]] = []
    for run, restart in enumerate(restarts, start=1):
        first = min((h[2] for h in handed if h[0] // PID_STEP == run), default=float("nan"))
        ev = {e["event"]: e["t"] for e in reversed(_events(tmp / f"events{run}.jsonl"))}
        first_sent = min((t for pid, t in sent_at.items() if pid // PID_STEP == run),
                         default=float("nan"))
        before = [h[2] for h in handed if h[0] // PID_STEP == run - 1]
        adv = ev.get("advertising", float("nan"))
        reconnect.append((first - restart) * 1000)
        adv_to_link.append((first - adv) * 1000)
        parts.append({  # milliseconds after the restart
            "imports_done": (ev.get("process_ready", float("nan")) - restart) * 1000,
            "advertising": (adv - restart) * 1000,
            "connected": (ev.get("connected", float("nan")) - restart) * 1000,
            "first_notification": (first_sent - restart) * 1000,
            "first_handed": (first - restart) * 1000,
            "audio_gap": (first - max(before)) * 1000 if before else float("nan"),
        })
    return reconnect, adv_to_link, parts


def _frame_figures(handed: list[Any], sent_at: dict[int, float], server_t: dict[int, float],
                   window: tuple[float, float], level: dict[int, float]) -> dict[str, Any]:
    """Latency of the frames sent in the steady window, hop by hop; and notify -> link
    of the frames carrying the user's voice (the server's copy at or above VOICE_RMS)
    apart from the quiet ones, which photos asked for in a pause may delay."""
    t0, t1 = window
    steady = [k for k, h in enumerate(handed) if h[0] in sent_at and t0 <= sent_at[h[0]] <= t1]
    voice = [k for k in steady if level.get(k, 0.0) >= VOICE_RMS**2]
    quiet = [k for k in steady if k in level and level[k] < VOICE_RMS**2]
    n2link_voice = _ms([(sent_at[handed[k][0]], handed[k][2]) for k in voice])
    n2link_quiet = _ms([(sent_at[handed[k][0]], handed[k][2]) for k in quiet])
    all_ok = [k for k, h in enumerate(handed) if h[0] in sent_at]
    n2rx = _ms([(sent_at[handed[k][0]], handed[k][1]) for k in steady])
    rx2link = _ms([(handed[k][1], handed[k][2]) for k in steady])
    n2link = _ms([(sent_at[handed[k][0]], handed[k][2]) for k in steady])
    n2link_all = _ms([(sent_at[handed[k][0]], handed[k][2]) for k in all_ok])
    link2srv = _ms([(handed[k][2], server_t[k]) for k in steady if k in server_t])
    n2srv = _ms([(sent_at[handed[k][0]], server_t[k]) for k in steady if k in server_t])
    return {
        "frames_sent": len(sent_at),
        "frames_handed": len(handed),
        "steady_frames": len(steady),
        "notify_to_rx_p50_ms": _median(n2rx),
        "notify_to_rx_p99_ms": percentile(n2rx, 99),
        "rx_to_link_p50_ms": _median(rx2link),
        "rx_to_link_p99_ms": percentile(rx2link, 99),
        "notify_to_link_p50_ms": _median(n2link),
        "notify_to_link_p99_ms": percentile(n2link, 99),
        "notify_to_link_max_ms": max(n2link, default=float("nan")),
        "notify_to_link_p99_all_ms": percentile(n2link_all, 99),
        "voice_frames": len(voice),
        "voice_notify_to_link_p99_ms": percentile(n2link_voice, 99),
        "voice_notify_to_link_max_ms": max(n2link_voice, default=float("nan")),
        "quiet_notify_to_link_p99_ms": percentile(n2link_quiet, 99),
        "link_to_server_p50_ms": _median(link2srv),
        "link_to_server_p99_ms": percentile(link2srv, 99),
        "notify_to_server_p50_ms": _median(n2srv),
        "notify_to_server_p99_ms": percentile(n2srv, 99),
    }


def _gc_figures(marks: list[Any], window: tuple[float, float]) -> dict[str, Any]:
    """The daemon's cyclic-GC work in the steady window: collections per generation and
    its CPU time as a share of one core (part of cpu_percent)."""
    if len(marks) < 2:
        return {}
    (n0, s0), (n1, s1) = marks[0], marks[1]
    span = window[1] - window[0]
    return {"gc_percent": (sum(s1) - sum(s0)) / span * 100,
            "gc_collections": "/".join(str(b - a) for a, b in zip(n0, n1, strict=True))}


def analyse(tmp: Path, cycles: int, cpu: dict[str, float], rss: float,
            phases: dict[str, Any]) -> dict[str, Any]:
    d = json.loads((tmp / "daemon.json").read_text())
    srv = json.loads((tmp / "server.json").read_text())
    handed = [tuple(h) for h in d["handed"]]  # pid, received, handed, crc
    sent_at: dict[int, float] = {}
    kill_cut: dict[int, float] = {}  # run -> time after which a frame may die with it
    for run in range(cycles + 1):
        for t, pid in _sent(tmp / f"sent{run}.bin"):
            sent_at[pid] = t  # pids are unique: run k uses k * PID_STEP upwards
        if run < len(phases["kills"]):
            kill_cut[run] = phases["kills"][run] - KILL_MARGIN
    server_t, level, mismatched = _match_server(handed, srv["chunks"])

    got = {h[0] for h in handed}
    missing = [pid for pid in sent_at if pid not in got]

    def near_kill(pid: int) -> bool:
        cut = kill_cut.get(pid // PID_STEP)
        return cut is not None and sent_at[pid] >= cut

    lost_at_kill = sum(1 for pid in missing if near_kill(pid))
    reconnect, adv_to_link, parts = _reconnect_figures(tmp, handed, sent_at, phases["restarts"])
    videos = d["videos"]  # photos the Agent handed to the link
    requests = d["photo_requests"]
    photo_lat = [(v[0] - max(r for r in requests if r <= v[0])) * 1000
                 for v in videos if any(r <= v[0] for r in requests)]
    return {
        **_frame_figures(handed, sent_at, server_t, phases["window"], level),
        "lost_frames": len(missing) - lost_at_kill,
        "lost_at_sigkill": lost_at_kill,
        "handed_not_at_server": len(handed) - len(server_t),
        "server_unmatched": mismatched,
        "catch_up_messages": srv["multi_frame_messages"],
        "cpu_percent": cpu["daemon"],
        **_gc_figures(d["gc_marks"], phases["window"]),
        "glasses_cpu_percent": cpu["glasses"],
        "radio_cpu_percent": cpu["radio"],
        "server_cpu_percent": cpu["server"],
        "rss_mb": rss,
        "photos_requested": len(requests),
        "photos_received": d["media"]["photos"],
        "photos_withheld_idle": int(d["video_withheld"]),
        "photos_handed": len(videos),
        "photos_rate_limited": int(d["video_rate_limited"]),
        "photos_superseded": int(d["video_superseded"]),
        "photos_at_server": len(srv["frames"]),
        "photo_bytes": videos[0][2] if videos else 0,
        "photo_request_to_link_p50_ms": _median(photo_lat),
        **{f"photo_requests_{k}": v for k, v in d["photo_pacing"].items()},
        "reconnects": len(reconnect),
        "reconnect_median_ms": _median(reconnect),
        "reconnect_max_ms": max(reconnect, default=float("nan")),
        "adv_to_link_median_ms": _median(adv_to_link),
        "load_avg_1m": phases["load"][0],
        "reconnect_parts": parts,
        "daemon_media": d["media"],
        "daemon_link": d["link"],
        "daemon_tracker": d["framing"],
        "daemon_decoder": d["decoder"],
    }


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "server":
        asyncio.run(serve(Path(sys.argv[2])))
        return 0
    if mode == "glasses":
        with open(sys.argv[5], "ab", buffering=0) as rec, open(sys.argv[6], "a", buffering=1) as log:
            asyncio.run(glasses(sys.argv[2], sys.argv[3], int(sys.argv[4]), rec, log))
        return 0
    if mode == "daemon":
        coro = daemon(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], Path(sys.argv[6]),
                      float(sys.argv[7]))
        run_profiled(coro)  # BENCH_PROFILE=file: where the daemon's CPU goes
        return 0
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~25 s instead of ~75 s")
    ap.add_argument("--profile", default="omiglass", choices=["omiglass", "omi"])
    ap.add_argument("--cycles", type=int, default=-1,
                    help="glasses kill/restart cycles (default 1 quick, 3 full)")
    ap.add_argument("--down", type=float, default=3.0,
                    help="seconds the killed glasses stay away (default 3)")
    ap.add_argument("--photo-every", type=float, default=1.0,
                    help="seconds between photo requests, 0 = none (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the per-process records")
    ap.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = ap.parse_args()
    res = orchestrate(args.quick, args.profile, args.cycles, args.down, args.photo_every,
                      args.keep)
    print(f"profile {args.profile}, photo every {args.photo_every:g} s, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}")
    print(f"{'figure':<30}{'measured':>12}{'target':>12}")
    for key, value in res.items():
        if isinstance(value, dict | list):
            continue
        target = TARGETS.get(key)
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        ok = "" if target is None else ("  ok" if value <= target else "  MISSED")
        tgt = "" if target is None else (f"<= {target}")
        print(f"{key:<30}{shown:>12}{tgt:>12}{ok}")
    for n, parts in enumerate(res["reconnect_parts"], start=1):
        print(f"reconnect {n}, ms after restart: "
              + ", ".join(f"{k} {v:.0f}" for k, v in parts.items()))
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The room of `simulator.soundcard.pulse.EchoHarness`, run as its own process:

    python -m simulator.soundcard.room_process WORKDIR [delay_s=0.06 drr_db=3 ...]

Reads what the daemon plays from spk.monitor (parec), passes each 10 ms through
an `EchoRoom`, adds the talker's clip when stdin says `say FILE.npy`, plays the
mix to the `mic` sink (pacat). Prints `ready` once running; on `quit` (or end of
stdin) writes WORKDIR/log.npz: per frame (time, played, echo, talker) mean
squares, and the time each clip began.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from simulator.soundcard.room import EchoRoom

FRAME = 160
FMT = ["--rate=16000", "--channels=1", "--format=s16le", "--raw"]
Floats = npt.NDArray[np.float64]


class Talker:
    """Clips queued by `say`, spoken one after the other, 10 ms at a time."""

    def __init__(self) -> None:
        self.clips: deque[Floats] = deque()
        self.onsets: list[float] = []
        self._current: Floats | None = None
        self._pos = 0

    def frame(self, now: float) -> Floats:
        """The talker's next 10 ms (silence between clips)."""
        out = np.zeros(FRAME)
        if self._current is None and self.clips:
            self._current, self._pos = self.clips.popleft(), 0
            self.onsets.append(now)
        if self._current is not None:
            part = self._current[self._pos : self._pos + FRAME]
            out[: len(part)] = part
            self._pos += FRAME
            if self._pos >= len(self._current):
                self._current = None
        return out


def _commands(talker: Talker, stop: threading.Event) -> None:
    for line in sys.stdin:
        word, _, arg = line.strip().partition(" ")
        if word == "say":
            talker.clips.append(np.load(arg))
        elif word == "quit":
            break
    stop.set()


def _loop(room: EchoRoom, talker: Talker, stop: threading.Event, source: IO[bytes],
          sink: IO[bytes]) -> list[tuple[float, float, float, float]]:
    log: list[tuple[float, float, float, float]] = []
    try:
        while not stop.is_set():
            data = source.read(FRAME * 2)
            if len(data) < FRAME * 2:
                break
            now = time.monotonic()
            x = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
            mic, echo, near = room.step(x, talker.frame(now))
            log.append((now, float(np.mean(x**2)), float(np.mean(echo**2)),
                        float(np.mean(near**2))))
            sink.write(np.clip(np.round(mic * 32767), -32768, 32767).astype("<i2").tobytes())
            sink.flush()
    except BrokenPipeError:
        pass
    return log


def _keep_up(*pids: int) -> str:
    """Run the room (and its parec and pacat) ahead of everything else, where allowed.

    A room that is starved for CPU lets pacat's short buffer run dry; the sound
    server then plays the rest later, and the echo path's delay grows by the gap
    for good (seen on a loaded 2-core machine: 100 -> 230 ms), which no real room
    does. Real-time scheduling (or failing that a lower nice value) keeps it
    constant; the loop blocks on parec, so it never spins. Returns what it got.
    """
    got = "none"
    for pid in pids:
        try:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(10))
            got = "fifo"
        except (OSError, AttributeError):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, -10)
                got = "nice" if got == "none" else got
    return got


def main(argv: list[str]) -> int:
    """Run the room until `quit`; argv: WORKDIR then EchoRoom's parameters as key=value."""
    workdir = Path(argv[0])
    params: dict[str, Any] = {k: float(v) for k, v in (a.split("=", 1) for a in argv[1:])}
    room = EchoRoom(**params)
    rec = subprocess.Popen(["parec", "--device=spk.monitor", "--latency-msec=10", *FMT],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    play = subprocess.Popen(["pacat", "--playback", "--device=mic", "--latency-msec=30", *FMT],
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert rec.stdout is not None
    assert play.stdin is not None
    _keep_up(0, rec.pid, play.pid)
    talker, stop = Talker(), threading.Event()
    threading.Thread(target=_commands, args=(talker, stop), daemon=True).start()
    print("ready", flush=True)
    try:
        log = _loop(room, talker, stop, rec.stdout, play.stdin)
    finally:
        for p in (rec, play):
            p.terminate()
            p.wait(timeout=10)
    np.savez(workdir / "log.npz", log=np.array(log, dtype=np.float64).reshape(-1, 4),
             onsets=np.array(talker.onsets, dtype=np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

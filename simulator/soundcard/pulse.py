"""A virtual sound card for real PyAudio: a user-level PulseAudio with two null sinks.

No sound hardware is needed: `spk` is the loudspeaker the daemon plays to (its
monitor is what the room hears) and `mic` is a sink whose monitor the daemon
records from. PortAudio reaches them through the ALSA `pulse` device (Debian
`libasound2-plugins`), which honours PULSE_SERVER, PULSE_SINK and PULSE_SOURCE.

`EchoHarness` closes the loop (in `simulator.soundcard.room_process`, its own process):
it reads what the daemon plays (`parec` on spk.monitor), passes it through an
`EchoRoom` (delay, reverberation, a compressing loudspeaker, noise), adds a
talker's voice when asked, and plays the mix into the microphone (`pacat` to
mic), frame by frame, in real time.
Debian packages: pulseaudio, pulseaudio-utils, libasound2-plugins (scripts/bootstrap).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.errors import EdgeAgentError

CONF = """
load-module module-native-protocol-unix socket={socket} auth-anonymous=1
load-module module-null-sink sink_name=spk rate=24000 channels=1
load-module module-null-sink sink_name=mic rate=16000 channels=1
"""


class SoundCardUnavailable(EdgeAgentError, RuntimeError):
    """The virtual sound card cannot run here; the message says why."""


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise SoundCardUnavailable(f"{', '.join(missing)} not installed (scripts/bootstrap "
                                   "installs pulseaudio and pulseaudio-utils)")


@dataclass
class VirtualSoundCard:
    """A running PulseAudio with `spk` and `mic`; `env` points PortAudio at it."""

    root: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """The sound server goes away (as a USB card pulled out takes its devices)."""
        _stop(self.process)

    def start(self) -> None:
        """Start (again) on the same socket."""
        self.process = _start(self.root)
        _wait_ready(self)

    @property
    def socket(self) -> Path:
        """The server's native-protocol socket."""
        return self.root / "native"

    @property
    def env(self) -> dict[str, str]:
        """For the daemon: device `pulse`, playing to spk, recording mic.monitor."""
        return {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_SINK": "spk",
                "PULSE_SOURCE": "mic.monitor"}

    def client_env(self) -> dict[str, str]:
        """For pactl, parec and pacat: this server, and a HOME of its own."""
        return {**os.environ, "HOME": str(self.root), "XDG_RUNTIME_DIR": str(self.root),
                "PULSE_SERVER": f"unix:{self.socket}"}


def _start(root: Path) -> subprocess.Popen[bytes]:
    conf = root / "pulse.pa"
    conf.write_text(CONF.format(socket=root / "native"))
    env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root)}
    return subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(conf), "--daemonize=no", "--exit-idle-time=-1",
         "--use-pid-file=no", "--log-target=stderr", "--log-level=error"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_ready(card: VirtualSoundCard) -> None:
    deadline = time.monotonic() + 15
    while True:
        r = subprocess.run(["pactl", "list", "short", "sinks"], env=card.client_env(),
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and "spk" in r.stdout and "mic" in r.stdout:
            return
        if card.process.poll() is not None or time.monotonic() > deadline:
            raise SoundCardUnavailable(f"PulseAudio did not start (exit "
                                       f"{card.process.poll()}): {r.stderr[-500:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def virtual_sound_card(root: Path) -> Iterator[VirtualSoundCard]:
    """Start PulseAudio in `root` (its own HOME and runtime directory); stop it after."""
    _need("pulseaudio", "pactl", "parec", "pacat")
    root.mkdir(parents=True, exist_ok=True)
    card = VirtualSoundCard(root, _start(root))
    try:
        _wait_ready(card)
        yield card
    finally:
        _stop(card.process)


@dataclass
class EchoHarness:
    """Plays the room in its own process (`simulator.soundcard.room_process`): what the daemon
    plays comes back as echo, plus a talker on cue. Its own process, so the daemon
    under test and the room never share an interpreter lock: a room that falls
    behind would change the echo path's delay, which no real room does."""

    card: VirtualSoundCard
    room: dict[str, float] = field(default_factory=dict)  # EchoRoom's parameters
    workdir: Path | None = None
    onsets: list[float] = field(default_factory=list)  # when each talker clip began
    log: npt.NDArray[np.float64] | None = None  # rows: t, played, echo, talker (mean squares)
    _proc: subprocess.Popen[str] | None = None
    _clips: int = 0

    def __enter__(self) -> EchoHarness:
        self.workdir = self.workdir or self.card.root / "harness"
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "simulator.soundcard.room_process", str(self.workdir)]
        args += [f"{k}={v}" for k, v in self.room.items()]
        self._proc = subprocess.Popen(args, env=self.card.client_env(), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "ready" once parec and pacat run
        if line.strip() != "ready":
            raise SoundCardUnavailable(f"the room process did not start: {line!r}")
        return self

    def say(self, clip: npt.NDArray[np.float64]) -> None:
        """The talker speaks `clip` (16 kHz floats) from the harness's next frame on."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        assert self.workdir is not None
        path = self.workdir / f"clip{self._clips}.npy"
        self._clips += 1
        np.save(path, clip)
        self._proc.stdin.write(f"say {path}\n")
        self._proc.stdin.flush()

    def __exit__(self, *_exc: object) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        assert self.workdir is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write("quit\n")
            self._proc.stdin.flush()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        out = self.workdir / "log.npz"
        if out.exists():
            data = np.load(out)
            self.log, self.onsets = data["log"], list(data["onsets"])

    def level_db(self, column: int, start: float, end: float) -> float:
        """Mean power in dB of a log column (1 played, 2 echo, 3 talker) between two times."""
        assert self.log is not None
        rows = self.log[(self.log[:, 0] >= start) & (self.log[:, 0] < end)]
        return float(10 * np.log10(np.mean(rows[:, column]) + 1e-20)) if len(rows) else -200.0

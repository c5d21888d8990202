"""The unit under real systemd: `scripts/install` then `systemctl status edge-agent`.

systemd 252 boots as PID 1 in fresh namespaces over a throwaway copy of /etc, /opt
and /var (tests/support/systemd_boot.py); inside it the real `scripts/install
--no-packages` creates the user, /opt/edge-agent with its venv (pip, offline, from
a wheelhouse built once per dependency set), /etc/edge-agent and the key as a
credential, enables the unit and starts it. The configuration (written first, so
the install keeps it) streams a WAV as the microphone to the fake Live server over
TLS, which listens inside the booted system's network namespace (loopback only).
Then: the unit is active (running) with READY reached, the daemon streams audio as
the unprivileged user with no capabilities, no new privileges and a seccomp filter,
its watchdog armed and its state directory written, and it stops with exit 0; the
kiosk drop-in (`scripts/install --kiosk`) loads and starts; and a hardening line
that cuts what the daemon needs makes the start fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from simulator.live_server import FakeLiveServer
from tests.support import systemd_boot
from tests.support.paths import REPO, snapshot_source

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "AIzaSy-systemd-boot-key-0123456789"
UNIT = "edge-agent.service"
SOURCE = "/run/edgetest-src"  # the checkout's snapshot inside the booted system (tmpfs)
WHEELS = Path.home() / ".cache" / "edge-agent-tests"
T = TypeVar("T")


class LiveThread:
    """The fake Live server on an event loop of its own, in a thread that lives in
    the booted system's network namespace (so its socket is on that loopback)."""

    def __init__(self, booted: systemd_boot.Booted) -> None:
        self._booted = booted
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fake-live", daemon=True)
        self.server: FakeLiveServer | None = None

    def _main(self) -> None:
        try:
            with self._booted.network():
                self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test by __enter__
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with FakeLiveServer(api_key=KEY) as server:
            self.server = server
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> FakeLiveServer:
        self._thread.start()
        assert self._started.wait(30), "the fake Live server did not start"
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run a coroutine on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


@dataclass
class System:
    booted: systemd_boot.Booted
    live: LiveThread
    server: FakeLiveServer
    install: subprocess.CompletedProcess[str]
    install_seconds: float

    def status(self) -> str:
        return self.booted.systemctl("status", UNIT, check=False).stdout

    def wait(self, predicate: Callable[[], object], within: float, what: str) -> None:
        end = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < end, f"{what}: not within {within} s\n{self.status()}"
            time.sleep(0.05)

    def main_pid_status(self) -> dict[str, str]:
        """/proc/<MainPID>/status of the daemon, as the booted system sees it."""
        pid = self.booted.show(UNIT, "MainPID")["MainPID"]
        assert pid != "0", self.status()
        text = self.booted.run("cat", f"/proc/{pid}/status").stdout
        return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _wheelhouse() -> Path:
    """Wheels of every dependency (and the build backend), built once per set: the
    install inside has no network (`pip --no-index --find-links`)."""
    pyproject = (REPO / "pyproject.toml").read_bytes()
    tag = hashlib.sha256(pyproject + sys.version.encode()).hexdigest()[:16]
    wheels = WHEELS / f"wheels-{tag}"
    if wheels.is_dir():
        return wheels
    with tempfile.TemporaryDirectory() as scratch:
        source, building = Path(scratch) / "source", Path(scratch) / "wheels"
        snapshot_source(source)  # pip builds in the tree it is given: not in the checkout
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        for command in ([*pip, "wheel", "-w", str(building), str(source)],
                        [*pip, "download", "-d", str(building), "setuptools>=77"]):
            result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                    check=False)
            if result.returncode != 0:
                pytest.skip(f"cannot build the wheelhouse (no package index?): "
                            f"{result.stderr[-500:]}")
        for own in building.glob("edge_agent-*.whl"):
            own.unlink()  # the install builds the checkout itself
        WHEELS.mkdir(parents=True, exist_ok=True)
        partial = WHEELS / f".wheels-{tag}-{os.getpid()}"
        shutil.copytree(building, partial)
        partial.rename(wheels)
    return wheels


def _configure(booted: systemd_boot.Booted, server: FakeLiveServer) -> None:
    """/etc/edge-agent/edge-agent.toml before the install (which keeps it): a WAV as
    the microphone, the fake Live server (its CA) as the Live API, no home."""
    etc = booted.path("/etc/edge-agent")
    etc.mkdir(mode=0o755)
    shutil.copy(server.ca_pem_path, etc / "live-ca.pem")
    (etc / "live-ca.pem").chmod(0o644)
    (etc / "edge-agent.toml").write_text(f"""
[live]
base_url = "{server.base_url}"
ca_file = "/etc/edge-agent/live-ca.pem"

[peripheral]
kind = "file"

[peripheral.file]
input = "/opt/edge-agent/simulator/assets/demo_conversation.wav"

[ops]
health_port = 0
""", encoding="utf-8")


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    reason = systemd_boot.unavailable()
    if reason is not None:
        pytest.skip(reason)
    wheels = _wheelhouse()
    with systemd_boot.boot() as booted:
        live = LiveThread(booted)
        with live as server:
            snapshot_source(booted.path(SOURCE))
            _configure(booted, server)
            t0 = time.monotonic()
            install = booted.run(
                f"{SOURCE}/scripts/install", "--no-packages", input=KEY + "\n", check=False,
                timeout=240, env={"HOME": "/root", "PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1",
                                  "PIP_FIND_LINKS": str(wheels)})
            yield System(booted, live, server, install, time.monotonic() - t0)


def test_install_then_status_shows_it_running(system: System) -> None:
    assert system.install.returncode == 0, system.install.stdout + system.install.stderr
    assert "started edge-agent.service" in system.install.stderr
    assert KEY not in system.install.stdout + system.install.stderr
    print(f"scripts/install took {system.install_seconds:.1f} s")
    # Type=notify: `systemctl restart` in the install returned, so READY=1 arrived
    assert system.booted.show(UNIT, "ActiveState", "SubState") == {
        "ActiveState": "active", "SubState": "running"}
    status = system.status()
    print(status)
    assert re.search(r"Active: active \(running\)", status), status
    assert "Loaded: loaded (/etc/systemd/system/edge-agent.service; enabled" in status
    # the daemon set the Live session up with the fake server and streams the WAV to it
    server = system.server
    system.wait(lambda: any(c.setup_completed_at and c.audio_bytes > 32_000
                            for c in server.connections), 60, "setup and audio at the server")
    assert KEY not in system.booted.journal(UNIT)


def test_it_runs_unprivileged_and_confined(system: System) -> None:
    booted = system.booted
    status = system.main_pid_status()
    uid = booted.run("id", "-u", "edge-agent").stdout.strip()
    assert status["Uid"].split() == [uid] * 4, status["Uid"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, (cap, status[cap])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    shown = booted.show(UNIT, "WatchdogUSec", "NotifyAccess", "Type", "User",
                        "StateDirectory", "MemoryMax")
    assert shown["WatchdogUSec"] == "30s", shown
    assert shown["Type"] == "notify" and shown["NotifyAccess"] == "main"
    # TasksMax= and DevicePolicy=closed reach the kernel (v1 pids and devices controllers
    # here; MemoryMax= needs the memory controller, which this machine keeps to itself)
    cgroup = f"{booted.cgroup}/system.slice/{UNIT}"
    pids = Path("/sys/fs/cgroup/pids") / cgroup / "pids.max"
    if pids.exists():
        assert pids.read_text().strip() == "64"
    devices = Path("/sys/fs/cgroup/devices") / cgroup / "devices.list"
    if devices.exists():
        assert "a *:* rwm" not in devices.read_text()
    # the state directory: the service user's alone, and the daemon writes there
    state = booted.path("/var/lib/edge-agent")
    system.wait(lambda: any(p.is_file() for p in state.rglob("*")), 60,
                "a file in the state directory")
    assert state.stat().st_mode & 0o777 == 0o700
    assert str(state.stat().st_uid) == uid
    for path in state.rglob("*"):
        assert str(path.stat().st_uid) == uid and path.stat().st_mode & 0o077 == 0, path
        if path.is_file():
            assert KEY not in path.read_text(errors="replace")


def test_stop_is_clean(system: System) -> None:
    booted = system.booted
    booted.systemctl("stop", UNIT, timeout=30)
    shown = booted.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert shown == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0",
                     "ExecMainCode": "1"}, shown  # CLD_EXITED with status 0
    journal = booted.journal(UNIT)
    assert "edge-agent.service: Deactivated successfully." in journal, journal[-3000:]
    assert "Traceback" not in journal, journal[-3000:]
    # the Live session was closed by the daemon, not dropped
    assert any(c.close_received is not None for c in system.server.connections)


def test_the_kiosk_dropin_loads_and_starts(system: System) -> None:
    """`scripts/install --kiosk` adds systemd/kiosk.conf; the unit verifies and starts
    with it (the configuration stays a file peripheral: no sound card is needed)."""
    booted = system.booted
    again = booted.run(f"{SOURCE}/scripts/install", "--no-packages", "--kiosk", input="",
                       check=False, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    dropin = "/etc/systemd/system/edge-agent.service.d/kiosk.conf"
    assert booted.path(dropin).read_text() == (REPO / "systemd" / "kiosk.conf").read_text()
    verify = booted.run("systemd-analyze", "verify", "--man=no", UNIT, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    shown = booted.show(UNIT, "ActiveState", "PrivateDevices", "DevicePolicy", "DeviceAllow",
                        "DropInPaths")
    assert shown["ActiveState"] == "active", system.status()
    assert shown["PrivateDevices"] == "no" and shown["DevicePolicy"] == "closed", shown
    assert "char-alsa rw" in shown["DeviceAllow"], shown
    assert dropin in shown["DropInPaths"]
    assert system.main_pid_status()["Seccomp"] == "2"
    booted.run("rm", "-f", dropin)
    booted.systemctl("daemon-reload")
    booted.systemctl("stop", UNIT, timeout=30)


@pytest.mark.parametrize(
    ("lines", "starts"),
    [(("SystemCallFilter=~@network-io",), False),
     # reset the list, then allow AF_UNIX only
     (("RestrictAddressFamilies=", "RestrictAddressFamilies=AF_UNIX"), True)],
    ids=["no-network-calls", "no-inet"],
)
def test_a_breaking_hardening_line_is_caught(system: System, lines: tuple[str, ...],
                                             starts: bool) -> None:
    """Not a rubber stamp: a line that takes away what the daemon needs is seen. Without
    the network system calls the start fails; without AF_INET it starts (READY comes
    before the Live link, which then keeps retrying) and nothing reaches the server."""
    booted = system.booted
    dropin = booted.path("/etc/systemd/system/edge-agent.service.d/zz-break.conf")
    dropin.parent.mkdir(exist_ok=True)
    dropin.write_text("[Service]\nRestart=no\n" + "".join(f"{line}\n" for line in lines))
    booted.systemctl("daemon-reload")
    connections = len(system.server.connections)
    try:
        started = booted.systemctl("restart", UNIT, check=False, timeout=60)
        if not starts:
            assert started.returncode != 0, system.status()
            assert booted.show(UNIT, "ActiveState")["ActiveState"] == "failed"
        else:
            assert started.returncode == 0, started.stderr
            system.wait(lambda: "Live connect failed: OSError: [Errno 97]"
                        in booted.journal(UNIT), 30, "the refused connect in the journal")
        assert len(system.server.connections) == connections
    finally:
        dropin.unlink()
        booted.systemctl("daemon-reload")
        booted.systemctl("stop", UNIT, check=False)
        booted.systemctl("reset-failed", UNIT, check=False)

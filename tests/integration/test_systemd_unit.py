"""The systemd unit: its security score, `systemd-analyze verify`, and the daemon
running under the unit's own sandbox (tests/support/sandbox.py) against the
simulator's peers, so that a hardening line that breaks the daemon fails here."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daemon.media.wav import read_wav
from simulator.broker import PrivateBroker
from simulator.glasses import VirtualGlasses
from simulator.live_server import FakeLiveServer
from simulator.radio import VirtualRadio
from tests.support import sandbox
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(90)

KEY = "AIzaSy-unit-sandbox-key-0123456789"
VENV = Path(sys.prefix)
THRESHOLD = 25  # systemd-analyze's scale: 2.5 "OK"
MEMORY_MAX_KIB = 300 * 1024
PROBE = REPO / "tests" / "support" / "sandbox_probe.py"
# The lines that grant the daemon something: each must say why, in the comment above it.
RELAXATIONS = ("SupplementaryGroups", "StateDirectory", "RestrictAddressFamilies",
               "IPAddressDeny", "SystemCallFilter", "PrivateDevices", "DeviceAllow",
               "MemoryDenyWriteExecute", "LoadCredential", "PrivateUsers")

needs_sandbox = pytest.mark.skipif(sandbox.check_prerequisites() is not None,
                                   reason=str(sandbox.check_prerequisites()))


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "--no-pager", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _etc_tree(tmp_path: Path, *, kiosk: bool, venv: Path | None = None) -> Path:
    """A root holding the unit (and the kiosk drop-in) where systemd would find them."""
    unit_dir = tmp_path / "root" / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    text = sandbox.UNIT.read_text(encoding="utf-8")
    if venv is not None:  # verify wants ExecStart to exist: point it at this venv
        text = text.replace(f"ExecStart={sandbox.TARGET_VENV}/", f"ExecStart={venv}/")
    (unit_dir / "edge-agent.service").write_text(text, encoding="utf-8")
    if kiosk:
        (unit_dir / "edge-agent.service.d").mkdir()
        shutil.copy(sandbox.KIOSK_DROPIN, unit_dir / "edge-agent.service.d" / "kiosk.conf")
    return unit_dir / "edge-agent.service"


@pytest.mark.parametrize("kiosk", [False, True], ids=["base", "kiosk"])
def test_unit_scores_ok(tmp_path: Path, kiosk: bool) -> None:
    unit = _etc_tree(tmp_path, kiosk=kiosk)
    result = _analyze("security", "--offline=true", f"--threshold={THRESHOLD}",
                      f"--root={tmp_path / 'root'}", unit.name)
    score = re.search(r"Overall exposure level for edge-agent\.service: ([\d.]+) (\w+)",
                      result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-3000:]
    assert float(score.group(1)) <= 2.5
    assert score.group(2) == "OK"


def test_the_score_check_fails_loudly_above_its_threshold(tmp_path: Path) -> None:
    unit = _etc_tree(tmp_path, kiosk=False)
    result = _analyze("security", "--offline=true", "--threshold=5",
                      f"--root={tmp_path / 'root'}", unit.name)
    assert result.returncode != 0


@pytest.mark.parametrize("kiosk", [False, True], ids=["base", "kiosk"])
def test_unit_verifies(tmp_path: Path, kiosk: bool) -> None:
    unit = _etc_tree(tmp_path, kiosk=kiosk, venv=VENV)
    dropins = [unit.parent / "edge-agent.service.d" / "kiosk.conf"] if kiosk else []
    merged = sandbox.read_unit(unit, *dropins)
    assert sandbox.last(merged, "PrivateDevices") == ("no" if kiosk else "yes")
    result = _analyze("verify", "--man=no", str(unit))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_every_relaxation_says_why() -> None:
    for path in (sandbox.UNIT, sandbox.KIOSK_DROPIN):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            key = line.split("=", 1)[0]
            if key in RELAXATIONS and not lines[i - 1].startswith("#"):
                # a group of related lines shares one comment
                j = i
                while j > 0 and lines[j - 1].split("=", 1)[0] in RELAXATIONS:
                    j -= 1
                assert lines[j - 1].startswith("#"), f"{path.name}: {line} says not why"


def test_the_unit_keeps_what_the_daemon_relies_on() -> None:
    s = sandbox.read_unit(sandbox.UNIT)
    assert sandbox.last(s, "Type") == "notify"
    assert sandbox.last(s, "RestartPreventExitStatus") == "2"
    assert sandbox.last(s, "LimitCORE") == "0"
    assert sandbox.last(s, "UMask") == "0077"
    assert s["CapabilityBoundingSet"] == [] and s["AmbientCapabilities"] == []
    assert "gemini_api_key" in " ".join(s["LoadCredential"])
    assert sandbox.last(s, "StateDirectory") == "edge-agent"
    assert sandbox.last(s, "WatchdogSec")
    assert sandbox.last(s, "MemoryMax")


# --- the daemon under the sandbox


@pytest.fixture
def layout() -> Iterator[sandbox.Layout]:
    lay = sandbox.make_layout()
    yield lay
    sandbox.cleanup(lay)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[FakeLiveServer, PrivateBroker, str]]:
    """The fake Live API over TLS, a private mosquitto, virtual omi glasses (Opus) on a
    virtual radio; yields the radio transport the daemon opens."""
    speech = read_wav(REPO / "simulator" / "assets" / "demo_conversation.wav", 16_000)[0]
    async with (
        FakeLiveServer(api_key=KEY) as server,
        PrivateBroker() as broker,
        VirtualRadio(participants=2) as radio,
        VirtualGlasses("omi", radio.transport(0), pcm=speech, loop=True),
    ):
        yield server, broker, f"virtual:{radio.transport(1)}"


def _config(layout: sandbox.Layout, server: FakeLiveServer, broker: PrivateBroker,
            backend: str) -> None:
    ca = sandbox.install_config(layout, "live-ca.pem", server.ca_pem_path.read_text())
    sandbox.install_config(layout, "edge-agent.toml", f"""
[live]
base_url = "{server.base_url}"
ca_file = "{ca}"

[peripheral]
kind = "ble"

[peripheral.ble]
profile = "omi"
backend = "{backend}"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
""")


@needs_sandbox
async def test_daemon_runs_under_the_units_sandbox(
    layout: sandbox.Layout, peers: tuple[FakeLiveServer, PrivateBroker, str]
) -> None:
    server, broker, backend = peers
    _config(layout, server, broker, backend)
    service = sandbox.read_unit(sandbox.UNIT)
    async with sandbox.run_unit(service, layout, venv=VENV,
                                credentials={"gemini_api_key": KEY}) as unit:
        ready = await unit.wait_for("READY=1", within=40)
        assert ready.pid == unit.proc.pid  # NotifyAccess=main
        await unit.wait_for("WATCHDOG=1", within=20)
        # audio from the glasses (Opus over the virtual radio) reaches the Live API
        await server.wait_until(lambda: len(server.audio_chunks) >= 25, timeout=40)
        peak = unit.peak_rss_kib()
        code = await unit.stop(within=10)  # TimeoutStopSec=10
    log = "\n".join(unit.log)
    assert code == 0, log[-3000:]
    assert unit.received("STOPPING=1")
    assert server.connections[0].close_received is not None
    assert peak < MEMORY_MAX_KIB
    assert KEY not in log and KEY[:12] not in log
    assert "Traceback" not in log, log[-3000:]
    # UMask=0077: what it left in the state directory is its own alone; never the key
    for path in layout.state.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path
        assert path.stat().st_uid == sandbox.NOBODY
        if path.is_file():
            assert KEY not in path.read_text(errors="replace")


async def _probe(layout: sandbox.Layout, service: sandbox.Service) -> dict[str, object]:
    command = [str(VENV / "bin" / "python"), "-I", str(PROBE)]
    async with sandbox.run_unit(service, layout, venv=VENV, credentials={"gemini_api_key": KEY},
                                command=command) as unit:
        code = await asyncio.wait_for(unit.proc.wait(), 60)
    await asyncio.sleep(0)
    lines = [line for line in unit.log if line.startswith("{")]
    assert code == 0 and lines, "\n".join(unit.log[-40:])
    result: dict[str, object] = json.loads(lines[-1])
    return result


@needs_sandbox
@pytest.mark.parametrize("kiosk", [False, True], ids=["base", "kiosk"])
async def test_libraries_work_under_memory_deny_write_execute(
    layout: sandbox.Layout, kiosk: bool
) -> None:
    dropins = [sandbox.KIOSK_DROPIN] if kiosk else []
    result = await _probe(layout, sandbox.read_unit(sandbox.UNIT, *dropins))
    # the sandbox is really there: W+X refused both ways, seccomp on, no capabilities
    assert result["mdwe"] == 1
    assert result["wx_mmap"] == "refused"
    assert result["mprotect_exec"] == "refused"
    assert result["seccomp"] == "2"
    assert result["cap_bnd"] == "0000000000000000"
    assert result["netlink"] == "refused"
    # cffi's ffi.callback needs W+X memory and is refused (nothing the daemon loads calls
    # it: cryptography loads cffi's backend for its OpenSSL bindings, which it uses below)
    assert str(result["cffi_callback"]).startswith("MemoryError"), result["cffi_callback"]
    assert isinstance(result["cffi_modules_of_the_daemon"], list), result
    assert result["daemon_loaded"] == "ok"
    # and everything the daemon loads did its work under it
    for lib in ("opus", "soxr", "numpy", "ctypes_callback", "ssl", "cryptography", "bumble",
                "genai", "pyaudio"):
        assert result[lib] == "ok", (lib, result[lib])


@needs_sandbox
@pytest.mark.parametrize(
    "breaking",
    [("SystemCallFilter=~@network-io",),
     ("RestrictAddressFamilies=", "RestrictAddressFamilies=AF_UNIX")],
    ids=["no-network-calls", "no-inet"],
)
async def test_a_breaking_line_is_caught(
    layout: sandbox.Layout, peers: tuple[FakeLiveServer, PrivateBroker, str],
    breaking: tuple[str, ...],
) -> None:
    """The harness is no rubber stamp: a line that cuts what the daemon needs fails it."""
    server, broker, backend = peers
    _config(layout, server, broker, backend)
    service = sandbox.read_unit(sandbox.UNIT, extra=breaking)
    async with sandbox.run_unit(service, layout, venv=VENV,
                                credentials={"gemini_api_key": KEY}) as unit:
        with pytest.raises((TimeoutError, AssertionError)):
            await _ready_and_streaming(unit, server)
    assert not server.audio_chunks


async def _ready_and_streaming(unit: sandbox.SandboxedUnit, server: FakeLiveServer) -> None:
    await unit.wait_for("READY=1", within=15)
    await server.wait_until(lambda: bool(server.audio_chunks), timeout=8)

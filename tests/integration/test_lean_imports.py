"""The daemon imports what its configured mode uses, and nothing else.

The real `edge-agent run` (`daemon.cli.main(["run"])`) runs in a subprocess against the
fake Live server: a file configuration (a 16 kHz WAV), omi glasses (Opus 16 kHz) on the
virtual radio, and glasses on BlueZ (there is no BlueZ here: the daemon keeps trying).
Once it is streaming (or, on BlueZ, connected to the Live server), the test asks the
subprocess for its `sys.modules`. Costs measured by bench/startup.py: PyAudio and
Bumble each pull in a stack of their own, numpy ~11 MB and soxr with it, the home
service with aiomqtt and paho ~4 MB (only with a broker, `mqtt.host`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.media.wav import read_wav
from simulator import radio as sim_radio
from simulator.glasses import VirtualGlasses
from simulator.live_server import FakeLiveServer

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
KEY = "lean-imports-key-0123456789"
WAV = ROOT / "simulator" / "assets" / "demo_conversation.wav"

# The real CLI in the main thread; a watcher thread writes sys.modules when told to,
# then stops the daemon the way systemd does.
SCRIPT = """
import json, os, signal, sys, threading, time
from pathlib import Path
go, out = Path(sys.argv[1]), Path(sys.argv[2])
def watch():
    while not go.exists():
        time.sleep(0.02)
    out.write_text(json.dumps(sorted(sys.modules)))
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
from daemon.cli import main
sys.exit(main(["run"]))
"""


@pytest.fixture
async def server() -> AsyncIterator[FakeLiveServer]:
    async with FakeLiveServer(api_key=KEY) as srv:
        yield srv


async def modules_of_daemon(
    server: FakeLiveServer, tmp_path: Path, *, audio: bool, **settings: str
) -> set[str]:
    """`edge-agent run` with `EDGE_AGENT_<KEY>` settings; its sys.modules once its audio
    reached the server (or, `audio=False`, once it is connected and has run a while)."""
    modules, _ = await run_daemon(server, tmp_path, audio=audio, **settings)
    return modules


async def run_daemon(
    server: FakeLiveServer, tmp_path: Path, *, audio: bool, **settings: str
) -> tuple[set[str], str]:
    """`modules_of_daemon`, and what the daemon logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    (tmp_path / "none.toml").write_text("")
    env.update(
        GEMINI_API_KEY=KEY,
        PYTHONPATH=str(ROOT),
        EDGE_AGENT_CONFIG=str(tmp_path / "none.toml"),
        EDGE_AGENT_LIVE__BASE_URL=server.base_url,
        EDGE_AGENT_LIVE__CA_FILE=str(server.ca_pem_path),
        **{f"EDGE_AGENT_{k.upper()}": v for k, v in settings.items()},
    )
    go, out = tmp_path / "go", tmp_path / "modules.json"
    connections = len(server.connections)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, str(go), str(out), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        if audio:
            await server.wait_until(lambda: any(c.connection >= connections
                                                for c in server.audio_chunks), timeout=45)
        else:
            await server.wait_until(lambda: len(server.connections) > connections, timeout=45)
            await asyncio.sleep(1.0)  # the peripheral has tried its radio by now
        go.write_text("")
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    return set(json.loads(out.read_text())), err.decode()


def loaded(modules: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in modules)


NO_BROKER = ("aiomqtt", "paho", "daemon.home.service", "daemon.home.mqtt", "daemon.home.declared",
             "daemon.home.components")


async def test_file_mode_imports_no_radio_no_sound_card_no_numpy_no_mqtt(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    modules, log = await run_daemon(
        server, tmp_path, audio=True,
        peripheral__kind="file", peripheral__file__input=str(WAV),
    )
    assert loaded(modules, "google.genai")  # the mode's own stack is there
    for package in ("bumble", "bleak", "pyaudio", "numpy", "soxr", "opuslib", *NO_BROKER):
        assert not loaded(modules, package), package
    assert "no MQTT broker configured (mqtt.host): device tools are off" in log


async def test_a_broker_brings_the_home_service(server: FakeLiveServer, tmp_path: Path) -> None:
    """With `mqtt.host` (here a port nobody listens on: the service keeps retrying) the
    home service and its MQTT client are there, and the no-broker line is not."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the daemon starts
    modules, log = await run_daemon(
        server, tmp_path, audio=True,
        peripheral__kind="file", peripheral__file__input=str(WAV),
        mqtt__host="127.0.0.1", mqtt__port=str(port),
    )
    for package in NO_BROKER:
        assert loaded(modules, package), package
    assert "device tools are off" not in log


async def test_virtual_glasses_import_no_sound_card_and_no_numpy_at_16_khz(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    pcm, rate = read_wav(WAV)
    async with (
        sim_radio.VirtualRadio(2) as hub,
        VirtualGlasses("omi", hub.transport(0), pcm=pcm, pcm_rate=rate, loop=True),
    ):
        modules = await modules_of_daemon(
            server, tmp_path, audio=True,
            peripheral__kind="ble", peripheral__ble__profile="omi",
            peripheral__ble__backend=f"virtual:{hub.transport(1)}",
        )
    assert loaded(modules, "bumble") and loaded(modules, "opuslib")
    # Opus 16 kHz needs no resampling, and the Agent measures levels without numpy.
    for package in ("pyaudio", "numpy", "soxr", *NO_BROKER):
        assert not loaded(modules, package), package


async def test_bluez_glasses_import_no_bumble(server: FakeLiveServer, tmp_path: Path) -> None:
    modules = await modules_of_daemon(
        server, tmp_path, audio=False,
        peripheral__kind="ble", peripheral__ble__profile="omi", peripheral__ble__backend="bluez",
    )
    assert loaded(modules, "bleak")
    for package in ("bumble", "pyaudio", "numpy", "soxr"):
        assert not loaded(modules, package), package

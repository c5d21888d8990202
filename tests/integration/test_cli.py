"""The `edge-agent` command as a user and systemd run it: a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator.live_server import FakeLiveServer, Fault

pytestmark = pytest.mark.timeout(60)

SECRET = "AIzaSy-very-secret-key-0123456789"


def _env(server: FakeLiveServer, tmp_path: Path, key: str = SECRET, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    env.update(
        GEMINI_API_KEY=key,
        EDGE_AGENT_LIVE__BASE_URL=server.base_url,
        EDGE_AGENT_LIVE__CA_FILE=str(server.ca_pem_path),
        EDGE_AGENT_PERIPHERAL__FILE__OUTPUT=str(tmp_path / "reply.wav"),
        EDGE_AGENT_CONFIG=str(tmp_path / "none.toml"),
        **extra,
    )
    (tmp_path / "none.toml").write_text("")
    return env


@pytest.fixture
async def server() -> AsyncIterator[FakeLiveServer]:
    async with FakeLiveServer(api_key=SECRET) as srv:
        yield srv


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _streaming(server: FakeLiveServer) -> None:
    """The daemon is connected and its audio reaches the server."""
    await server.wait_until(lambda: len(server.connections) >= 1 and bool(server.audio_chunks),
                            timeout=20)


async def test_sigterm_stops_cleanly_within_two_seconds(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    proc = await _spawn("run", "--log-level", "debug", env=_env(server, tmp_path))
    try:
        await _streaming(server)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert elapsed < 2.0
    await server.wait_until(lambda: not server.connections[0].open, timeout=2)
    # the Live session was closed by the client, not dropped
    assert server.connections[0].close_received is not None
    assert server.connections[0].close_received[0] == 1000
    # debug logging includes the websocket handshake headers: the key must be scrubbed
    text = (out + err).decode()
    assert "x-goog-api-key: ***" in text
    assert SECRET not in text
    assert SECRET[:12] not in text


async def test_rejected_key_exits_2_with_one_line_and_no_secret(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    env = _env(server, tmp_path, key="AIzaSy-wrong-key-9876543210")
    proc = await _spawn("run", "--log-level", "debug", env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert last == "edge-agent: GEMINI_API_KEY: rejected by the Live API (HTTP 403)"
    assert "wrong-key" not in (out + err).decode()
    assert len(server.rejected_handshakes) == 1


async def test_crash_traceback_never_shows_the_key(tmp_path: Path) -> None:
    # An uncaught exception whose message carries the key, raised inside the daemon.
    code = (
        "import os, sys\n"
        "from daemon.ops.logsetup import install_excepthook\n"
        "install_excepthook([os.environ['GEMINI_API_KEY']])\n"
        "raise RuntimeError('boom with ' + os.environ['GEMINI_API_KEY'])\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env={**os.environ, "GEMINI_API_KEY": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"RuntimeError: boom with" in err
    assert SECRET.encode() not in out + err


@pytest.mark.slow  # about 11 s each: the whole demo, radio and glasses included
@pytest.mark.parametrize(
    ("peripheral", "profile"),
    [("ble", "omi"), ("ble", "frame"), ("file", "omi")],
    ids=["omi-speaker", "frame-no-speaker", "file"],
)
async def test_demo_runs_a_whole_conversation(
    tmp_path: Path, peripheral: str, profile: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    env["EDGE_AGENT_CONFIG"] = str(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text("")
    out_wav = tmp_path / "demo.wav"
    proc = await _spawn("demo", "--peripheral", peripheral, "--profile", profile,
                        "--output", str(out_wav), env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    # the spoken request turned a virtual light on, and the transcript shows how
    assert "you    Turn on the kitchen light." in text
    assert '"status": "done"' in text
    assert '"mqtt": {"payload": ' in text
    assert '"state": "on"' in text
    assert "model  Done, the kitchen light is on." in text
    assert "agent_status({}) -> ok" in text
    with wave.open(str(out_wav)) as wf:  # the model's voice reached the speaker
        assert wf.getnframes() > wf.getframerate() * 0.5
    # a demo of nothing going wrong logs nothing going wrong
    assert not [line for line in err.decode().splitlines() if " WARNING " in line
                or " ERROR " in line], err.decode()[-2000:]


async def test_sim_live_serves_until_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    proc = await _spawn("sim", "live", "--port", "0", env=env)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        info = json.loads(line)
        assert info["base_url"].startswith("https://127.0.0.1:")
        assert Path(info["ca_file"]).is_file()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0


async def test_run_under_systemd_with_health_endpoint(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    import socket
    import urllib.request

    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(server, tmp_path, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="400000")
    proc = await _spawn("run", "--health-port", str(port), env=env)
    loop = asyncio.get_running_loop()
    messages: list[str] = []

    async def until(text: str) -> None:
        while not any(text in m for m in messages):
            messages.append((await loop.sock_recv(sock, 4096)).decode())

    try:
        # Generous bounds: a loaded 2-core machine can take seconds to import and connect.
        await asyncio.wait_for(until("READY=1"), 30)
        await asyncio.wait_for(until("WATCHDOG=1"), 10)
        await server.wait_until(lambda: len(server.connections) >= 1, timeout=20)

        def get(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()

        for _ in range(50):  # connected shortly after READY
            status, body = await asyncio.to_thread(get, "/healthz")
            if '"live_link": "connected"' in body:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        assert '"live_link": "connected"' in body
        _, metrics = await asyncio.to_thread(get, "/metrics")
        assert 'edge_live_link_state{state="connected"} 1.0' in metrics
        assert SECRET not in metrics
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(until("STOPPING=1"), 10)
        await asyncio.wait_for(proc.wait(), 15)
    finally:
        sock.close()
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0


async def test_doctor_names_a_bad_key_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    (tmp_path / "bad.toml").write_text("[live]\nvideo_fps = 7\n")
    proc = await _spawn("doctor", "--config", str(tmp_path / "bad.toml"), env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2, (out + err).decode()
    assert "FAIL  configuration: live.video_fps:" in out.decode()


async def test_busy_health_port_is_a_usage_error(server: FakeLiveServer, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await _spawn("run", "--health-port", str(port), env=_env(server, tmp_path))
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2, err.decode()[-2000:]
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith(f"edge-agent: ops.health_port: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in err.decode()


async def test_devices_prints_what_sim_home_announced(tmp_path: Path) -> None:
    from simulator.broker import PrivateBroker

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    async with PrivateBroker() as broker:
        home = await _spawn("sim", "home", "--port", str(broker.port), env=env)
        try:
            assert home.stdout is not None
            line = await asyncio.wait_for(home.stdout.readline(), 20)
            assert b"virtual home:" in line
            env.update(EDGE_AGENT_MQTT__HOST=broker.host, EDGE_AGENT_MQTT__PORT=str(broker.port),
                       EDGE_AGENT_CONFIG=str(tmp_path / "none.toml"))
            (tmp_path / "none.toml").write_text("")
            proc = await _spawn("devices", env=env)
            out, err = await asyncio.wait_for(proc.communicate(), 20)
            glasses = await _spawn("devices", "--peripheral", "ble", env={
                **env, "EDGE_AGENT_PERIPHERAL__BLE__PROFILE": "omiglass"})
            with_camera, _ = await asyncio.wait_for(glasses.communicate(), 20)
            home.send_signal(signal.SIGTERM)
            await asyncio.wait_for(home.wait(), 10)
        finally:
            if home.returncode is None:
                home.kill()
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert home.returncode == 0
    assert "sim-kitchen_light" in text
    assert "sim-front_door" in text
    assert '"name": "control_device"' in text
    assert '"name": "agent_status"' in text
    assert '"name": "look"' not in text  # the file peripheral has no camera ...
    assert glasses.returncode == 0
    assert '"name": "look"' in with_camera.decode()  # ... omiGlass has


async def test_a_key_echoed_by_the_server_never_reaches_the_output(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    """The service may quote what it was sent (close reasons); the daemon logs reasons."""
    proc = await _spawn("run", "--log-level", "debug", env=_env(server, tmp_path))
    try:
        await _streaming(server)
        await server.inject(Fault.CLOSE, code=1011, reason=f"internal error, key={SECRET}")
        await server.wait_until(lambda: len(server.connections) >= 2, timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
    text = (out + err).decode()
    assert proc.returncode == 0, text[-2000:]
    assert "closed:1011" in text  # the close was logged ...
    assert "internal error, key=" in text  # with the reason the server gave ...
    assert SECRET not in text  # ... but not the key
    assert SECRET[:12] not in text


async def test_doctor_warns_where_privacy_and_safety_are_weakened(tmp_path: Path) -> None:
    """Remote unmute on a broker that takes anyone, no state directory, no way to
    confirm a lock: each is a WARN line; the verdict (exit code) stays."""
    from simulator.broker import PrivateBroker

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGE_AGENT_", "GEMINI", "STATE_DIRECTORY"))}
    async with PrivateBroker() as broker:
        (tmp_path / "c.toml").write_text(
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nremote_unmute = true\n')
        proc = await _spawn("doctor", "--config", str(tmp_path / "c.toml"), env=env)
        out, _err = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert "WARN  mqtt.remote_unmute: on: whoever may publish to edge-agent/" in text, text
    assert "this broker accepts clients without a login" in text
    assert "WARN  state directory: none" in text
    assert "WARN  tools.confirm_pin: not set and no tap here: lock, alarm, gate" in text

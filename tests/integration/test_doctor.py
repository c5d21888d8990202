"""`edge-agent doctor` as a user runs it (a subprocess), against real peers: the fake Live
server over TLS with the real SDK, real mosquitto, the virtual radio and glasses, ALSA
file devices through PyAudio. Each fault is one FAIL line with what to do, and exit 1.

The pure parts (classifying errors, the exit policy, the rendering):
tests/unit/test_doctor_*.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from simulator.broker import PrivateBroker
from simulator.glasses import VirtualGlasses
from simulator.live_server import FakeLiveServer
from simulator.radio import VirtualRadio
from tests.support.leaks import assert_no_piece
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(90)

SECRET = "AIzaSy-doctor-secret-key-0123456789"
WRONG = "AIzaSy-doctor-wrong-key-9876543210"
PASSWORD = "mqtt-Pass-s3cret-4711"
WRONG_PASSWORD = "mqtt-Pass-wrong-0815"
PIN = "97531864"
ASOUNDRC = """
pcm.edgecap {{ type file; slave.pcm "null"; file "/dev/null"; infile "{cap}"; format "raw" }}
pcm.edgeplay {{ type file; slave.pcm "null"; file "{play}"; format "raw" }}
"""


@pytest.fixture
async def server() -> AsyncIterator[FakeLiveServer]:
    async with FakeLiveServer(api_key=SECRET, models=["gemini-3.8-live"]) as srv:
        yield srv


def _env(tmp_path: Path, server: FakeLiveServer | None = None, key: str | None = SECRET,
         **extra: str) -> dict[str, str]:
    """A clean environment: an empty config file, a state directory, the key if given."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGE_AGENT_", "GEMINI", "STATE_DIRECTORY",
                                "CREDENTIALS_DIRECTORY"))}
    (tmp_path / "empty.toml").write_text("")
    env.update(EDGE_AGENT_CONFIG=str(tmp_path / "empty.toml"),
               STATE_DIRECTORY=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    if key is not None:
        env["GEMINI_API_KEY"] = key
    if server is not None:
        env.update(EDGE_AGENT_LIVE__BASE_URL=server.base_url,
                   EDGE_AGENT_LIVE__CA_FILE=str(server.ca_pem_path))
    env.update(extra)
    return env


async def _doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "doctor", *args, env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


def _line(text: str, name: str) -> str:
    """The check's line and, when there is one, its advice line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(" ") and line.split(None, 1)[-1].startswith(f"{name}: "):
            advice = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith(" ") else ""
            return f"{line}\n{advice}".rstrip()
    raise AssertionError(f"no {name!r} line in:\n{text}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert_no_piece(text, secret)
    assert "***" not in text, text  # the doctor never even tried to print one


# =============================================================== the Live endpoint
async def test_a_working_setup_passes(server: FakeLiveServer, broker: PrivateBroker,
                                      tmp_path: Path) -> None:
    """Key accepted by a real setup, broker with a device announced: exit 0, every line ok."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="announcer") as c:
        await c.publish("homeassistant/light/lamp/config",
                        '{"name": "Lamp", "command_topic": "home/lamp/set"}', qos=1, retain=True)
    env = _env(tmp_path, server, EDGE_AGENT_MQTT__HOST=broker.host,
               EDGE_AGENT_MQTT__PORT=str(broker.port))
    code, out = await _doctor(env)
    assert code == 0, out
    assert "FAIL" not in out
    assert _line(out, "GEMINI_API_KEY").startswith("ok   GEMINI_API_KEY: set (from GEMINI_API_KEY")
    live = _line(out, "Live API")
    assert live.startswith(f"ok   Live API: key accepted; a session with gemini-3.8-live set up "
                           f"at {server.base_url}"), live
    assert f"of {server.base_url}'s clock" in _line(out, "clock")  # compared with its Date
    assert _line(out, "mqtt").startswith(f"ok   mqtt: 127.0.0.1:{broker.port} reachable, "
                                         "logged in as anonymous")
    assert _line(out, "mqtt discovery").startswith(
        "ok   mqtt discovery: 1 device config(s) retained under homeassistant/")
    assert _line(out, "state directory").startswith(f"ok   state directory: {tmp_path / 'state'}")
    assert not (tmp_path / "state").exists()  # probed, and left as it was
    _no_secret(out, SECRET)
    # One real session: set up, then closed cleanly by the doctor.
    await server.wait_until(lambda: len(server.connections) == 1
                            and server.connections[0].close_received is not None, timeout=10)
    closed = server.connections[0].close_received
    assert closed is not None and closed[0] == 1000


async def test_a_refused_key_fails_with_its_line(server: FakeLiveServer, tmp_path: Path) -> None:
    code, out = await _doctor(_env(tmp_path, server, key=WRONG))
    assert code == 1, out
    assert _line(out, "GEMINI_API_KEY").startswith("ok ")  # present ...
    live = _line(out, "Live API")  # ... but refused
    assert live.startswith(f"FAIL  Live API: the key was refused by {server.base_url} "
                           "(HTTP 403: API key not valid"), live
    assert "-> put a valid Gemini API key in GEMINI_API_KEY" in live
    _no_secret(out, WRONG, SECRET)


async def test_a_missing_key_fails_with_its_line(server: FakeLiveServer, tmp_path: Path) -> None:
    code, out = await _doctor(_env(tmp_path, server, key=None))
    assert code == 1, out
    line = _line(out, "GEMINI_API_KEY")
    assert line.startswith("FAIL  GEMINI_API_KEY: not set"), line
    assert "-> export GEMINI_API_KEY=" in line
    assert "Live API" not in out  # nothing to try it with
    assert not server.connections and not server.rejected_handshakes


async def test_an_endpoint_that_does_not_listen_fails(tmp_path: Path) -> None:
    port = _closed_port()
    code, out = await _doctor(_env(tmp_path, EDGE_AGENT_LIVE__BASE_URL=f"https://127.0.0.1:{port}"))
    assert code == 1, out
    live = _line(out, "Live API")
    assert live.startswith(f"FAIL  Live API: cannot reach https://127.0.0.1:{port} "
                           "(ConnectionRefusedError"), live
    assert "-> check the network" in live and "live.base_url" in live


async def test_an_endpoint_that_never_answers_fails_in_bounded_time(tmp_path: Path) -> None:
    """A TCP peer that accepts and says nothing: the TLS handshake never ends. The doctor
    gives up after live.connect_timeout and says so."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = quiet.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        code, out = await _doctor(_env(tmp_path, EDGE_AGENT_LIVE__BASE_URL=f"https://127.0.0.1:{port}",
                                       EDGE_AGENT_LIVE__CONNECT_TIMEOUT="2"))
        took = time.monotonic() - started
    finally:
        for w in held:
            w.transport.abort()
        quiet.close()
    assert code == 1, out
    assert _line(out, "Live API").startswith(
        f"FAIL  Live API: no answer from https://127.0.0.1:{port} within 2 s"), out
    assert took < 30, took  # 2 s plus a Python start-up, with room for a loaded machine


async def test_an_unknown_ca_is_a_tls_failure_with_the_clock_hint(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    env = _env(tmp_path, server)
    env.pop("EDGE_AGENT_LIVE__CA_FILE")  # the system CAs do not know the test CA
    code, out = await _doctor(env)
    assert code == 1, out
    live = _line(out, "Live API")
    assert live.startswith(f"FAIL  Live API: TLS: the certificate of {server.base_url} was not "
                           "accepted (unable to get local issuer certificate)"), live
    assert "-> check the clock" in live and "live.ca_file" in live


async def test_an_unavailable_model_names_the_setting(server: FakeLiveServer,
                                                      tmp_path: Path) -> None:
    code, out = await _doctor(_env(tmp_path, server, EDGE_AGENT_LIVE__MODEL="gemini-0-nothing"))
    assert code == 1, out
    live = _line(out, "Live API")
    assert live.startswith("FAIL  Live API: live.model: 'gemini-0-nothing' is not available"), live
    assert "-> set live.model" in live


# ======================================================================= the broker
async def test_a_broker_that_does_not_listen_fails(server: FakeLiveServer, tmp_path: Path) -> None:
    port = _closed_port()
    code, out = await _doctor(_env(tmp_path, server, EDGE_AGENT_MQTT__HOST="127.0.0.1",
                                   EDGE_AGENT_MQTT__PORT=str(port)))
    assert code == 1, out
    line = _line(out, "mqtt")
    assert line.startswith(f"FAIL  mqtt: nothing listens at 127.0.0.1:{port} "
                           "(connection refused)"), line
    assert "-> start the broker" in line
    assert "mqtt discovery" not in out
    assert _line(out, "Live API").startswith("ok ")  # the one failure is the broker's


async def test_wrong_broker_credentials_fail_and_no_secret_is_printed(
    server: FakeLiveServer, tmp_path: Path
) -> None:
    """Wrong password on a broker with a password file: FAIL naming the user; neither
    the key, nor the password, nor the PIN appears, in text or JSON."""
    async with PrivateBroker(users={"edge": PASSWORD}) as broker:
        env = _env(tmp_path, server, EDGE_AGENT_MQTT__HOST=broker.host,
                   EDGE_AGENT_MQTT__PORT=str(broker.port), EDGE_AGENT_MQTT__USERNAME="edge",
                   EDGE_AGENT_MQTT__PASSWORD=WRONG_PASSWORD,
                   EDGE_AGENT_MQTT__REMOTE_UNMUTE="true",
                   EDGE_AGENT_TOOLS__CONFIRM_PIN=PIN)
        code, out = await _doctor(env)
        json_code, doc = await _doctor(env, "--json")
        env["EDGE_AGENT_MQTT__PASSWORD"] = PASSWORD
        good_code, good = await _doctor(env)
    assert code == 1 == json_code, out
    line = _line(out, "mqtt")
    assert line.startswith(f"FAIL  mqtt: the broker at 127.0.0.1:{broker.port} did not "
                           "authorise user 'edge' (CONNACK 135: Not authorized)"), line
    assert "-> check mqtt.username and mqtt.password" in line
    assert good_code == 0, good
    assert _line(good, "mqtt").startswith("ok   mqtt: ") and "as user 'edge'" in good
    assert "this broker accepts clients without a login" not in good  # probed: it does not
    for text in (out, doc, good):
        _no_secret(text, SECRET, PASSWORD, WRONG_PASSWORD, PIN)


async def test_a_broker_without_announcements_is_a_warning(
    server: FakeLiveServer, broker: PrivateBroker, tmp_path: Path
) -> None:
    code, out = await _doctor(_env(tmp_path, server, EDGE_AGENT_MQTT__HOST=broker.host,
                                   EDGE_AGENT_MQTT__PORT=str(broker.port),
                                   EDGE_AGENT_MQTT__DISCOVERY_PREFIX="nobody-home"))
    assert code == 0, out  # a warning: the verdict stays
    line = _line(out, "mqtt discovery")
    assert line.startswith("WARN  mqtt discovery: nothing under nobody-home/ in 2 s: no device "
                           "has announced itself there"), line
    assert "-> check mqtt.discovery_prefix" in line


# ================================================================ glasses and kiosk
async def test_bluez_without_an_adapter_fails(server: FakeLiveServer, tmp_path: Path) -> None:
    """No system D-Bus here (and forced so where there is one): no BlueZ, no adapter."""
    code, out = await _doctor(_env(tmp_path, server, EDGE_AGENT_PERIPHERAL__KIND="ble",
                                   DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus"))
    assert code == 1, out
    line = _line(out, "bluetooth")
    assert line.startswith(f"FAIL  bluetooth: no system D-Bus at unix:path={tmp_path}/no-bus, so "
                           "no BlueZ and no Bluetooth adapter"), line
    assert "-> install and start BlueZ" in line
    assert "glasses:" not in out.replace("pinned glasses:", "")


async def test_virtual_glasses_on_the_virtual_radio_pass(server: FakeLiveServer,
                                                         tmp_path: Path) -> None:
    async with VirtualRadio(2) as hub, VirtualGlasses("omi", hub.transport(0)) as glasses:
        await asyncio.wait_for(glasses.ready.wait(), 10)
        env = _env(tmp_path, server, EDGE_AGENT_PERIPHERAL__KIND="ble",
                   EDGE_AGENT_PERIPHERAL__BLE__BACKEND=f"virtual:{hub.transport(1)}")
        code, out = await _doctor(env)
    assert code == 0, out
    assert _line(out, "bluetooth") == (
        f"ok   bluetooth: the virtual radio at {hub.transport(1)} answers")
    assert _line(out, "glasses").startswith(f"ok   glasses: {glasses.name} "
                                            f"{glasses.address.upper()} seen"), out


async def test_the_virtual_radio_without_glasses_or_down_fails(tmp_path: Path) -> None:
    async with VirtualRadio(2) as hub:
        env = _env(tmp_path, key=None, EDGE_AGENT_PERIPHERAL__KIND="ble",
                   EDGE_AGENT_PERIPHERAL__BLE__BACKEND=f"virtual:{hub.transport(1)}",
                   EDGE_AGENT_PERIPHERAL__BLE__SCAN_TIMEOUT="2")
        code, out = await _doctor(env)
    assert code == 1, out
    line = _line(out, "glasses")
    assert line.startswith("FAIL  glasses: no Omi seen in a 2 s scan"), line
    assert "-> switch the glasses on" in line
    port = _closed_port()
    env["EDGE_AGENT_PERIPHERAL__BLE__BACKEND"] = f"virtual:tcp-client:127.0.0.1:{port}"
    code, out = await _doctor(env)
    assert code == 1, out
    line = _line(out, "bluetooth")
    assert line.startswith("FAIL  bluetooth: the virtual radio is not reachable"), line
    assert "-> start it (edge-agent sim radio)" in line


async def test_kiosk_devices_open_or_are_named(server: FakeLiveServer, tmp_path: Path) -> None:
    pytest.importorskip("pyaudio")
    cap, play = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    cap.write_bytes(bytes(640 * 2 * 50))
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(cap=cap, play=play))
    env = _env(tmp_path, server, HOME=str(tmp_path), EDGE_AGENT_PERIPHERAL__KIND="kiosk",
               EDGE_AGENT_PERIPHERAL__KIOSK__INPUT_DEVICE="edgecap",
               EDGE_AGENT_PERIPHERAL__KIOSK__OUTPUT_DEVICE="edgeplay")
    code, out = await _doctor(env)
    assert code == 0, out
    assert _line(out, "kiosk microphone").startswith("ok   kiosk microphone: 'edgecap' opens at ")
    assert "audio flows" in _line(out, "kiosk microphone")
    assert _line(out, "kiosk speaker").startswith("ok   kiosk speaker: 'edgeplay' opens at ")
    assert _line(out, "kiosk audio front end").startswith(  # which echo mode runs
        "ok   kiosk audio front end: echo: echo canceller (WebRTC AEC3); vad: silero")
    env["EDGE_AGENT_PERIPHERAL__KIOSK__INPUT_DEVICE"] = "no-such-microphone"
    code, out = await _doctor(env)
    assert code == 1, out
    line = _line(out, "kiosk microphone")
    assert line.startswith("FAIL  kiosk microphone: no input device matching "
                           "'no-such-microphone' (have: "), line
    assert "'edgecap'" in line and "-> set peripheral.kiosk.input_device" in line


# ============================================================ this machine, and --json
async def test_unreadable_credentials_and_state_fail(server: FakeLiveServer,
                                                     tmp_path: Path) -> None:
    """Under systemd: a credential that cannot be read (here a directory, so even root
    cannot) and a state directory that cannot be written are FAILs, exit 1."""
    creds = tmp_path / "creds"
    (creds / "gemini_api_key").mkdir(parents=True)
    (creds / "confirm_pin").write_text(PIN)
    (tmp_path / "a-file").write_text("")
    env = _env(tmp_path, server, key=None, CREDENTIALS_DIRECTORY=str(creds),
               STATE_DIRECTORY=str(tmp_path / "a-file" / "state"))
    code, out = await _doctor(env)
    assert code == 1, out
    assert _line(out, "GEMINI_API_KEY").startswith(
        "FAIL  GEMINI_API_KEY: gemini_api_key: cannot read credential"), out
    line = _line(out, "credentials")
    assert line.startswith(f"FAIL  credentials: cannot read gemini_api_key (Is a directory) "
                           f"in {creds}"), line
    state = _line(out, "state directory")
    assert state.startswith(f"FAIL  state directory: {tmp_path / 'a-file' / 'state'} "
                            "($STATE_DIRECTORY) is not writable"), state
    _no_secret(out, PIN)


async def test_json_matches_the_text(server: FakeLiveServer, tmp_path: Path) -> None:
    env = _env(tmp_path, server, key=WRONG)
    code, text = await _doctor(env)
    json_code, raw = await _doctor(env, "--json")
    doc = json.loads(raw)
    assert code == json_code == doc["exit_code"] == 1
    assert doc["status"] == "fail"
    labels = {"ok": "ok ", "warn": "WARN", "fail": "FAIL"}
    for check in doc["checks"]:
        line = _line(text, check["name"])
        first = line.splitlines()[0]
        if check["name"] not in ("clock",):  # its detail carries the time of the run
            assert first == f"{labels[check['status']]}  {check['name']}: {check['detail']}"
        if check["status"] != "ok" and check["advice"]:
            assert line.splitlines()[1] == f"      -> {check['advice']}"
        else:
            assert check["advice"] is None or check["status"] == "ok"
    names = [c["name"] for c in doc["checks"]]
    assert names[:3] == ["configuration", "python", "GEMINI_API_KEY"] and "Live API" in names
    _no_secret(raw, WRONG, SECRET)


async def test_a_configuration_that_does_not_load_exits_2_in_json_too(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[live]\nvideo_fps = 7\n")
    code, raw = await _doctor(_env(tmp_path, EDGE_AGENT_CONFIG=str(tmp_path / "bad.toml")),
                              "--json")
    assert code == 2, raw
    doc = json.loads(raw)
    assert doc["exit_code"] == 2 and doc["status"] == "fail"
    assert doc["checks"][0]["name"] == "configuration"
    assert doc["checks"][0]["detail"].startswith("live.video_fps:")

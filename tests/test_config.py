import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_settings, read_secret

pytestmark = pytest.mark.timeout(30)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge-agent.toml"
    p.write_text(text)
    return p


def test_defaults_without_file() -> None:
    s = load_settings(None, environ={})
    assert s.live.model == "gemini-3.8-live"
    assert s.live.api_version == "v1beta"
    assert s.peripheral.kind == "file"
    assert s.mqtt.discovery_prefix == "homeassistant"
    assert s.ops.health_port == 0


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    p = write(tmp_path, '[live]\nmodel = "from-file"\nbase_url = "https://a:1"\n[ops]\nhealth_port = 9\n')
    env = {"EDGE_AGENT_LIVE__BASE_URL": "https://b:2", "EDGE_AGENT_OPS__HEALTH_PORT": "10"}
    s = load_settings(p, environ=env, overrides={"ops.health_port": 11})
    assert s.live.model == "from-file"
    assert s.live.base_url == "https://b:2"
    assert s.ops.health_port == 11


def test_nested_env_key_and_list() -> None:
    env = {
        "EDGE_AGENT_PERIPHERAL__BLE__PROFILE": "frame",
        "EDGE_AGENT_TOOLS__SENSITIVE": '["lock", "gate"]',
    }
    s = load_settings(None, environ=env)
    assert s.peripheral.ble.profile == "frame"
    assert s.tools.sensitive == ("lock", "gate")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("[live]\nmodle = 'x'\n", {}, "live.modle: unknown key"),
        ("[live]\nvideo_fps = 5\n", {}, "live.video_fps: "),
        ("[ops]\nhealth_port = 'abc'\n", {}, "ops.health_port: "),
        ("[peripheral]\nkind = 'usb'\n", {}, "peripheral.kind: "),
        ("[live]\nbase_url = 'nohost'\n", {}, "live.base_url: must be a URL"),
        ("[peripheral.ble]\nbackend = 'x'\n", {}, "peripheral.ble.backend: must be"),
        ("not toml = = =\n", {}, "is not valid TOML"),
        ("", {"EDGE_AGENT_MQTT__PORT": "70000"}, "mqtt.port: "),
        ("", {"EDGE_AGENT_LIVE__NOPE": "1"}, "live.nope: unknown key"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), environ=env)
    msg = str(err.value)
    assert expected in msg
    assert "\n" not in msg


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", required=True, environ={})
    # the default path may be absent
    assert load_settings(tmp_path / "nope.toml", required=False, environ={}).live.model


def test_secret_from_env_or_credentials(tmp_path: Path) -> None:
    assert read_secret("K", "k", {"K": " s3cret "}).get_secret_value() == "s3cret"  # type: ignore[union-attr]
    (tmp_path / "k").write_text("fromfile\n")
    got = read_secret("K", "k", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert got is not None and got.get_secret_value() == "fromfile"
    assert "fromfile" not in repr(got)
    assert read_secret("K", "k", {}) is None


def test_mqtt_password_from_env_is_secret() -> None:
    s = load_settings(None, environ={"EDGE_AGENT_MQTT__PASSWORD": "hunter2hunter2"})
    assert s.mqtt.password is not None
    assert "hunter2" not in repr(s)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[live]\nvideo_fps = 0\n")
    r = cli("run", "--config", str(p), env={"PATH": "/usr/bin:/bin", "GEMINI_API_KEY": "x" * 20})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "live.video_fps" in lines[0]


def test_cli_missing_key_exits_2(tmp_path: Path) -> None:
    r = cli("run", "--config", str(write(tmp_path, "")), env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "GEMINI_API_KEY" in r.stderr


def test_cli_bad_usage_exits_2() -> None:
    assert cli("frobnicate").returncode == 2

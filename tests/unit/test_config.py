"""Settings: the TOML file, the environment, the flags, and the key: reason errors.

The `edge-agent` command's exit codes on bad configuration (subprocesses):
tests/integration/test_config.py.
"""

from pathlib import Path
from typing import Any

import pytest

from daemon.config import (
    ConfigError,
    FilePeripheralSettings,
    PeripheralSettings,
    load_settings,
    read_secret,
)
from daemon.peripherals import make_peripheral
from tests.support.config import wav, write
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(30)


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
        ("", {"EDGE_AGENT_LIV__BASE_URL": "x"}, "EDGE_AGENT_LIV__BASE_URL: unknown section 'liv'"),
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


def test_text_that_is_not_utf8_is_a_config_error_that_shows_none_of_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[live]\nmodel = 'caf\xe9'\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(at byte 19\)"):
        load_settings(bad, environ={})
    (tmp_path / "k").write_bytes(b"s3cr\xe9t")
    with pytest.raises(ConfigError) as err:
        read_secret("K", "k", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert str(err.value) == "k: the credential is not UTF-8 text"


def test_only_a_list_key_takes_a_list_from_the_environment() -> None:
    s = load_settings(None, environ={"EDGE_AGENT_MQTT__PASSWORD": "[2024]",
                                     "EDGE_AGENT_TOOLS__SENSITIVE": '["lock", "gate"]'})
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == "[2024]"
    assert s.tools.sensitive == ("lock", "gate")


def test_an_empty_interactions_endpoint_is_the_live_links() -> None:
    from daemon.tasks.client import Endpoint

    s = load_settings(None, environ={"EDGE_AGENT_LIVE__BASE_URL": "https://127.0.0.1:9",
                                     "EDGE_AGENT_LIVE__API_VERSION": "v1alpha",
                                     "EDGE_AGENT_INTERACTIONS__BASE_URL": "",
                                     "EDGE_AGENT_INTERACTIONS__API_VERSION": ""})
    end = Endpoint.of(s.interactions, s.live)
    assert (end.base_url, end.api_version) == ("https://127.0.0.1:9", "v1alpha")


def test_a_state_directory_that_is_set_must_work(tmp_path: Path) -> None:
    from daemon.app import _state_store

    (tmp_path / "file").write_text("")
    s = load_settings(None, environ={"EDGE_AGENT_OPS__STATE_DIR": str(tmp_path / "file")})
    with pytest.raises(ConfigError, match=r"^ops\.state_dir: .* is not writable"):
        _state_store(s)
    ok = load_settings(None, environ={"EDGE_AGENT_OPS__STATE_DIR": str(tmp_path / "new")})
    assert _state_store(ok).directory == tmp_path / "new"


def test_mqtt_password_from_env_is_secret() -> None:
    s = load_settings(None, environ={"EDGE_AGENT_MQTT__PASSWORD": "hunter2hunter2"})
    assert s.mqtt.password is not None
    assert "hunter2" not in repr(s)


README = REPO / "README.md"


def readme_config_block() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("```toml\n[live]\n") + len("```toml\n")
    return text[start : text.index("```", start)]


def test_readme_config_block_loads_with_its_empty_paths(tmp_path: Path) -> None:
    block = readme_config_block()
    assert 'ca_file = ""' in block and 'input = ""' in block and 'output = ""' in block
    s = load_settings(write(tmp_path, block), required=True, environ={})
    assert s.live.ca_file is None
    assert s.mqtt.ca_file is None
    assert s.peripheral.file.input is None
    assert s.peripheral.file.output is None


@pytest.mark.parametrize(
    "variable",
    ["EDGE_AGENT_LIVE__CA_FILE", "EDGE_AGENT_MQTT__CA_FILE",
     "EDGE_AGENT_PERIPHERAL__FILE__INPUT", "EDGE_AGENT_PERIPHERAL__FILE__OUTPUT"],
)
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_from_the_environment_means_unset(variable: str, value: str) -> None:
    s = load_settings(None, environ={variable: value})
    assert (s.live.ca_file, s.mqtt.ca_file, s.peripheral.file.input,
            s.peripheral.file.output) == (None, None, None, None)


def test_empty_path_flag_means_unset() -> None:
    s = load_settings(None, environ={}, overrides={"live.ca_file": ""})
    assert s.live.ca_file is None


@pytest.mark.parametrize("section", ["live", "mqtt"])
def test_a_readable_ca_file_is_kept(tmp_path: Path, ca_pem: Path, section: str) -> None:
    s = load_settings(write(tmp_path, f'[{section}]\nca_file = "{ca_pem}"\n'), environ={})
    assert getattr(s, section).ca_file == ca_pem


@pytest.mark.parametrize("section", ["live", "mqtt"])
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.pem", "no such file"),
        (lambda d: d, "a directory, not a file"),
        (lambda d: (d / "notes.txt", (d / "notes.txt").write_text("hello"))[0],
         "holds no PEM certificate"),
    ],
)
def test_a_bad_ca_file_names_the_key(
    tmp_path: Path, section: str, make: Any, reason: str
) -> None:
    bad = make(tmp_path)
    for env in ({f"EDGE_AGENT_{section.upper()}__CA_FILE": str(bad)}, {}):
        text = "" if env else f'[{section}]\nca_file = "{bad}"\n'
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text), environ=env)
        msg = str(err.value)
        assert msg.startswith(f"{section}.ca_file: "), msg
        assert reason in msg and "\n" not in msg


def file_settings(**file: Any) -> PeripheralSettings:
    return PeripheralSettings(kind="file", file=FilePeripheralSettings(**file))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "cannot read"),
        (lambda d: (d / "x.wav", (d / "x.wav").write_text("not a wav"))[0], "not a readable WAV"),
    ],
)
def test_a_bad_input_wav_is_a_config_error_and_creates_nothing(
    tmp_path: Path, make: Any, reason: str
) -> None:
    out = tmp_path / "out" / "reply.wav"
    with pytest.raises(ConfigError) as err:
        make_peripheral(file_settings(input=make(tmp_path), output=out))
    assert str(err.value).startswith("peripheral.file.input: ")
    assert reason in str(err.value)
    assert not out.parent.exists()  # the output was not created for a run that cannot start


@pytest.mark.parametrize(
    "make",
    [lambda d: d,  # a directory
     lambda d: (d / "file", (d / "file").write_text(""))[0] / "reply.wav"],  # under a file
)
def test_an_output_that_cannot_be_created_is_a_config_error(tmp_path: Path, make: Any) -> None:
    with pytest.raises(ConfigError) as err:
        make_peripheral(file_settings(input=wav(tmp_path / "in.wav"), output=make(tmp_path)))
    assert str(err.value).startswith("peripheral.file.output: cannot create ")


def test_file_peripheral_creates_missing_output_directories(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "reply.wav"
    p = make_peripheral(file_settings(input=wav(tmp_path / "in.wav"), output=out))
    assert out.exists()
    p.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("toml", "env", "port"),
    [
        ("", {}, 1883),
        ("[mqtt]\ntls = true\n", {}, 8883),
        ("", {"EDGE_AGENT_MQTT__TLS": "true"}, 8883),
        ("[mqtt]\ntls = true\nport = 1884\n", {}, 1884),
        ("[mqtt]\ntls = false\n", {}, 1883),
    ],
)
def test_mqtt_port_defaults_to_8883_with_tls(
    tmp_path: Path, toml: str, env: dict[str, str], port: int
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    assert load_settings(path, environ=env).mqtt.port == port

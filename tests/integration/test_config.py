"""Bad configuration or usage: `python -m daemon` exits 2 with one line naming the key.

The settings themselves: tests/unit/test_config.py.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.config import wav, write

pytestmark = pytest.mark.timeout(30)


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


def test_cli_nonexistent_ca_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GEMINI_API_KEY": "x" * 20,
           "EDGE_AGENT_LIVE__CA_FILE": str(tmp_path / "nope.pem")}
    r = cli("run", "--config", str(write(tmp_path, "")), env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-agent: live.ca_file: "), lines


@pytest.mark.parametrize("key", ["input", "output"])
def test_cli_bad_peripheral_file_exits_2_naming_the_key(tmp_path: Path, key: str) -> None:
    values = {"input": str(wav(tmp_path / "in.wav")), "output": str(tmp_path / "out.wav")}
    values[key] = str(tmp_path)  # a directory: neither readable as a WAV nor creatable
    text = "[peripheral]\nkind = 'file'\n[peripheral.file]\n" + "".join(
        f'{k} = "{v}"\n' for k, v in values.items()
    )
    env = {"PATH": "/usr/bin:/bin", "GEMINI_API_KEY": "x" * 20}
    r = cli("run", "--config", str(write(tmp_path, text)), env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edge-agent: peripheral.file.{key}: "), lines


@pytest.mark.timeout(90)
def test_a_start_that_fails_early_exits_2_every_time(tmp_path: Path) -> None:
    """The daemon builds its TLS context on a start-up thread; a start that fails at
    once (here: the output is a directory) must wait for it, or the interpreter's exit
    can tear the thread down inside OpenSSL: SIGSEGV in about 1 start of 8 before."""
    text = ("[peripheral]\nkind = 'file'\n[peripheral.file]\n"
            f'input = "{wav(tmp_path / "in.wav")}"\noutput = "{tmp_path}"\n')
    config = str(write(tmp_path, text))
    env = {"PATH": "/usr/bin:/bin", "GEMINI_API_KEY": "x" * 20}
    codes = [cli("run", "--config", config, env=env).returncode for _ in range(16)]
    assert codes == [2] * 16

"""Secrets never reach crash output or a command's output (subprocesses).

Log lines in process: tests/unit/test_ops_logsetup.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.leaks import assert_clean, assert_no_piece, new_key, new_secret
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(20)


def test_uncaught_exception_at_crash_is_scrubbed() -> None:
    """A real interpreter dying of an uncaught exception prints a scrubbed traceback."""
    secret = new_secret()
    program = (
        "import sys\n"
        "from daemon.ops.logsetup import install_excepthook\n"
        "install_excepthook([sys.argv[1]])\n"
        "def load(key):\n"
        "    raise PermissionError('rejected key ' + key)\n"
        "load(sys.argv[1])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program, secret],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "PermissionError: rejected key ***" in proc.stderr
    assert_clean(proc.stderr, secret)


# -- pieces of a secret: cut messages, prefixes, suffixes, printed output ---------------


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_doctor_output_is_scrubbed(tmp_path: Path) -> None:
    """`doctor` prints, it does not log: a path holding a cut key is printed scrubbed."""
    key = new_key()
    (tmp_path / "empty.toml").write_text("")
    proc = _run_cli(
        "doctor", "--ca-file", f"/nonexistent/{key[:26]}/ca.pem",
        env={"GEMINI_API_KEY": key, "EDGE_AGENT_CONFIG": str(tmp_path / "empty.toml")},
    )
    text = proc.stdout + proc.stderr
    assert "/nonexistent/***/ca.pem" in text, text
    assert_no_piece(text, key)


def test_devices_output_is_scrubbed(tmp_path: Path) -> None:
    key = new_key()
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        "[[mqtt.devices]]\n"
        'component = "light"\nid = "lamp"\n'
        f'name = "Lamp {key}"\n'
        'command_topic = "home/lamp/set"\n'
    )
    proc = _run_cli("devices", env={"GEMINI_API_KEY": key, "EDGE_AGENT_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lamp: Lamp ***" in proc.stdout
    assert_no_piece(proc.stdout + proc.stderr, key)


def test_crash_after_any_command_is_scrubbed() -> None:
    """main() installs the crash hook for every command, not only run and demo."""
    key = new_key()
    program = (
        "import os, sys\n"
        "from daemon.cli import main\n"
        "main(['doctor'])\n"
        "raise RuntimeError('handshake with ' + os.environ['GEMINI_API_KEY'][:26])\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    proc = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env={**clean, "GEMINI_API_KEY": key, "EDGE_AGENT_CONFIG": "/nonexistent/none.toml"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert "RuntimeError: handshake with ***" in proc.stderr
    assert_no_piece(proc.stdout + proc.stderr, key)

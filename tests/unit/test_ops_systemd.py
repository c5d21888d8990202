"""sd_notify and the watchdog without a socket: nothing to notify, a missing socket,
the interval from the environment.

Against a real AF_UNIX datagram socket: tests/integration/test_ops_systemd.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.ops import systemd

pytestmark = pytest.mark.timeout(20)


def test_notify_is_a_noop_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready() is False
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "vsock:2:1234"}) is False


def test_missing_socket_is_reported_not_raised(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}
    assert systemd.ready(environ=env) is False


def test_watchdog_interval_from_environment() -> None:
    me = str(os.getpid())
    assert systemd.watchdog_interval(environ={}) is None
    assert systemd.watchdog_interval(environ={"WATCHDOG_USEC": "20000000"}) == 10.0
    assert (
        systemd.watchdog_interval(environ={"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": me}) == 1.5
    )
    other = str(os.getpid() + 1)
    assert (
        systemd.watchdog_interval(environ={"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": other})
        is None
    )
    assert systemd.watchdog_interval(environ={"WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval(environ={"WATCHDOG_USEC": "0"}) is None

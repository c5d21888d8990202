"""The door to google-genai's private socket, without one: an SDK without what the
link needs is reported (warning, metric, doctor line), never passed over in silence.

The door on the pinned SDK, and the link without it, against the fake Live server:
tests/integration/test_socket_door.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import pytest
from google.genai import live as genai_live

from daemon.cli import main as cli_main
from daemon.live import socket_door
from daemon.live.socket_door import SocketDoor
from daemon.ops.metrics import Metrics
from tests.support.live import UNAVAILABLE, door_warnings, keep_socket_elsewhere

pytestmark = pytest.mark.timeout(30)


def test_a_missing_attribute_is_detected_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keep_socket_elsewhere(monkeypatch, "renamed")
    ok, detail = socket_door.check()
    assert not ok
    assert "AsyncSession._ws" in detail and "taken as delivered" in detail
    metrics = Metrics()
    door = SocketDoor(metrics)
    session = genai_live.AsyncSession(api_client=cast(Any, None), websocket=cast(Any, object()))
    caplog.set_level(logging.WARNING)
    assert door.open(session) is None
    assert door.open(session) is None
    assert metrics.value(UNAVAILABLE) == 2  # every connection without it is counted
    (warning,) = door_warnings(caplog)  # and said once, with the version
    assert "AsyncSession._ws" in warning and "google-genai " in warning


def test_doctor_prints_the_door(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "edge-agent.toml"
    config.write_text("")
    for name in ("EDGE_AGENT_CONFIG", "GEMINI_API_KEY", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    cli_main(["doctor", "--config", str(config)])
    assert "ok   Live SDK socket: google-genai " in capsys.readouterr().out
    keep_socket_elsewhere(monkeypatch, "renamed")
    cli_main(["doctor", "--config", str(config)])
    assert "WARN  Live SDK socket: google-genai " in capsys.readouterr().out

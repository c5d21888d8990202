"""The file peripheral's playback bound: model audio past MAX_PLAYBACK_SECONDS is
dropped, counted in `status` (hence /metrics, under the glasses' key) and logged
seldom; a rate conversion is logged once, not per chunk (review of the bounds:
400 s at once dropped 280 s with 6,998 warnings and no figure anywhere)."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import pytest

from daemon.ops.metrics import Metrics
from daemon.peripherals.file import MAX_PLAYBACK_SECONDS, FilePeripheral

pytestmark = pytest.mark.timeout(30)

CHUNK = bytes(2 * 24_000 * 40 // 1000)  # 40 ms at 24 kHz, as the Live API sends
KEY = "playback.dropped_seconds.overflow"


def test_an_overflow_is_counted_shown_in_metrics_and_logged_seldom(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = FilePeripheral(None, tmp_path / "out.wav", realtime=True)
    metrics = Metrics()
    metrics.add_status_source("peripheral", p.status)  # as the Agent does
    caplog.set_level(logging.INFO, logger="daemon.peripherals.file")
    for _ in range(10_000):  # 400 s of model audio, delivered at once
        p.play(CHUNK, 24_000)
    dropped = p.status()["playback"]["dropped_seconds"]["overflow"]
    # what did not fit was dropped (the virtual speaker played a little meanwhile)
    assert 400 - MAX_PLAYBACK_SECONDS - 1 < dropped <= 400 - MAX_PLAYBACK_SECONDS + 0.01
    assert p.playback_pending() + dropped + p.status()["played_s"] == pytest.approx(400, abs=0.1)
    assert metrics.value("edge_peripheral_stat", key=KEY) == dropped
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 14  # the 1st, 2nd, 4th ... of ~7,000 drops
    assert "dropped so far" in warnings[-1].getMessage()
    p.close()


def test_nothing_dropped_shows_zero(tmp_path: Path) -> None:
    p = FilePeripheral(None, tmp_path / "out.wav", realtime=True)
    p.play(CHUNK, 24_000)
    assert p.status()["playback"] == {"dropped_seconds": {"overflow": 0.0}}
    p.close()


def test_a_rate_conversion_is_logged_once_and_every_chunk_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.wav"
    p = FilePeripheral(None, out, realtime=False, output_rate=16_000)
    caplog.set_level(logging.INFO, logger="daemon.peripherals.file")
    for _ in range(1000):
        p.play(CHUNK, 24_000)
    p.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "24000 Hz" in line and "16000 Hz" in line
    with wave.open(str(out), "rb") as wf:
        assert wf.getnframes() == 1000 * 640  # 40 ms at 16 kHz each


def test_the_agent_counts_an_overflow_with_the_rest_of_the_discarded_audio(
    tmp_path: Path,
) -> None:
    # edge_playback_dropped_seconds said "by reason (interrupted, overflow)", and only
    # interruptions ever reached it.
    from pydantic import SecretStr

    from daemon.agent import Agent
    from daemon.config import LiveSettings
    from daemon.live.link import LiveLink
    from daemon.tools.registry import ToolRegistry

    p = FilePeripheral(None, tmp_path / "out.wav", realtime=True)
    metrics = Metrics()
    Agent(LiveLink(LiveSettings(), SecretStr("k" * 20), metrics), p, ToolRegistry(), metrics)
    for _ in range(4_000):  # 160 s at once
        p.play(CHUNK, 24_000)
    metrics.render()
    dropped = p.status()["playback"]["dropped_seconds"]["overflow"]
    assert dropped > 30  # past MAX_PLAYBACK_SECONDS
    assert metrics.value("edge_playback_dropped_seconds_total", reason="overflow") == dropped
    metrics.render()  # counted once, not again at every scrape
    assert metrics.value("edge_playback_dropped_seconds_total", reason="overflow") == dropped
    p.close()

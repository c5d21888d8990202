"""The kiosk peripheral through real PyAudio/PortAudio over ALSA file devices:
the microphone reads a raw file, the speaker writes one (bit-exact, unpaced)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(60)

ASOUNDRC = """
pcm.edgecap {{ type file; slave.pcm "null"; file "/dev/null"; infile "{cap}"; format "raw" }}
pcm.edgeplay {{ type file; slave.pcm "null"; file "{play}"; format "raw" }}
"""


def test_kiosk_captures_and_plays_bit_exact(tmp_path: Path) -> None:
    pytest.importorskip("pyaudio")
    cap, play = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    # block k (40 ms = 640 samples) holds k*100 + a ramp: every block is unique
    idx = np.arange(640 * 75)
    mic = ((idx // 640) * 100 + idx % 100).astype("<i2")
    cap.write_bytes(mic.tobytes())
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(cap=cap, play=play))
    out = tmp_path / "captured.raw"
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "tests.support.kiosk_probe", str(out)], env=env,
                       capture_output=True, text=True, timeout=45,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    captured = np.frombuffer(out.read_bytes(), "<i2")
    assert report["chunks"] >= 10
    # The file device is not paced: it floods, and the microphone drops whole
    # blocks when the event loop falls behind - each one counted. What arrives
    # is the file's audio block for block, in order, from the start.
    blocks = [captured[i : i + 640] for i in range(0, len(mic), 640)]
    positions = []
    for block in blocks:
        k = int(block[0]) // 100
        if positions and k <= positions[-1]:
            break  # the file device starts over at its end
        assert np.array_equal(block, mic[k * 640 : (k + 1) * 640])
        positions.append(k)
    assert positions[0] == 0
    assert positions == sorted(set(positions))
    skipped = positions[-1] + 1 - len(positions)
    assert skipped <= report["status"]["microphone"]["dropped_blocks"]
    assert len(positions) >= 20
    # the speaker wrote our tone (first playback) into the file, untouched
    played = np.frombuffer(play.read_bytes(), "<i2")
    tone = (np.sin(2 * np.pi * 440 * np.arange(12_000) / 24_000) * 5000).astype("<i2")
    start = int(np.argmax(played != 0)) - 1  # the tone starts at a zero sample
    assert np.array_equal(played[start : start + len(tone)], tone)
    # the second playback was flushed before it played
    assert report["dropped"] > 0.3
    assert report["status"]["kind"] == "kiosk"


PLAY_AT_OTHER_RATES = """
import asyncio, contextlib, sys
import numpy as np
from daemon.peripherals.kiosk import KioskPeripheral

class Sink:
    def audio(self, chunk): pass
    def video(self, frame): pass
    def input_paused(self): pass
    def backlog_seconds(self): return 0.0

def tone(rate):
    return (np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate) * 5000).astype("<i2").tobytes()

async def main():
    kiosk = KioskPeripheral("edgecap", "edgeplay", block_ms=40)
    task = asyncio.create_task(kiosk.run(Sink()))
    await asyncio.sleep(0.3)
    for rate in (16_000, 48_000, 24_000):  # half a second each
        kiosk.play(tone(rate), rate)
    while kiosk.playback_pending() > 0:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

asyncio.run(main())
"""


def test_kiosk_plays_model_audio_at_any_sane_rate(tmp_path: Path) -> None:
    """The Live API speaks 24 kHz, but a 16 or 48 kHz reply must play, not raise."""
    pytest.importorskip("pyaudio")
    cap, play = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    cap.write_bytes(bytes(640 * 2 * 25))
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(cap=cap, play=play))
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", PLAY_AT_OTHER_RATES], env=env,
                       capture_output=True, text=True, timeout=45,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    played = np.frombuffer(play.read_bytes(), "<i2").astype(np.float64)
    loud = np.flatnonzero(np.abs(played) > 50)
    sound = played[loud[0] : loud[-1] + 1]
    # The file device is unpaced: between two play() calls it may have played
    # silence (whole callbacks of zeros). Cut those out; a tone is never 0 for long.
    quiet = np.flatnonzero(np.abs(sound) > 0)
    gaps = np.flatnonzero(np.diff(quiet) > 100)
    keep = np.ones(len(sound), dtype=bool)
    for g in gaps:
        keep[quiet[g] + 1 : quiet[g + 1]] = False
    sound = sound[keep]
    # three half-second tones, all converted to the 24 kHz the device runs at
    assert abs(len(sound) - 36_000) < 120, len(sound)
    for third in np.array_split(sound, 3):
        spectrum = np.abs(np.fft.rfft(third * np.hanning(len(third))))
        assert abs(np.argmax(spectrum) * 24_000 / len(third) - 440) < 5
        assert np.max(np.abs(third)) == pytest.approx(5000, rel=0.05)


FLOOD_THE_SPEAKER = """
import json, logging
from daemon.ops.metrics import Metrics
from daemon.peripherals.kiosk import KioskPeripheral

lines = []
class Keep(logging.Handler):
    def emit(self, record): lines.append(record.getMessage())
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.INFO)
kiosk = KioskPeripheral("edgecap", "edgeplay", block_ms=40)
metrics = Metrics()
metrics.add_status_source("peripheral", kiosk.status)  # as the Agent does
chunk = bytes(2 * 24_000 * 40 // 1000)  # 40 ms at 24 kHz
for _ in range(5000):  # 200 s at once, the loudspeaker not started: none is played
    kiosk.play(chunk, 24_000)
print(json.dumps({"status": kiosk.status(), "pending": kiosk.playback_pending(),
                  "metric": metrics.value("edge_peripheral_stat",
                                          key="playback.dropped_seconds.overflow"),
                  "warnings": [m for m in lines if "speaker buffer full" in m]}))
"""


def test_kiosk_speaker_overflow_is_counted_in_status_and_metrics(tmp_path: Path) -> None:
    """What the loudspeaker's bounded buffer drops shows in status and /metrics, under
    the glasses' key, and is logged seldom (it was counted only inside the speaker)."""
    pytest.importorskip("pyaudio")
    cap, play = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    cap.write_bytes(bytes(640 * 2 * 25))
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(cap=cap, play=play))
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", FLOOD_THE_SPEAKER], env=env,
                       capture_output=True, text=True, timeout=45, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    dropped = report["status"]["playback"]["dropped_seconds"]["overflow"]
    assert dropped + report["pending"] == pytest.approx(200.0, abs=0.05)
    assert dropped > 100
    assert report["metric"] == dropped
    assert 1 <= len(report["warnings"]) <= 13  # 1st, 2nd, 4th ... of ~3,500 drops
    assert report["status"]["microphone"]["dropped_seconds"] == 0.0

"""The kiosk as a voice satellite on a virtual sound card, through real PyAudio.

A user-level PulseAudio with null sinks stands in for the hardware
(tests.support.pulse); the room (tests.support.echo_harness, its own process)
plays what the daemon's loudspeaker emits back into its microphone through an
echo path, plus a user's voice on cue. The fake Live server speaks a real
espeak-ng reply, paced in real time, over TLS to the real google-genai SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from daemon.agent import Agent
from daemon.config import KioskPeripheralSettings
from daemon.live.link import LiveLink
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry
from simulator.live_server import FakeLiveServer
from simulator.scenario import ReplyAudio, Scenario, Turn
from tests.support.live import KEY, live_settings
from tests.support.pulse import EchoHarness, VirtualSoundCard, virtual_sound_card
from tests.support.speech import MODEL_TEXT, USER_TEXTS, USER_VOICE, speak, to_int16
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

ROOM = {"delay_s": 0.06, "drr_db": 10.0}
REPLY_SECONDS = 9.0


@pytest.fixture
def card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualSoundCard]:
    pytest.importorskip("pyaudio")
    with virtual_sound_card(tmp_path / "pulse") as c:
        for key, value in c.env.items():
            monkeypatch.setenv(key, value)
        yield c


def reply_wav(path: Path) -> Path:
    """The model's answer: real speech, 24 kHz, as the Live API speaks."""
    pcm = to_int16(speak(MODEL_TEXT, rate=24_000, peak=0.5)[: int(REPLY_SECONDS * 24_000)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(pcm.tobytes())
    return path


@dataclass
class Kiosk:
    server: FakeLiveServer
    agent: Agent
    kiosk: object  # KioskPeripheral (imported in the fixture: PyAudio)
    metrics: Metrics


@contextlib.asynccontextmanager
async def kiosk_agent(server: FakeLiveServer, settings: KioskPeripheralSettings
                      ) -> AsyncIterator[Kiosk]:
    from daemon.peripherals.kiosk import KioskPeripheral

    metrics = Metrics()
    registry = ToolRegistry(2.0)
    link = LiveLink(live_settings(server), SecretStr(KEY), metrics,
                    declarations=registry.declarations)
    kiosk = KioskPeripheral("pulse", "pulse", block_ms=settings.block_ms, settings=settings)
    agent = Agent(link, kiosk, registry, metrics)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: link.state == "connected", 15)
        yield Kiosk(server, agent, kiosk, metrics)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def received_between(server: FakeLiveServer, start: float, end: float) -> np.ndarray:
    pcm = b"".join(c.pcm for c in server.audio_chunks if start <= c.t < end)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


async def test_the_reply_never_reaches_the_link_and_a_user_interrupts_it(
    card: VirtualSoundCard, tmp_path: Path
) -> None:
    scenario = Scenario(turns=(Turn(user="what is the weather", reply="The weather today",
                                    audio=ReplyAudio(wav_path=reply_wav(tmp_path / "r.wav"))),))
    async with FakeLiveServer(api_key=KEY, scenario=scenario, pace_audio=True) as server:
        with EchoHarness(card, ROOM, workdir=tmp_path / "room") as room:
            async with kiosk_agent(server, KioskPeripheralSettings()) as k:
                await asyncio.sleep(2.5)  # the virtual loudspeaker's stream settles
                started = time.monotonic()
                room.say(speak(USER_TEXTS[3], USER_VOICE, peak=0.5))  # the request
                await eventually(lambda: any(t.first_audio_at for t in server.turns), 20)
                reply_at = next(t.first_audio_at for t in server.turns if t.first_audio_at)
                await asyncio.sleep(4.0)  # the model talks, the room hears it
                barge_at = time.monotonic()
                room.say(speak(USER_TEXTS[0], USER_VOICE, peak=0.5))  # "Stop, wait a moment."
                await eventually(lambda: any(t.interrupted for t in server.turns), 15)
                await asyncio.sleep(4.0)  # the user is done; the room is quiet
                ended = time.monotonic()
                status = k.kiosk.status()  # type: ignore[attr-defined]
        assert room.log is not None and len(room.onsets) == 2
        request_at, onset = room.onsets
        fe = status["frontend"]
        print("front end:", fe)
        # 1. The model's own voice never reached the link: from its first audio to
        #    the user's barge-in, what went up is >= 25 dB below its echo at the mic.
        up = received_between(server, reply_at + 0.3, onset)
        echo_db = room.level_db(2, reply_at + 0.3, onset)
        up_db = 10 * np.log10(np.mean(up**2)) if len(up) else -200.0
        print(f"echo at the microphone {echo_db:.1f} dB, uplink meanwhile {up_db:.1f} dB "
              f"({len(up) / 16_000:.2f} s sent)")
        assert up_db - echo_db <= -25.0
        # 2. The user's words during playback interrupted it (server and kiosk agree),
        #    and the loudspeaker went quiet.
        assert fe["barge_in"]["barge_ins"] >= 1
        before = room.level_db(1, onset - 1.0, onset)
        after = room.level_db(1, onset + 1.5, onset + 2.5)
        print(f"played before the barge-in {before:.1f} dB, after {after:.1f} dB; user onset -> "
              f"duck decision {(status_duck(fe, k) - onset) * 1000:.0f} ms, decision -> quiet at "
              f"the converter {fe['duck_to_quiet_ms']:.0f} ms")
        assert 0 < fe["duck_to_quiet_ms"] <= 100
        assert after <= before - 30.0
        # 3. Speech went up, silence did not: nothing while the room was quiet (before
        #    the request, and after the last words and the gate's hangover), both
        #    utterances did.
        sent = sum(len(c.pcm) for c in server.audio_chunks) / 32_000
        elapsed = ended - started
        print(f"uplink {sent:.1f} s of {elapsed:.1f} s captured")
        assert len(received_between(server, started - 2.0, request_at)) == 0
        assert len(received_between(server, ended - 1.5, ended + 1.0)) == 0
        assert len(received_between(server, request_at, request_at + 2.0)) > 0
        assert len(received_between(server, onset, onset + 3.0)) > 0
        assert sent <= 0.7 * elapsed
        assert barge_at <= onset


def status_duck(fe: dict[str, object], k: Kiosk) -> float:
    barge = k.kiosk.frontend.barge  # type: ignore[attr-defined]
    return float(barge.last_duck_at or float("nan"))


def test_devices_audio_lists_what_portaudio_sees(card: VirtualSoundCard) -> None:
    import os
    import subprocess
    import sys

    from tests.support.paths import REPO

    r = subprocess.run([sys.executable, "-m", "daemon", "devices", "--audio"],
                       env={**os.environ, **card.env}, cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pulse" in r.stdout
    assert r.stdout.splitlines()[0].startswith("index")


class Heard:
    """A MediaSink that counts what the kiosk let up."""

    def __init__(self) -> None:
        self.chunks: list[float] = []
        self.paused = 0

    def audio(self, chunk: object) -> None:
        self.chunks.append(time.monotonic())

    def video(self, frame: object) -> None:
        pass

    def input_paused(self) -> None:
        self.paused += 1

    def backlog_seconds(self) -> float:
        return 0.0

    def user_tap(self) -> None:
        pass

    def speech_ended(self) -> None:
        pass


async def test_a_sound_server_that_vanishes_and_returns_is_reopened(
    card: VirtualSoundCard, tmp_path: Path
) -> None:
    from daemon.peripherals.kiosk import KioskPeripheral

    settings = KioskPeripheralSettings(echo="off", vad="off", vad_gate=False)
    kiosk = KioskPeripheral("pulse", "pulse", block_ms=20, settings=settings)
    sink = Heard()
    task = asyncio.create_task(kiosk.run(sink))  # type: ignore[arg-type]
    try:
        await eventually(lambda: len(sink.chunks) > 20, 15)
        card.stop()
        await asyncio.sleep(3.0)  # the stall is noticed, reopening fails meanwhile
        card.start()
        gone = time.monotonic()
        await eventually(lambda: sum(t > gone for t in sink.chunks) >= 50, 40)  # 1 s flowing
        status = kiosk.status()
        print("after the return:", status["microphone"], "speaker reopens",
              status["speaker_reopens"])
        assert status["microphone"]["reopens"] >= 1
        assert status["speaker_reopens"] >= 1
        assert sink.paused >= 1
        assert status["state"] == "listening"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_the_kiosk_demo_runs_and_prints_its_figures(tmp_path: Path) -> None:
    """`edge-agent demo --kiosk` (simulator.kiosk_demo), through the real command: its own
    card, room and server."""
    import os
    import subprocess
    import sys

    pytest.importorskip("pyaudio")
    from tests.support.paths import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    r = subprocess.run([sys.executable, "-m", "daemon", "demo", "--kiosk"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=180)
    if "not installed" in r.stderr:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert "server: interrupted" in r.stdout
    assert r.stdout.strip().endswith("ok")

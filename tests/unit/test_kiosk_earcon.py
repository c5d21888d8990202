"""A wake-word kiosk opens its follow-up window after the model's answer only: a tone
of the daemon's own (the fallback road's) must not let speech without the wake word go up.

The kiosk's front end runs for real on blocks handed in; the sound card and the
detectors (no model files in a unit test) are stand-ins: an energy VAD, and a wake
word that is never heard.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import daemon.audio as audio_pkg
import daemon.peripherals.kiosk as kiosk_mod
from daemon.audio.frontend import FrontEnd, FrontEndOptions
from daemon.audio.reference import FarEndTimeline
from daemon.config import InteractionsSettings, KioskPeripheralSettings
from daemon.media.earcon import EARCON_RATE
from daemon.media.types import AudioChunk
from daemon.peripherals.audio_device import AudioDeviceStats
from daemon.tasks.fallback import FallbackRoad, road_earcon
from daemon.tasks.metrics import FallbackMetrics

BLOCK = 320  # 20 ms at 16 kHz
VOICE = (np.sin(np.arange(BLOCK) / 3) * 8000).astype("<i2").tobytes()
QUIET = bytes(2 * BLOCK)


class EnergyVad:
    def feed(self, frame: Any) -> bool:
        return float(np.mean(np.asarray(frame, dtype=np.float64) ** 2)) > 1e5


class NeverWake:
    def feed(self, clean: Any, voice: bool, at: float) -> list[str]:
        return []  # nobody ever says the wake word


class FakeSpeaker:
    def __init__(self, *a: Any, **k: Any) -> None:
        self.pending = 0.0
        self.last_sound_at = -1e9
        self.quiet_at = -1e9
        self.paused = False
        self.gain = 1.0
        self.played: list[int] = []
        self.stats = AudioDeviceStats()  # the kiosk reads its drop counter

    def play(self, pcm: bytes, rate: int) -> None:
        self.played.append(len(pcm))
        self.pending = len(pcm) / (2 * rate)

    def playback_pending(self) -> float:
        return self.pending


class Sink:
    def __init__(self) -> None:
        self.sent = 0

    def audio(self, chunk: AudioChunk) -> None:
        self.sent += len(chunk.pcm)

    def speech_ended(self) -> None:
        pass


def _kiosk(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(kiosk_mod, "find_device", lambda *a, **k: None)
    monkeypatch.setattr(kiosk_mod, "SoundCardMicrophone", lambda *a, **k: object())
    monkeypatch.setattr(kiosk_mod, "SoundCardSpeaker", FakeSpeaker)

    def build(settings: KioskPeripheralSettings, timeline: FarEndTimeline) -> FrontEnd:
        opts = FrontEndOptions(echo="off", gate=True, barge_in=False, listen="wake_word",
                               listen_window_s=6.0, follow_up_s=6.0)
        return FrontEnd(opts, canceller=None, vad=EnergyVad(),  # type: ignore[arg-type]
                        timeline=timeline, words=NeverWake())  # type: ignore[arg-type]

    monkeypatch.setattr(audio_pkg, "build", build)
    settings = KioskPeripheralSettings(listen="wake_word", earcons=False)
    return kiosk_mod.KioskPeripheral("mic", "spk", block_ms=20, settings=settings)


def _feed(kiosk: Any, sink: Sink, pcm: bytes, blocks: int, t: list[float]) -> None:
    for _ in range(blocks):
        t[0] += 0.02
        kiosk._through_frontend(kiosk.frontend, pcm, t[0], sink)  # noqa: SLF001 - one captured block, without a sound card


def _wake_word_kiosk_hears(monkeypatch: pytest.MonkeyPatch, tone: str) -> int:
    """Bytes sent up from talk without the wake word, after a tone played `tone`-wise."""
    kiosk = _kiosk(monkeypatch)
    sink = Sink()
    t = [time.monotonic()]
    _feed(kiosk, sink, VOICE, 50, t)  # 1 s of talk, no wake word: stays home
    assert sink.sent == 0
    _feed(kiosk, sink, QUIET, 50, t)
    getattr(kiosk, tone)(road_earcon(live=False), EARCON_RATE)
    _feed(kiosk, sink, QUIET, 10, t)  # the tone plays
    kiosk._speaker.pending = 0.0  # noqa: SLF001 - the stand-in speaker has played it
    _feed(kiosk, sink, QUIET, 30, t)  # past the playing tail
    _feed(kiosk, sink, VOICE, 50, t)  # private talk, still no wake word
    return sink.sent


def test_a_tone_of_the_daemons_own_opens_no_follow_up_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _wake_word_kiosk_hears(monkeypatch, "play_earcon") == 0


def test_the_models_answer_does_open_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same audio played as an answer opens the window (else the
    test above could pass with a front end that never listens)."""
    assert _wake_word_kiosk_hears(monkeypatch, "play") > 0


class _Speaker:
    def __init__(self) -> None:
        self.answers = 0
        self.tones = 0

    def play(self, pcm: bytes, rate: int) -> None:
        self.answers += 1

    def play_earcon(self, pcm: bytes, rate: int) -> None:
        self.tones += 1


class _Client:
    def prepare(self) -> None:
        pass


class _Link:
    connected = False

    async def send_text(self, text: str) -> None:
        pass


async def test_the_fallback_road_plays_its_tones_as_tones() -> None:
    speaker = _Speaker()

    async def no_tools(calls: Any) -> list[Any]:
        return []

    road = FallbackRoad(InteractionsSettings(), _Client(), _Link(), speaker,  # type: ignore[arg-type]
                        no_tools, list, FallbackMetrics(CollectorRegistry()))
    road._enter()  # noqa: SLF001 - the road switch, without waiting out fallback_after
    await road._leave()  # noqa: SLF001 - and back
    assert (speaker.tones, speaker.answers) == (2, 0)

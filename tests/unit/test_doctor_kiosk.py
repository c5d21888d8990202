"""`doctor` says which echo mode the kiosk's front end runs (AEC or half-duplex)."""

from __future__ import annotations

import importlib.util

import pytest

from daemon.config import KioskPeripheralSettings
from daemon.doctor.kiosk import FRONT_END, frontend_check


def test_half_duplex_is_named_and_ok() -> None:
    check = frontend_check(KioskPeripheralSettings(echo="half_duplex", vad="webrtc"))
    assert check.name == FRONT_END and check.status == "ok"
    assert check.detail.startswith("echo: half-duplex (microphone shut while the model speaks)")
    assert "vad: webrtc" in check.detail and "listen: always" in check.detail


def test_auto_runs_the_webrtc_canceller_when_it_loads() -> None:
    if importlib.util.find_spec("aec_audio_processing") is None:
        pytest.skip("aec-audio-processing is not installed")
    check = frontend_check(KioskPeripheralSettings())
    assert check.status == "ok"
    assert check.detail.startswith("echo: echo canceller (WebRTC AEC3)")


def test_a_named_canceller_that_cannot_load_fails_and_says_half_duplex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daemon.audio import echo

    def missing(name: str, rate: int = 16_000, *, noise_suppression: bool = True) -> None:
        raise echo.CancellerUnavailable("libspeexdsp not found")

    monkeypatch.setattr(echo, "make_canceller", missing)
    check = frontend_check(KioskPeripheralSettings(echo="speex"))
    assert check.status == "fail"
    assert check.detail.startswith("echo: half-duplex")
    assert "speex echo canceller unavailable: libspeexdsp not found" in check.detail
    assert check.advice


def test_the_listening_mode_and_wake_word_are_shown() -> None:
    check = frontend_check(KioskPeripheralSettings(echo="off", listen="wake_word"))
    assert "echo: off" in check.detail
    assert "listen: wake word 'hey_jarvis'" in check.detail

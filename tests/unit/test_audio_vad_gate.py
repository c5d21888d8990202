"""Voice activity on speech, and the uplink gate: speech with its onset, not silence."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.audio.gate import SpeechGate
from daemon.audio.vad import SileroVad, StreamVad, VadUnavailable, WebRtcVad, make_vad
from tests.support.echo_room import place
from tests.support.speech import USER_TEXTS, USER_VOICE, speak, to_int16

FRAME = 160
RATE = 16_000


def _flags(vad: StreamVad, x: np.ndarray) -> np.ndarray:
    pcm = to_int16(x)
    return np.array([vad.feed(pcm[i : i + FRAME]) for i in range(0, len(pcm) // FRAME * FRAME, FRAME)])


@pytest.mark.parametrize("make", [SileroVad, WebRtcVad])
def test_the_detectors_find_speech_and_not_noise(make: type) -> None:
    speech = speak(USER_TEXTS[1], USER_VOICE)
    noise = np.random.default_rng(1).standard_normal(RATE) * 10 ** (-50 / 20)
    vad = StreamVad(make(), floor_db=-70)
    on_speech = _flags(vad, speech)
    vad.reset()
    on_noise = _flags(vad, noise)
    assert on_speech.mean() >= 0.5
    assert on_noise.mean() <= 0.1


def test_quiet_windows_skip_the_model() -> None:
    vad = StreamVad(SileroVad())
    _flags(vad, np.zeros(RATE))
    assert vad.skipped == vad.windows > 0
    assert not vad.speech


def test_unknown_vad_is_refused() -> None:
    with pytest.raises(VadUnavailable, match="silero, webrtc"):
        make_vad("psychic")


def _frames(n: int) -> list[np.ndarray]:
    return [np.full(FRAME, k, dtype=np.int16) for k in range(n)]


def test_the_gate_sends_the_pre_roll_first_and_ends_after_the_hangover() -> None:
    gate = SpeechGate(preroll_ms=300, hangover_ms=200)
    frames = _frames(100)
    sent: list[int] = []
    ended_at = None
    for k, f in enumerate(frames):
        step = gate.step(f, 40 <= k < 60)  # speech from frame 40 to 59
        sent += [int(s[0]) for s in step.send]
        if step.ended:
            ended_at = k
    assert sent == list(range(10, 80))  # 30 frames of pre-roll, speech, 20 of hangover
    assert ended_at == 79
    assert gate.stats.utterances == 1
    assert gate.stats.frames_sent == 70 and gate.stats.frames_in == 100


def test_a_late_opening_may_send_a_longer_pre_roll() -> None:
    gate = SpeechGate(preroll_ms=300, hangover_ms=200)
    frames = _frames(60)
    for f in frames[:50]:
        gate.step(f, False)
    step = gate.step(frames[50], True, preroll_ms=800)
    assert [int(s[0]) for s in step.send] == list(range(0, 51))  # 50 held, capped by what there is


def test_on_a_recording_with_pauses_speech_goes_up_whole_and_silence_does_not() -> None:
    clips = [speak(t, USER_VOICE) for t in USER_TEXTS[:3]]
    track, onsets = place(clips, [1.0, 6.0, 11.0], 16.0)
    track += np.random.default_rng(2).standard_normal(len(track)) * 10 ** (-55 / 20)
    vad = StreamVad(SileroVad())
    gate = SpeechGate(preroll_ms=300, hangover_ms=600)
    pcm = to_int16(track)
    sent = np.zeros(len(pcm) // FRAME, dtype=bool)
    held: dict[int, int] = {}
    ends = 0
    for k in range(len(sent)):
        frame = pcm[k * FRAME : (k + 1) * FRAME]
        held[id(frame)] = k
        step = gate.step(frame, vad.feed(frame))
        for s in step.send:
            sent[held[id(s)]] = True
        ends += step.ended
    assert ends == 3
    assert sent.mean() <= 0.6  # the pauses stay home
    for onset in onsets:  # the first 100 ms of every utterance went up
        first = onset // FRAME
        assert sent[first : first + 10].all(), onset / RATE

"""The models run on one native thread (daemon.audio.threads), with the same output."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from daemon.audio import threads
from daemon.audio.vad import SileroVad
from daemon.audio.wakeword import WakeWords
from tests.support.echo_room import place
from tests.support.speech import USER_VOICE, speak, to_int16


def _probabilities(vad: SileroVad, pcm: np.ndarray) -> list[float]:
    vad.reset()
    return [vad.probability(pcm[i : i + 512]) for i in range(0, len(pcm) - 511, 512)]


def test_silero_runs_on_one_thread_and_says_the_same() -> None:
    pcm = to_int16(place([speak("Turn on the kitchen lights.", USER_VOICE)], [0.2], 2.5)[0])
    vad = SileroVad()
    assert vad.one_thread
    single = _probabilities(vad, pcm)
    threads.silero_ints(vad._vad)[2] = 4  # noqa: SLF001 - the library's own choice
    assert np.allclose(single, _probabilities(vad, pcm), atol=1e-4)
    assert max(single) > 0.5


def test_an_unexpected_silero_layout_is_left_alone_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    class Other:
        _vctx = object()  # not a capsule

    with caplog.at_level(logging.WARNING):
        assert not threads.silero_one_thread(Other())
    assert "slower" in caplog.text


def test_the_wake_word_runs_on_one_thread_and_still_hears() -> None:
    before = len(os.listdir("/proc/self/task"))
    words = WakeWords({"wake": "hey_jarvis"})
    assert words.one_thread
    track, _ = place([speak("Hey Jarvis, what time is it?", USER_VOICE, words_per_minute=140)],
                     [0.5], 3.0)
    pcm = to_int16(track)
    heard = [w for k in range(len(pcm) // 160)
             for w in words.feed(pcm[k * 160 : (k + 1) * 160], True, k / 100)]
    assert heard == ["wake"]
    assert len(os.listdir("/proc/self/task")) <= before + 1  # no TFLite thread pool


def test_a_missing_wake_word_internal_is_left_alone_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert not threads.openwakeword_one_thread(object(), [])
    assert "slower" in caplog.text


def test_the_wake_word_on_xnnpack_scores_as_tflites_own_kernels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """XNNPACK (2.5x less CPU for the embedding model) changes no decision: the
    scores match TFLite's own kernels frame by frame."""
    track, _ = place([speak("Turn on the lights.", USER_VOICE),
                      speak("Hey Jarvis, what time is it?", USER_VOICE, words_per_minute=140)],
                     [0.3, 2.5], 5.5)
    pcm = to_int16(track)

    def trace(words: WakeWords) -> tuple[list[float], list[str]]:
        scores, heard = [], []
        for k in range(len(pcm) // 160):
            heard += words.feed(pcm[k * 160 : (k + 1) * 160], True, k / 100)
            scores.append(words.scores["wake"])
        return scores, heard

    fast = WakeWords({"wake": "hey_jarvis"})
    assert fast.xnnpack
    monkeypatch.setattr(threads, "_xnnpack", lambda _lib: None)
    plain = WakeWords({"wake": "hey_jarvis"})
    assert plain.one_thread and not plain.xnnpack
    (got, heard), (want, heard_plain) = trace(fast), trace(plain)
    assert heard == heard_plain == ["wake"]
    assert np.allclose(got, want, atol=1e-3), np.max(np.abs(np.array(got) - want))

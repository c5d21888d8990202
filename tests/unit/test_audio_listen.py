"""Listening modes and the wake/stop words (pyopen-wakeword's shipped models, real speech)."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.audio.frontend import FRAME, FrontEnd, FrontEndOptions
from daemon.audio.listen import ListenPolicy
from daemon.audio.reference import FarEndTimeline
from daemon.audio.vad import SileroVad, StreamVad
from daemon.audio.wakeword import WakeWords, WakeWordUnavailable
from tests.support.echo_room import RATE, place
from tests.support.speech import MODEL_TEXT, USER_VOICE, speak, to_int16


def steps(p: ListenPolicy, t0: float, n: int, **kw: object) -> list[bool]:
    args = {"words": [], "playing": False, "utterance_open": False, **kw}
    return [p.step(t0 + k * 0.01, **args).open for k in range(n)]  # type: ignore[arg-type]


def test_always_listens() -> None:
    assert all(steps(ListenPolicy("always"), 0.0, 10))


def test_the_wake_word_opens_a_window_and_an_utterance_runs_to_its_end() -> None:
    p = ListenPolicy("wake_word", window_s=1.0, follow_up_s=0)
    assert not any(steps(p, 0.0, 50))
    first = p.step(0.5, words=["wake"], playing=False, utterance_open=False)
    assert first.open and first.started
    assert all(steps(p, 0.51, 90))
    assert all(steps(p, 1.6, 100, utterance_open=True))  # still talking past the window
    closing = p.step(2.7, words=[], playing=False, utterance_open=False)
    assert not closing.open and closing.stopped
    assert p.stats.wake_words == 1


def test_after_the_answer_a_follow_up_needs_no_wake_word() -> None:
    p = ListenPolicy("wake_word", window_s=1.0, follow_up_s=2.0)
    steps(p, 0.0, 10, playing=True)  # the model answers
    assert p.step(0.2, words=[], playing=False, utterance_open=False).open
    assert all(steps(p, 0.3, 150))
    assert not any(steps(p, 2.3, 10))
    assert p.stats.follow_ups == 1


def test_push_to_talk_listens_while_pressed() -> None:
    p = ListenPolicy("push_to_talk")
    assert not any(steps(p, 0.0, 5))
    p.press(True)
    assert all(steps(p, 0.1, 5))
    p.press(False)
    assert not any(steps(p, 0.2, 5))
    assert p.stats.presses == 1


def test_the_stop_word_is_reported_in_any_mode() -> None:
    for mode in ("always", "wake_word", "push_to_talk"):
        assert ListenPolicy(mode).step(0.0, words=["stop"], playing=True,
                                       utterance_open=False).stop


def test_an_unknown_model_is_refused_with_the_choices() -> None:
    with pytest.raises(WakeWordUnavailable, match="hey_jarvis"):
        WakeWords({"wake": "hey_nobody"})


def _feed(words: WakeWords, x: np.ndarray, t0: float = 0.0) -> list[str]:
    vad = StreamVad(SileroVad())
    pcm = to_int16(x)
    heard: list[str] = []
    for k in range(len(pcm) // FRAME):
        frame = pcm[k * FRAME : (k + 1) * FRAME]
        heard += words.feed(frame, vad.feed(frame), t0 + k * 0.01)
    return heard


def test_hey_jarvis_is_heard_in_several_voices_and_other_speech_is_not() -> None:
    words = WakeWords({"wake": "hey_jarvis"})  # one stream: loading a model costs
    other, _ = place([speak(MODEL_TEXT, USER_VOICE)[: 8 * RATE]], [0.5], 11.0)
    assert _feed(words, other) == []
    assert words.fed_frames < words.frames  # silence is not scored
    for k, voice in enumerate(("en-us", USER_VOICE, "en-us+m3")):
        track, _ = place([speak("Hey Jarvis, what time is it?", voice, words_per_minute=140)],
                         [1.0], 4.0)
        assert _feed(words, track, 20.0 + 10 * k) == ["wake"], voice


def test_in_wake_word_mode_only_the_wake_word_opens_the_uplink() -> None:
    track, (_, wake_at) = place(
        [speak("Turn on the lights.", USER_VOICE),
         speak("Hey Jarvis, turn on the lights.", USER_VOICE, words_per_minute=140)],
        [0.5, 4.0], 8.0)
    fe = FrontEnd(FrontEndOptions(echo="off", listen="wake_word", follow_up_s=0),
                  canceller=None, vad=StreamVad(SileroVad()), timeline=FarEndTimeline(),
                  words=WakeWords({"wake": "hey_jarvis"}))
    pcm = to_int16(track)
    sent_at = []
    for k in range(len(pcm) // FRAME):
        step = fe.process(pcm[k * FRAME : (k + 1) * FRAME], (k + 1) * 0.01, playing=False)
        if step.send:
            sent_at.append(k * 0.01)
    assert sent_at, "the wake word opened nothing"
    assert min(sent_at) >= wake_at / RATE  # nothing of the first utterance went up
    assert fe.listen.stats.wake_words == 1

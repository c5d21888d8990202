"""The whole front end in a closed loop on arrays (tests.support.frontend_loop):
the model's voice must not reach the uplink, a user talking over it must."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.audio import build, describe, resolve_echo
from daemon.audio.bargein import Playback
from daemon.audio.echo import make_canceller
from daemon.audio.frontend import FRAME, FrontEnd, FrontEndOptions
from daemon.audio.reference import FarEndTimeline
from daemon.audio.vad import SileroVad, StreamVad
from daemon.config import KioskPeripheralSettings
from tests.support.echo_room import RATE, EchoRoom, active_level_db, place
from tests.support.frontend_loop import run_loop
from tests.support.speech import MODEL_TEXT, USER_TEXTS, USER_VOICE, speak

ROOM = {"delay_s": 0.06, "drr_db": 10.0}


@pytest.fixture(scope="module")
def far() -> np.ndarray:
    return speak(MODEL_TEXT, peak=0.4)[: 9 * RATE]


def front_end(echo: str) -> FrontEnd:
    canc = make_canceller(echo) if echo in ("webrtc", "speex") else None
    return FrontEnd(FrontEndOptions(echo=echo), canceller=canc, vad=StreamVad(SileroVad()),
                    timeline=FarEndTimeline())


def talker_at_0_db(far: np.ndarray, start: float) -> tuple[np.ndarray, int]:
    """The user's utterance at `start`, scaled to the echo's level at the microphone."""
    user, (onset,) = place([speak(USER_TEXTS[0], USER_VOICE)], [start], len(far) / RATE + 2)
    probe = run_loop(front_end("off"), far, user, EchoRoom(**ROOM))
    talk = np.abs(probe.near) > 1e-3
    gain = 10 ** ((active_level_db(probe.echo[talk]) - active_level_db(probe.near[talk])) / 20)
    return user * gain, onset


def test_the_models_own_voice_does_not_reach_the_uplink(far: np.ndarray) -> None:
    rec = run_loop(front_end("webrtc"), far, np.zeros(len(far) + RATE), EchoRoom(**ROOM))
    sent = rec.sent_samples()
    leaked = np.sum((rec.clean * sent) ** 2)
    relative = 10 * np.log10(leaked + 1e-20) - 10 * np.log10(np.sum(rec.echo**2))
    assert relative <= -25.0, relative
    assert Playback.PAUSED not in rec.states  # and it never interrupted itself


def test_a_user_talking_over_the_model_pauses_it_and_is_heard(far: np.ndarray) -> None:
    user, onset = talker_at_0_db(far, 4.0)
    fe = front_end("webrtc")
    rec = run_loop(fe, far, user, EchoRoom(**ROOM))
    paused = [t for t, s in rec.decided if s is Playback.PAUSED]
    assert paused, rec.decided
    assert 0 <= paused[0] - onset / RATE <= 1.5
    ducked = [t for t, s in rec.decided if s is Playback.DUCKED]
    assert ducked[0] <= paused[0]  # ducked first, at once
    talk = np.abs(rec.near) > 1e-3
    assert rec.sent_samples()[talk].mean() >= 0.7  # most of what they said went up
    assert rec.ended  # and the utterance was closed (audioStreamEnd)
    assert fe.barge.stats.barge_ins == 1


def test_half_duplex_shuts_the_microphone_while_the_model_speaks(far: np.ndarray) -> None:
    short = far[: 4 * RATE]
    user, _ = place([speak(USER_TEXTS[1], USER_VOICE)], [5.0], 8.0)
    opts = FrontEndOptions(echo="half_duplex", barge_in=False, echo_tail_ms=300)
    fe = FrontEnd(opts, canceller=None, vad=StreamVad(SileroVad()), timeline=FarEndTimeline())
    rec = run_loop(fe, short, user, EchoRoom(**ROOM))
    frames_playing = (4 * RATE + 300 * RATE // 1000) // FRAME
    assert not rec.sent[:frames_playing].any()
    assert rec.sent[5 * RATE // FRAME : 6 * RATE // FRAME].any()  # the user, after it
    assert fe.stats.gated_frames >= 4 * RATE // FRAME


def test_off_passes_everything_through() -> None:
    fe = FrontEnd(FrontEndOptions(echo="off", gate=False), canceller=None, vad=None,
                  timeline=FarEndTimeline())
    block = (np.arange(480) % 100).astype(np.int16)
    step = fe.process(block, 1.0, playing=True)
    assert step.send == block.tobytes()


def test_blocks_of_any_size_are_cut_into_frames_and_carried() -> None:
    fe = FrontEnd(FrontEndOptions(echo="off", gate=False), canceller=None, vad=None,
                  timeline=FarEndTimeline())
    a = fe.process(np.ones(250, dtype=np.int16), 1.0, playing=False)
    b = fe.process(np.ones(70, dtype=np.int16), 1.02, playing=False)
    assert len(a.send) == 160 * 2 and len(b.send) == 160 * 2


def test_settings_choose_the_mode_and_doctor_says_which() -> None:
    auto = KioskPeripheralSettings()
    assert resolve_echo(auto) == ("webrtc", "auto")
    assert describe(auto) == (True, "echo: echo canceller (WebRTC AEC3); vad: silero; "
                                    "double talk: the VAD also listens through speex; "
                                    "listen: always")
    ok, detail = describe(KioskPeripheralSettings(echo="half_duplex", vad="webrtc"))
    assert ok and detail.startswith("echo: half-duplex")
    ok, detail = describe(KioskPeripheralSettings(echo="off"))
    assert ok and "off (no echo protection" in detail
    fe = build(KioskPeripheralSettings(vad="off"), FarEndTimeline())
    assert fe.options.echo == "webrtc" and not fe.gating
    fe.close()


def test_once_the_listener_converged_the_vad_hears_a_user_over_the_model(
    far: np.ndarray,
) -> None:
    """WebRTC's suppressor chops a voice in double talk; the VAD also listens through
    speexdsp once that has converged, and finds nearly all of it (bench/RESULTS.md)."""
    longer = np.concatenate([far, far])
    user, onset = talker_at_0_db(longer, 13.0)
    fe = FrontEnd(FrontEndOptions(echo="webrtc"), canceller=make_canceller("webrtc"),
                  vad=StreamVad(SileroVad()), timeline=FarEndTimeline(),
                  listener=make_canceller("speex"))
    rec = run_loop(fe, longer, user, EchoRoom(**ROOM))
    assert fe.listener_converged_at is not None and fe.listener_converged_at < onset / RATE
    talk = np.abs(rec.near) > 1e-3
    frames = talk[: len(rec.voice) * FRAME].reshape(-1, FRAME).mean(axis=1) > 0.5
    assert rec.voice[frames].mean() >= 0.8  # per 10 ms frame, incl. the gaps between words
    assert fe.barge.stats.barge_ins == 1
    model_only = np.ones(len(rec.clean), dtype=bool)
    model_only[onset - RATE : onset + 4 * RATE] = False
    leaked = np.sum((rec.clean * rec.sent_samples())[model_only] ** 2)
    assert 10 * np.log10(leaked + 1e-20) - 10 * np.log10(np.sum(rec.echo**2)) <= -25.0


def test_the_listener_rests_while_nothing_plays_and_hears_the_user_after_as_before(
    far: np.ndarray, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between two answers the speex listener is not run (nothing to judge it on);
    over the next answer the VAD hears the user through it as well as through a
    listener that ran all along."""
    import daemon.audio.frontend as frontend

    gap = np.zeros(2 * RATE)
    played = np.concatenate([far, far, gap, far[: 6 * RATE]])
    user, onset = talker_at_0_db(played, 2 * len(far) / RATE + 2.0 + 1.5)
    sound = np.convolve(np.abs(played) > 0, np.ones(int(0.4 * RATE)))[: len(played)] > 0

    def run(rest_frames: int) -> tuple[FrontEnd, float]:
        monkeypatch.setattr(frontend, "LISTENER_REST_FRAMES", rest_frames)
        fe = FrontEnd(FrontEndOptions(echo="webrtc"), canceller=make_canceller("webrtc"),
                      vad=StreamVad(SileroVad()), timeline=FarEndTimeline(),
                      listener=make_canceller("speex"))
        inner = fe.process

        def process(block: np.ndarray, at: float, *, playing: bool) -> object:
            # as the kiosk says: playing while the loudspeaker sounded in the last 0.4 s
            return inner(block, at, playing=playing and bool(sound[min(int(at * RATE),
                                                                        len(sound) - 1)]))

        fe.process = process  # type: ignore[method-assign, assignment]
        rec = run_loop(fe, played, user, EchoRoom(**ROOM))
        talk = np.abs(rec.near) > 1e-3
        frames = talk[: len(rec.voice) * FRAME].reshape(-1, FRAME).mean(axis=1) > 0.5
        return fe, float(rec.voice[frames].mean())

    rested, hits = run(frontend.LISTENER_REST_FRAMES)
    always, hits_always = run(10**9)
    assert rested.listener_rested >= 100 and always.listener_rested == 0
    assert rested.listener_converged_at is not None
    assert rested.listener_converged_at < onset / RATE
    assert hits >= 0.8 and hits >= hits_always - 0.05, (hits, hits_always)
    assert rested.barge.stats.barge_ins == always.barge.stats.barge_ins == 1

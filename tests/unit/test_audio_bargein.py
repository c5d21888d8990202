"""The barge-in state machine: duck, confirm and pause, undo, resume, drop."""

from __future__ import annotations

from daemon.audio.bargein import BargeIn, Playback

F = 0.01


def run(b: BargeIn, start: float, frames: int, **kw: bool) -> float:
    t = start
    for _ in range(frames):
        t += F
        b.step(t, **{"playing": True, "suspect": False, "voice": False, **kw})
    return t


def test_a_suspected_onset_ducks_and_voice_confirms_a_pause() -> None:
    b = BargeIn(duck_gain=0.1, confirm_s=0.09)
    t = run(b, 0.0, 5)
    assert b.state is Playback.PLAYING and b.gain == 1.0
    t = run(b, t, 1, suspect=True)
    assert b.state is Playback.DUCKED and b.gain == 0.1
    t = run(b, t, 9, voice=True)
    assert b.state is Playback.PAUSED and b.gain == 0.0
    assert b.stats.barge_ins == 1 and b.last_pause_at is not None


def test_voice_alone_must_last_before_it_ducks() -> None:
    b = BargeIn(onset_s=0.1)
    t = run(b, 0.0, 5, voice=True)  # 50 ms of "voice": a burst of residual echo
    run(b, t, 1)
    assert b.state is Playback.PLAYING
    run(b, 1.0, 10, voice=True)
    assert b.state is Playback.DUCKED


def test_an_unconfirmed_duck_is_undone() -> None:
    b = BargeIn(window_s=0.5)
    t = run(b, 0.0, 1, suspect=True)
    run(b, t, 50)
    assert b.state is Playback.PLAYING
    assert b.stats.undone == 1 and b.stats.barge_ins == 0


def test_a_false_start_resumes_once_the_room_is_quiet() -> None:
    b = BargeIn(resume_after_s=1.0)
    t = run(b, 0.0, 1, suspect=True)
    t = run(b, t, 20, voice=True)  # a cough: confirmed, paused
    assert b.state is Playback.PAUSED
    t = run(b, t, 90)
    assert b.state is Playback.PAUSED  # not yet a second of quiet
    run(b, t, 20)
    assert b.state is Playback.PLAYING
    assert b.stats.resumed == 1


def test_the_servers_interruption_drops_everything() -> None:
    b = BargeIn()
    t = run(b, 0.0, 1, suspect=True)
    run(b, t, 20, voice=True)
    b.flushed()
    assert b.state is Playback.IDLE and b.gain == 1.0
    assert b.stats.flushed == 1


def test_nothing_playing_is_idle() -> None:
    b = BargeIn()
    b.step(0.0, playing=False, suspect=True, voice=True)
    assert b.state is Playback.IDLE

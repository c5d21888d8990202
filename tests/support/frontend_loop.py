"""The kiosk's front end in a closed loop on arrays: its gain shapes the echo it hears.

Used by the unit tests and bench/kiosk_frontend.py. Frame by frame (10 ms): the
model's audio is played at the front end's gain (paused audio waits), stamped on
a `FarEndTimeline`, passed through an `EchoRoom` with the talker, and the
microphone goes through `FrontEnd.process`. Everything the front end let up is
kept at its capture position, so leaks and clipped onsets can be measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.audio.bargein import Playback
from daemon.audio.frontend import FRAME, FrontEnd
from tests.support.echo_room import RATE, EchoRoom
from tests.support.speech import to_int16

Floats = npt.NDArray[np.float64]


@dataclass
class LoopRecord:
    """What one closed-loop run produced, per sample or per 10 ms frame."""

    clean: Floats  # the front end's output, whether sent or not
    echo: Floats  # the echo part of the microphone
    near: Floats  # the talker part of the microphone
    sent: npt.NDArray[np.bool_]  # per frame: let up (at its capture position)
    voice: npt.NDArray[np.bool_]  # per frame: the VAD's verdict
    states: list[Playback] = field(default_factory=list)  # per frame
    decided: list[tuple[float, Playback]] = field(default_factory=list)  # (time, new state)
    ended: list[float] = field(default_factory=list)  # times the gate ended an utterance
    cpu_s: float = 0.0

    def sent_samples(self) -> npt.NDArray[np.bool_]:
        return np.repeat(self.sent, FRAME)


def run_loop(fe: FrontEnd, far: Floats, user: Floats, room: EchoRoom) -> LoopRecord:
    """Run the whole of `user` (the talker's dry voice) while `far` is played."""
    n = len(user) // FRAME * FRAME
    rec = LoopRecord(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n // FRAME, bool),
                     np.zeros(n // FRAME, bool))
    index: dict[int, int] = {}
    frame_no = 0

    def tap(_mic: Any, out: Any, v: bool) -> None:
        rec.clean[frame_no * FRAME : (frame_no + 1) * FRAME] = out / 32767.0
        rec.voice[frame_no] = v

    gate_step = fe.gate.step

    def tracked(frame: Any, speech: bool, **kw: Any) -> Any:
        index[id(frame)] = frame_no
        step = gate_step(frame, speech, **kw)
        for f in step.send:
            rec.sent[index.get(id(f), frame_no)] = True
        return step

    fe.tap = tap
    fe.gate.step = tracked  # type: ignore[method-assign]
    pos, t = 0, 0.0
    for i in range(0, n, FRAME):
        paused = fe.barge.state is Playback.PAUSED
        if paused or pos >= len(far):
            chunk = np.zeros(FRAME)
        else:
            chunk = np.zeros(FRAME)
            part = far[pos : pos + FRAME] * fe.barge.gain
            chunk[: len(part)] = part
            pos += FRAME
        fe.timeline.played(to_int16(chunk), t)
        mic, echo, near = room.step(chunk, user[i : i + FRAME])
        rec.echo[i : i + FRAME], rec.near[i : i + FRAME] = echo, near
        t += FRAME / RATE
        before = fe.barge.state
        c0 = time.process_time()
        step = fe.process(to_int16(mic), t, playing=pos < len(far) or paused)
        rec.cpu_s += time.process_time() - c0
        if fe.barge.state is not before:
            rec.decided.append((t, fe.barge.state))
        if step.ended:
            rec.ended.append(t)
        rec.states.append(fe.barge.state)
        frame_no += 1
    fe.gate.step = gate_step  # type: ignore[method-assign]
    fe.tap = None
    return rec

"""Kiosk audio front end on arrays: echo cancellers, double talk, VAD, barge-in, CPU.

    .venv/bin/python -m bench.kiosk_frontend [--quick]

Real speech (libespeak-ng: the model in en-us, the user in en-gb+f3) through
`simulator.soundcard.room.EchoRoom` (30-150 ms delay, reverberant room, a
loudspeaker that compresses, a noise floor). Two parts:

1. Per canceller, open loop (the canceller alone, fed the true far end): ERLE
   after convergence (median of 250 ms echo-only windows after 1 s), the
   convergence time (first moment from which the median ERLE of the next 2 s is
   >= 25 dB), and during double talk at 0 dB speech-to-echo the user's level
   change (output vs the user's own signal, over the user's speech) and the share
   of the user's speech windows in which Silero (on the output) finds voice.
2. The whole front end, closed loop (its gain ducks and pauses the playback the
   room hears): barge-in detection latency from each onset over playback,
   self-interruption (the model's echo reaching the uplink, relative to the
   echo at the microphone), uplink saved by the VAD gate, the first 100 ms of
   each utterance sent, and CPU per second of audio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.audio.bargein import Playback
from daemon.audio.echo import CancellerUnavailable, make_canceller
from daemon.audio.frontend import FRAME, FrontEnd, FrontEndOptions
from daemon.audio.reference import FarEndTimeline
from daemon.audio.vad import SileroVad, StreamVad
from simulator.soundcard.room import RATE, EchoRoom, active_level_db, place
from simulator.soundcard.speech import MODEL_TEXT, USER_TEXTS, USER_VOICE, speak, to_int16
from tests.support.frontend_loop import run_loop

ERLE_TARGET = 25.0
CONVERGENCE_TARGET = 1.0
DT_LEVEL_TARGET = 6.0
VAD_HIT_TARGET = 90.0
LEAK_TARGET = -25.0


@dataclass
class Scene:
    far: np.ndarray  # what the daemon plays, 16 kHz floats
    user: np.ndarray  # the talker's dry voice, same length
    onsets: list[int]
    room: dict[str, float]


def scene(delay: float, ser_db: float = 0.0, *, drr_db: float = 3.0, repeat: int = 2,
          user_times: tuple[float, ...] = (4.0, 9.5, 15.0, 21.0)) -> Scene:
    """The model speaks (MODEL_TEXT `repeat` times); the user talks over it at `ser_db`."""
    far = np.concatenate([speak(MODEL_TEXT, peak=0.4)] * repeat)
    total = len(far) / RATE
    times = [t for t in user_times if t < total - 3]
    clips = [speak(USER_TEXTS[i % len(USER_TEXTS)], USER_VOICE) for i in range(len(times))]
    user, onsets = place(clips, times, total)
    room = {"delay_s": delay, "drr_db": drr_db}
    # calibrate: the talker's level at the microphone vs the echo's, over the talker's speech
    echo = _open_loop(far, np.zeros_like(far), room)[1]
    near = _open_loop(np.zeros_like(far), user, room)[2]
    act = np.abs(near) > 1e-3
    gain = 10 ** ((active_level_db(echo[act]) - active_level_db(near) + ser_db) / 20)
    return Scene(far, user * gain, onsets, room)


def _open_loop(far: np.ndarray, user: np.ndarray, room: dict[str, float]):
    r = EchoRoom(**room)
    n = len(far) // FRAME * FRAME
    parts = [r.step(far[i : i + FRAME], user[i : i + FRAME]) for i in range(0, n, FRAME)]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _windows_db(x: np.ndarray, w: int) -> np.ndarray:
    n = len(x) // w
    return 10 * np.log10(np.mean(x[: n * w].reshape(n, w) ** 2, axis=1) + 1e-20)


def silero_flags(x: np.ndarray) -> np.ndarray:
    vad = SileroVad()
    pcm = to_int16(x)
    return np.array([vad.probability(pcm[i : i + 512]) >= 0.5 for i in range(0, len(pcm) - 511, 512)])


def canceller_figures(name: str, sc: Scene) -> dict[str, float]:
    """Open loop: the canceller alone on the scene."""
    base, _, ns = name.partition("+")
    canc = make_canceller(base, noise_suppression=ns == "ns") if base != "none" else None
    mic, echo, near = _open_loop(sc.far, sc.user, sc.room)
    ref, m16 = to_int16(sc.far[: len(mic)]), to_int16(mic)
    out = np.zeros(len(mic))
    cpu0 = time.process_time()
    for i in range(0, len(mic) - FRAME + 1, FRAME):
        o = canc.process(m16[i : i + FRAME], ref[i : i + FRAME]) if canc else m16[i : i + FRAME]
        out[i : i + FRAME] = o / 32767.0
    cpu = time.process_time() - cpu0
    w = RATE // 4
    e_db, o_db, n_db = _windows_db(echo, w), _windows_db(out, w), _windows_db(near, w)
    t = np.arange(len(e_db)) * 0.25
    echo_only = (e_db > -50) & (n_db < -70)
    erle = e_db - o_db
    conv = next((float(t[k]) for k in range(len(t)) if np.median(
        erle[k : k + 8][echo_only[k : k + 8]] if echo_only[k : k + 8].any() else [0]) >= ERLE_TARGET), float("inf"))
    truth, got = silero_flags(near), silero_flags(out)
    talk = np.abs(near) > 1e-3
    return {
        "erle_db": float(np.median(erle[echo_only & (t >= 1.0)])),
        "erle_p10_db": float(np.percentile(erle[echo_only & (t >= 1.0)], 10)),
        "convergence_s": conv,
        "dt_level_db": active_level_db(out[talk], 0) - active_level_db(near[talk], 0),
        "dt_vad_hit": 100.0 * float(np.mean(got[truth])),
        "cpu_pct": 100.0 * cpu / (len(mic) / RATE),
    }


def frontend_figures(echo_mode: str, sc: Scene, *, listener: str = "") -> dict[str, Any]:
    """Closed loop: the whole front end; its gain shapes what the room hears next.
    `listener`: the canceller the VAD listens through once converged ("" = none)."""
    canc = make_canceller(echo_mode) if echo_mode in ("webrtc", "speex") else None
    fe = FrontEnd(FrontEndOptions(echo=echo_mode), canceller=canc,
                  vad=StreamVad(SileroVad()), timeline=FarEndTimeline(),
                  listener=make_canceller(listener) if listener else None)
    rec = run_loop(fe, sc.far, sc.user, EchoRoom(**sc.room))
    n = len(rec.clean)
    lat = []
    for o in sc.onsets:
        after = [t - o / RATE for t, s in rec.decided
                 if s in (Playback.DUCKED, Playback.PAUSED) and o / RATE - 0.05 <= t <= o / RATE + 1.5]
        lat.append(after[0] * 1000 if after else float("nan"))
    talk = np.abs(rec.near) > 1e-3
    user_on = np.convolve(np.abs(sc.user[:n]) > 1e-3, np.ones(RATE), "same") > 0
    sent = rec.sent_samples()
    model_only = ~user_on
    leak = (10 * np.log10(np.sum((rec.clean * sent)[model_only] ** 2) + 1e-20)
            - 10 * np.log10(np.sum(rec.echo[model_only] ** 2) + 1e-20))
    truth = silero_flags(rec.near)
    win_voice = np.array([rec.voice[(k * 512 + 511) // FRAME] for k in range(len(truth))])
    first_100 = [bool(sent[o : o + RATE // 10].all()) for o in sc.onsets]
    # the same share over the utterances that began after the listener converged
    warm = fe.listener_converged_at
    late = np.zeros(len(truth), dtype=bool)
    for o, end in zip(sc.onsets, [*sc.onsets[1:], n], strict=True):
        if warm is not None and o / RATE >= warm:
            late[o // 512 : end // 512] = True
    return {
        "barge_in_ms": lat,
        "dt_level_db": active_level_db(rec.clean[talk], 0) - active_level_db(rec.near[talk], 0),
        "dt_vad_hit": 100.0 * float(np.mean(win_voice[truth])),
        "dt_vad_hit_warm": (100.0 * float(np.mean(win_voice[truth & late]))
                            if (truth & late).any() else float("nan")),
        "listener_converged_s": warm,
        "sent_pct": 100.0 * float(np.mean(rec.sent)),
        "leak_db": leak,
        "first_100ms": sum(first_100),
        "barge_ins": fe.barge.stats.barge_ins,
        "undone": fe.barge.stats.undone,
        "cpu_pct": 100.0 * rec.cpu_s / (n / RATE),
    }


def wake_figures(minutes: float) -> None:
    """False wake-ups per hour on speech that never says the wake word, and hits."""
    from daemon.audio.wakeword import WakeWords

    # README.md, then Debian's license texts (base-files): over an hour of varied English.
    texts = [Path(__file__).resolve().parent.parent / "README.md",
             *(Path("/usr/share/common-licenses") / n for n in ("GPL-3", "Apache-2.0", "MPL-2.0"))]
    prose = " ".join(t.read_text() for t in texts if t.exists())
    words = [w for w in prose.replace("`", " ").replace("#", " ").split() if w.isascii()]
    voices = ("en-us", USER_VOICE, "en-us+m3", "en-gb")
    pieces, total, k = [], 0.0, 0
    while total < minutes * 60:
        text = " ".join(words[k * 120 : (k + 1) * 120]) or MODEL_TEXT
        clip = speak(text, voices[k % len(voices)], peak=0.4)
        pieces += [clip, np.zeros(RATE // 2)]
        total += len(clip) / RATE + 0.5
        k += 1
    track = np.concatenate(pieces)
    ww = WakeWords({"wake": "hey_jarvis"})
    vad = StreamVad(SileroVad())
    pcm = to_int16(track)
    cpu0 = time.process_time()
    hits = 0
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        frame = pcm[i : i + FRAME]
        hits += len(ww.feed(frame, vad.feed(frame), i / RATE))
    cpu = time.process_time() - cpu0
    hours = len(pcm) / RATE / 3600
    print(f"wake word hey_jarvis on {len(pcm) / RATE / 60:.1f} min of README and licenses read aloud "
          f"({len(voices)} voices): {hits} false wake-ups = {hits / hours:.1f} per hour; "
          f"VAD + wake word CPU {100 * cpu / (len(pcm) / RATE):.2f} % of a core "
          f"(scored {100 * ww.fed_frames / max(1, ww.frames):.0f} % of frames)")
    found = 0
    for voice in voices:
        clip = np.concatenate([np.zeros(RATE), speak("Hey Jarvis, what time is it?", voice,
                                                     words_per_minute=140), np.zeros(RATE)])
        w, v, got = WakeWords({"wake": "hey_jarvis"}), StreamVad(SileroVad()), 0
        p16 = to_int16(clip)
        for i in range(0, len(p16) - FRAME + 1, FRAME):
            got += len(w.feed(p16[i : i + FRAME], v.feed(p16[i : i + FRAME]), i / RATE))
        found += got > 0
    print(f"wake word heard in {found}/{len(voices)} voices")


class StageTimer:
    """CPU time (process-wide, so a library's own threads count) spent in each
    wrapped method of a running front end: where the kiosk's CPU goes."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, obj: Any, method: str, label: str) -> None:
        if obj is None:
            return
        inner = getattr(obj, method)
        self.cpu[label], self.calls[label] = 0.0, 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.cpu[label] += time.process_time() - t0
                self.calls[label] += 1

        setattr(obj, method, timed)

    def attach(self, fe: Any) -> None:
        self.wrap(fe, "process", "front end (all)")
        self.wrap(fe.canceller, "process", "AEC3 (WebRTC)")
        self.wrap(fe.listener, "process", "speexdsp listener")
        self.wrap(fe.detector, "step", "expected echo (numpy)")
        self.wrap(fe.vad.vad if fe.vad else None, "probability", "Silero")
        self.wrap(fe.words, "_score", "wake word (mel+emb+clf)")
        self.wrap(fe.gate, "step", "gate")
        if fe.words is not None:  # where the wake word's scoring goes: playing or not
            self.fed = {True: 0, False: 0}
            inner = fe.words._score  # noqa: SLF001 - profiling instrumentation

            def score(*args: Any) -> Any:
                self.fed[bool(fe._answering)] += 1  # noqa: SLF001
                return inner(*args)

            fe.words._score = score  # noqa: SLF001

    def report(self, wall: float, total_cpu: float) -> str:
        rows = [f"  {k:26s} {100 * v / wall:5.2f} % of a core ({self.calls[k]} calls)"
                for k, v in self.cpu.items()]
        rows.append(f"  {'whole process':26s} {100 * total_cpu / wall:5.2f} %")
        if getattr(self, "fed", None):
            rows.append(f"  wake word scored frames: {self.fed[True]} while the answer played, "
                        f"{self.fed[False]} otherwise")
        return "\n".join(rows)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process so far, by name and id (/proc): the
    event loop (MainThread) apart from PortAudio's callback threads."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[f"{comm} ({task.name})"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_report(used: dict[str, float], wall: float) -> str:
    """Each thread's share of a core over `wall` seconds, busiest first."""
    return "\n".join(f"  thread {name:24s} {100 * cpu / wall:5.2f} % of a core"
                     for name, cpu in sorted(used.items(), key=lambda kv: -kv[1]) if cpu > 0)


def card_figures(seconds: float, listen: str, double_talk: str = "speex",
                 profile: bool = False) -> None:
    """The whole kiosk (PyAudio, front end, loudspeaker) on the virtual sound card:
    CPU of this process per second, and capture -> hand-over latency. `profile`:
    also the CPU of each stage of the front end (timers add ~0.1 % themselves)."""
    import asyncio
    import tempfile

    from daemon.config import KioskPeripheralSettings
    from simulator.soundcard.pulse import EchoHarness, virtual_sound_card

    class Sink:
        def __init__(self) -> None:
            self.delays: list[float] = []
            self.seconds = 0.0

        def audio(self, chunk: Any) -> None:
            self.delays.append(time.monotonic() - chunk.captured_at)
            self.seconds += chunk.duration

        def video(self, frame: Any) -> None: ...
        def input_paused(self) -> None: ...
        def backlog_seconds(self) -> float:
            return 0.0
        def user_tap(self) -> None: ...
        def speech_ended(self) -> None: ...

    async def run(card: Any) -> None:
        from daemon.peripherals.kiosk import KioskPeripheral

        os.environ.update(card.env)
        kiosk = KioskPeripheral("pulse", "pulse", block_ms=20,
                                settings=KioskPeripheralSettings(
                                    listen=listen, double_talk=double_talk))  # type: ignore[arg-type]
        sink = Sink()
        with EchoHarness(card, {"delay_s": 0.06, "drr_db": 10.0},
                         workdir=Path(card.root) / "room") as room:
            task = asyncio.create_task(kiosk.run(sink))  # type: ignore[arg-type]
            await asyncio.sleep(2.5)
            timer = StageTimer()
            if profile and kiosk.frontend is not None:
                timer.attach(kiosk.frontend)
            reply = to_int16(speak(MODEL_TEXT, rate=24_000, peak=0.5)).tobytes()
            # made before the clock starts: speech synthesis is the bench's work, not the kiosk's
            said = [speak(text, USER_VOICE, peak=0.5) for text in USER_TEXTS]
            wake = speak("Hey Jarvis, what time is it?", USER_VOICE, peak=0.5,
                         words_per_minute=140)
            threads0 = thread_cpu()
            cpu0, t0 = time.process_time(), time.monotonic()
            k = 0
            while time.monotonic() - t0 < seconds:
                kiosk.play(reply[: 24_000 * 2 * 6], 24_000)  # 6 s of answer
                await asyncio.sleep(3.0)
                room.say(said[k % len(said)])
                await asyncio.sleep(4.0)
                kiosk.flush_playback()  # as the server's interruption would
                room.say(wake)
                await asyncio.sleep(4.0)
                k += 1
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu().items()}
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        st = kiosk.status()
        d = np.array(sink.delays) * 1000
        fe = st["frontend"]
        print(f"kiosk on the virtual card, listen={listen}, double_talk={double_talk}: CPU {100 * cpu / wall:.1f} % of a "
              f"core over {wall:.0f} s (PyAudio, AEC, VAD{', wake word' if listen != 'always' else ''}, "
              f"loudspeaker, event loop); capture -> hand-over p50 {np.percentile(d, 50):.1f} ms, "
              f"p99 {np.percentile(d, 99):.1f} ms (+20 ms block); uplink {sink.seconds:.1f} s of "
              f"{wall:.0f} s; barge-ins {fe['barge_in']['barge_ins']}, wake words "
              f"{fe['listen_counts']['wake_words']}; decision -> quiet at the converter p50 "
              f"{np.median(kiosk.quiet_ms or [np.nan]):.0f} ms, max {fe['duck_to_quiet_max_ms']} ms "
              f"({len(kiosk.quiet_ms)} decisions); models on one native thread: "
              f"{fe.get('native_one_thread')}")
        if profile:
            print(timer.report(wall, cpu))
            print(thread_report(threads, wall))

    with tempfile.TemporaryDirectory() as tmp, virtual_sound_card(Path(tmp)) as card:
        asyncio.run(run(card))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one delay, fewer cancellers")
    ap.add_argument("--wake-minutes", type=float, default=0.0,
                    help="also count false wake-ups on this many minutes of speech")
    ap.add_argument("--card", type=float, default=0.0,
                    help="also run the whole kiosk on a virtual sound card this many seconds")
    ap.add_argument("--only-card", action="store_true", help="skip the array figures")
    ap.add_argument("--double-talk", default="speex", choices=["speex", "off"],
                    help="--card: peripheral.kiosk.double_talk")
    ap.add_argument("--profile", action="store_true", help="--card: CPU of each stage")
    ap.add_argument("--library-threads", action="store_true",
                    help="leave Silero and the wake word on their libraries' own thread "
                         "pools (as before daemon.audio.threads), for an A/B")
    ap.add_argument("--listen", choices=["always", "wake_word"],
                    help="--card: only this listening mode")
    args = ap.parse_args()
    if args.library_threads:
        import daemon.audio.vad
        import daemon.audio.wakeword

        daemon.audio.vad.silero_one_thread = lambda _d: False  # type: ignore[assignment]
        daemon.audio.wakeword.openwakeword_one_thread = (  # type: ignore[assignment]
            lambda _f, _m: False)
    if args.card:
        for listen in [args.listen] if args.listen else ["always", "wake_word"]:
            card_figures(args.card, listen, args.double_talk, args.profile)
        if args.only_card:
            return 0
    if args.wake_minutes:
        wake_figures(args.wake_minutes)
    delays = (0.06,) if args.quick else (0.03, 0.06, 0.15)
    names = ["webrtc", "webrtc+ns", "speex", "none"]
    print(f"targets: ERLE >= {ERLE_TARGET} dB, convergence <= {CONVERGENCE_TARGET} s, "
          f"double talk at 0 dB: level within {DT_LEVEL_TARGET} dB, VAD hits >= {VAD_HIT_TARGET} %")
    for delay in delays:
        for drr in (10.0, 3.0):
            sc = scene(delay, 0.0, drr_db=drr)
            print(f"\n-- echo delay {delay * 1000:.0f} ms, direct-to-reverberant {drr:+.0f} dB, "
                  f"{len(sc.far) / RATE:.1f} s of model speech, 0 dB speech-to-echo")
            for name in names:
                try:
                    f = canceller_figures(name, sc)
                except CancellerUnavailable as exc:
                    print(f"{name:10s} unavailable: {exc}")
                    continue
                print(f"{name:10s} ERLE {f['erle_db']:5.1f} dB (p10 {f['erle_p10_db']:5.1f})  "
                      f"conv {f['convergence_s']:4.2f} s  double talk {f['dt_level_db']:+5.1f} dB, "
                      f"VAD {f['dt_vad_hit']:5.1f} %  CPU {f['cpu_pct']:.2f} %")
            for mode in ("webrtc", "half_duplex"):
                f = frontend_figures(mode, sc)
                lat = ", ".join(f"{x:.0f}" for x in f["barge_in_ms"])
                print(f"front end {mode:11s}: barge-in after onset [{lat}] ms (barge-ins "
                      f"{f['barge_ins']}, ducks undone {f['undone']}); double talk "
                      f"{f['dt_level_db']:+.1f} dB, VAD {f['dt_vad_hit']:.1f} %; model's echo in "
                      f"the uplink {f['leak_db']:.1f} dB; uplink {f['sent_pct']:.0f} % of "
                      f"captured; onsets sent whole {f['first_100ms']}/{len(sc.onsets)}; "
                      f"CPU {f['cpu_pct']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

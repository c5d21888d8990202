"""`edge-agent demo --kiosk`: the kiosk on a virtual sound card, with figures.

    edge-agent demo --kiosk [--delay-ms 60] [--echo auto]
    (or python -m simulator.kiosk_demo with the same options)

A user-level PulseAudio with null sinks is the sound card; a room process plays
what the loudspeaker emits back into the microphone through an echo path
(simulator.soundcard). The fake Live server answers a spoken question with a
spoken answer (espeak-ng), paced in real time, over TLS to the real SDK. The user
asks, the answer plays and echoes, the user talks over it, and the demo prints
what reached the Live link, how fast the kiosk ducked, and what the front end
counted. Needs Debian pulseaudio, pulseaudio-utils, libasound2-plugins and
espeak-ng (scripts/bootstrap installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from simulator.live_server import FakeLiveServer
from simulator.scenario import ReplyAudio, Scenario, Turn
from simulator.soundcard.pulse import (
    EchoHarness,
    SoundCardUnavailable,
    VirtualSoundCard,
    virtual_sound_card,
)
from simulator.soundcard.speech import (
    MODEL_TEXT,
    USER_VOICE,
    SpeechUnavailable,
    speak,
    to_int16,
)

KEY = "kiosk-demo-key"
QUESTION = "What is the weather like today?"
BARGE_IN = "Stop, wait a moment."


def _reply_wav(path: Path, seconds: float = 9.0) -> Path:
    pcm = to_int16(speak(MODEL_TEXT, rate=24_000, peak=0.5)[: int(seconds * 24_000)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(pcm.tobytes())
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent demo --kiosk", description=__doc__.split("\n")[0])
    p.add_argument("--delay-ms", type=float, default=60.0, help="the room's echo delay")
    p.add_argument("--echo", default="auto",
                   choices=["auto", "webrtc", "speex", "half_duplex", "off"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when the model never heard itself and the barge-in worked."""
    args = _parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="edge-agent-kiosk-") as tmp:
            root = Path(tmp)
            with virtual_sound_card(root / "pulse") as card:
                return asyncio.run(_demo(card, root, args))
    except (SoundCardUnavailable, SpeechUnavailable) as exc:
        print(f"edge-agent demo --kiosk: {exc}", file=sys.stderr)
        return 1


async def _demo(card: VirtualSoundCard, root: Path, args: argparse.Namespace) -> int:
    import os

    os.environ.update(card.env)  # PortAudio's `pulse` device: this server, spk and mic
    turn = Turn(user="weather", reply="The weather today",
                audio=ReplyAudio(wav_path=_reply_wav(root / "reply.wav")))
    room_params = {"delay_s": args.delay_ms / 1000, "drr_db": 10.0}
    async with FakeLiveServer(api_key=KEY, scenario=Scenario(turns=(turn,)),
                              pace_audio=True) as server:
        with EchoHarness(card, room_params, workdir=root / "room") as room:
            figures = await _conversation(server, room, args.echo)
    return _report(server, room, figures)


async def _conversation(server: FakeLiveServer, room: EchoHarness, echo: str) -> dict[str, Any]:
    from daemon.agent import Agent
    from daemon.config import KioskPeripheralSettings, LiveSettings
    from daemon.live.link import LiveLink
    from daemon.ops.metrics import Metrics
    from daemon.peripherals.kiosk import KioskPeripheral
    from daemon.tools.registry import ToolRegistry

    settings = KioskPeripheralSettings(echo=echo)
    registry = ToolRegistry(5.0)
    live = LiveSettings(base_url=server.base_url, ca_file=server.ca_pem_path)
    link = LiveLink(live, SecretStr(KEY), Metrics(), declarations=registry.declarations)
    kiosk = KioskPeripheral("pulse", "pulse", block_ms=settings.block_ms, settings=settings)
    agent = Agent(link, kiosk, registry, Metrics())
    task = asyncio.create_task(agent.run())
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        await _until(lambda: link.state == "connected", 15)
        await asyncio.sleep(2.5)  # the virtual loudspeaker's stream settles
        print(f"user: {QUESTION}", flush=True)
        room.say(speak(QUESTION, USER_VOICE, peak=0.5))
        await _until(lambda: any(t.first_audio_at for t in server.turns), 20)
        print("model: (answers; its voice comes back through the room)", flush=True)
        await asyncio.sleep(4.0)
        print(f"user (over the model): {BARGE_IN}", flush=True)
        room.say(speak(BARGE_IN, USER_VOICE, peak=0.5))
        await _until(lambda: any(t.interrupted for t in server.turns), 15)
        print("server: interrupted", flush=True)
        await asyncio.sleep(3.0)
        barge = kiosk.frontend.barge if kiosk.frontend else None
        return {"status": kiosk.status(), "duck_at": barge.last_duck_at if barge else None,
                "pause_at": barge.last_pause_at if barge else None,
                "cpu": time.process_time() - cpu0, "wall": time.monotonic() - t0}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(predicate: Any, limit: float) -> None:
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"the kiosk demo waited {limit} s in vain")
        await asyncio.sleep(0.02)


def _report(server: FakeLiveServer, room: EchoHarness, f: dict[str, Any]) -> int:
    reply_at = next(t.first_audio_at for t in server.turns if t.first_audio_at)
    _asked, onset = room.onsets[:2]
    up = b"".join(c.pcm for c in server.audio_chunks if reply_at + 0.3 <= c.t < onset)
    x = np.frombuffer(up, dtype="<i2").astype(np.float64) / 32768.0
    up_db = 10 * np.log10(np.mean(x**2)) if len(x) else float("-inf")
    echo_db = room.level_db(2, reply_at + 0.3, onset)
    fe = f["status"].get("frontend", {})
    sent = sum(len(c.pcm) for c in server.audio_chunks) / 32_000
    # The onset is when the room began to play the user's voice (its clock); the
    # microphone hears it ~0.1 s later (the sound server's buffers), so a duck can
    # follow a real onset only: a duck or pause before it was caused by the echo.
    duck_ms = (f["duck_at"] - onset) * 1000 if f["duck_at"] else float("nan")
    paused_after_onset = (f["pause_at"] is not None and f["pause_at"] >= onset
                          and f["duck_at"] is not None and f["duck_at"] >= onset)
    print(f"\necho mode: {fe.get('echo')}, ERLE {fe.get('erle_db')} dB")
    print(f"the model's voice at the microphone {echo_db:.1f} dBFS; reached the Live link "
          f"while it spoke alone: {up_db:.1f} dBFS ({len(x) / 16_000:.2f} s)")
    print(f"barge-in: user onset (in the room) -> duck decision {duck_ms:.0f} ms, decision -> "
          f"quiet at the converter {fe.get('duck_to_quiet_ms')} ms; counts {fe.get('barge_in')}")
    if not paused_after_onset:
        print("the loudspeaker was ducked or paused before the user spoke (a false barge-in "
              "on the echo)")
    print(f"uplink: {sent:.1f} s sent of {f['wall']:.1f} s captured "
          f"(gate: {fe.get('gate')})")
    print(f"CPU of the whole kiosk (and the fake server): {100 * f['cpu'] / f['wall']:.1f} % "
          "of a core")
    ok = (up_db - echo_db <= -25.0) and any(t.interrupted for t in server.turns)
    ok = ok and paused_after_onset
    print("ok" if ok else "NOT ok: the model heard itself, or paused before the user spoke, or "
          "was not interrupted")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

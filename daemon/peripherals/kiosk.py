"""The kiosk: a local microphone and speaker instead of glasses.

With its settings (`[peripheral.kiosk]`), every captured block goes through the
audio front end (daemon.audio): the echo of what the loudspeaker plays is taken
out with the true far end, voice is found on the cleaned signal, silence is held
back (with pre-roll) and the end of an utterance ends the audio stream, and a
user who talks over the model ducks, then pauses, the loudspeaker at once. Built
without settings it streams the raw microphone and leaves the echo to the
Agent's gate (`hears_own_speaker`), as before the front end existed.

A device that disappears (a USB microphone pulled out) is reopened with
backoff; the conversation waits rather than ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.audio.ptt import PushToTalk
from daemon.backoff import Backoff
from daemon.config import KioskPeripheralSettings
from daemon.media.earcon import EARCON_RATE, LISTEN_START, LISTEN_STOP, earcon
from daemon.media.types import DOWNLINK_RATE, UPLINK_RATE, AudioChunk
from daemon.ops.lograte import seldom
from daemon.peripherals import ptt_sources
from daemon.peripherals.audio_device import (
    AudioDeviceError,
    SoundCardMicrophone,
    SoundCardSpeaker,
    find_device,
)
from daemon.peripherals.base import MediaSink, Peripheral

if TYPE_CHECKING:
    from daemon.audio.frontend import FrontEnd

log = logging.getLogger(__name__)

STALL_SECONDS = 2.0
PLAYING_TAIL_SECONDS = 0.4


class KioskPeripheral(Peripheral):
    """A local microphone and loudspeaker (PortAudio) instead of glasses."""

    kind = "kiosk"

    def __init__(self, input_device: str, output_device: str, *, block_ms: int = 40,
                 settings: KioskPeripheralSettings | None = None) -> None:
        find_device(input_device, output=False)  # fail at start, with the device list
        find_device(output_device, output=True)
        self._frontend: FrontEnd | None = None
        timeline = None
        if settings is not None:
            from daemon.audio import build
            from daemon.audio.reference import FarEndTimeline

            timeline = FarEndTimeline()
            self._frontend = build(settings, timeline)
        # Without a front end the open loudspeaker reaches the uplink: the Agent gates it.
        self.hears_own_speaker = self._frontend is None
        self._mic = SoundCardMicrophone(input_device, UPLINK_RATE, block_ms)
        self._speaker = SoundCardSpeaker(output_device, DOWNLINK_RATE, timeline=timeline)
        self._backoff = Backoff(0.5, 10.0)
        self._decided_at = 0.0
        self.quiet_ms: deque[float] = deque(maxlen=100)
        self._earcons = settings is not None and settings.earcons
        self.stopped_by_word = 0
        self.assistant_state = "idle"
        self._answering = False  # the loudspeaker plays the model's answer (not an earcon)
        self._overflows = 0  # plays the loudspeaker's buffer had no room for
        self.state = "idle"
        # push-to-talk: every source (key, GPIO, MQTT, tap) feeds one button
        self._ptt = PushToTalk(settings.push_to_talk_max_hold if settings else 60.0)
        self._ptt_sources = ptt_sources.sources(settings, self) if settings else []

    @property
    def frontend(self) -> FrontEnd | None:
        """The audio front end, if the kiosk was built with its settings."""
        return self._frontend

    async def run(self, sink: MediaSink) -> None:
        """Capture until cancelled, beside the push-to-talk sources (if any)."""
        if not self._ptt_sources:
            await self._run_devices(sink)
            return
        async with asyncio.TaskGroup() as tg:
            for source in self._ptt_sources:
                tg.create_task(source())
            await self._run_devices(sink)

    async def _run_devices(self, sink: MediaSink) -> None:
        """Capture until cancelled; a lost microphone (or loudspeaker) is reopened with backoff."""
        self._speaker.open()
        try:
            while True:
                try:
                    if not self._speaker.active:  # the sound server went away and back
                        self._speaker.close()
                        self._speaker.open()
                        self._speaker.stats.reopens += 1
                    await self._capture(sink)
                except AudioDeviceError as exc:
                    self._mic.close()
                    self.state = "reopening"
                    self._mic.stats.reopens += 1
                    delay = self._backoff.next_delay()
                    log.warning("microphone: %s; reopening in %.1f s", exc, delay)
                    self._let_go(time.monotonic())
                    sink.input_paused()
                    await asyncio.sleep(delay)
        finally:
            self._mic.close()
            self._speaker.close()
            if self._frontend is not None:
                self._frontend.close()
            self.state = "stopped"

    async def _capture(self, sink: MediaSink) -> None:
        queue = await self._mic.blocks()
        self.state = "listening"
        self._backoff.reset()
        while True:
            try:
                async with asyncio.timeout(STALL_SECONDS):
                    pcm, captured_at = await queue.get()
            except TimeoutError:
                if not self._mic.active:
                    raise AudioDeviceError("input stream stopped") from None
                continue
            if self._frontend is None:
                sink.audio(AudioChunk(pcm, UPLINK_RATE, captured_at))
            else:
                self._through_frontend(self._frontend, pcm, captured_at, sink)

    def _through_frontend(self, fe: FrontEnd, pcm: bytes, captured_at: float,
                          sink: MediaSink) -> None:
        """One block through the front end: the loudspeaker follows barge-in at once."""
        from daemon.audio.bargein import Playback

        # A reply streamed in real time may leave the queue dry for a moment between
        # chunks: it still counts as playing (and its echo still rings) for a while.
        spk = self._speaker
        playing = (spk.playback_pending() > 0
                   or time.monotonic() - spk.last_sound_at < PLAYING_TAIL_SECONDS)
        if not playing:
            self._answering = False
        self._talk(self._ptt.tick(captured_at))  # a release that never came
        before = fe.barge.state
        step = fe.process(np.frombuffer(pcm, dtype="<i2"), captured_at, playing=playing,
                          answering=playing and self._answering)
        if self._decided_at and spk.quiet_at > self._decided_at:
            self.quiet_ms.append(round((spk.quiet_at - self._decided_at) * 1000, 1))
            self._decided_at = 0.0
        if step.playback is not before and step.playback in (Playback.DUCKED, Playback.PAUSED):
            self._decided_at = time.monotonic()
        spk.paused = step.playback is Playback.PAUSED
        spk.gain = step.gain if step.playback is Playback.DUCKED else 1.0
        if step.stop:  # the stop word: the model is cut off here and now
            self.stopped_by_word += 1
            self.flush_playback()
        if step.send:
            sink.audio(AudioChunk(step.send, UPLINK_RATE, captured_at))
        if step.ended:
            sink.speech_ended()
        if self._earcons and (step.listening_started or step.listening_stopped):
            self._speaker.play(earcon(LISTEN_START if step.listening_started else LISTEN_STOP),
                               EARCON_RATE)
        self.assistant_state = fe.assistant_state(captured_at, playing)

    def _let_go(self, now: float) -> None:
        """No microphone: nobody can be heard, so no talk button holds and nothing is
        shown listening (the blocks that would tick the hold limit do not come)."""
        for source in self._ptt.sources:
            self._talk(self._ptt.release(source, now))
        self.assistant_state = "idle"

    def push_to_talk(self, pressed: bool, source: str = "mqtt") -> None:
        """A talk button went down or up (a key, a GPIO line, the MQTT switch)."""
        self._talk(self._ptt.set(source, pressed, time.monotonic()))

    def toggle_talk(self, source: str) -> None:
        """A talk source with no release (a terminal key, a tap) was pressed: flip it."""
        self._talk(self._ptt.toggle(source, time.monotonic()))

    def _talk(self, change: bool | None) -> None:
        if change is not None and self._frontend is not None:
            self._frontend.listen.press(change)

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue model audio on the loudspeaker."""
        self._answering = True
        self._play(pcm, rate)

    def play_earcon(self, pcm: bytes, rate: int) -> None:
        """A tone of the daemon's own: played, but not taken for an answer (after an
        answer a wake-word kiosk listens without the wake word for a while)."""
        self._play(pcm, rate)

    def _play(self, pcm: bytes, rate: int) -> None:
        """Queue on the loudspeaker; what its bounded buffer drops is counted by the
        speaker (in `status`) and logged seldom here."""
        before = self._speaker.stats.dropped_seconds
        self._speaker.play(pcm, rate)
        if self._speaker.stats.dropped_seconds > before:
            self._overflows += 1
            if seldom(self._overflows):
                log.warning("speaker buffer full: %.2f s of audio dropped so far (%d times)",
                            self._speaker.stats.dropped_seconds, self._overflows)

    def flush_playback(self) -> float:
        """Drop what the loudspeaker has not played yet, paused audio too (interrupted)."""
        dropped = self._speaker.flush_playback()
        self._speaker.paused = False
        self._speaker.gain = 1.0
        self._speaker.last_sound_at = -1e9  # nothing is playing any more
        if self._frontend is not None:
            self._frontend.flushed()
        return dropped

    def playback_pending(self) -> float:
        """Seconds the loudspeaker has still to play."""
        return self._speaker.playback_pending()

    def status(self) -> dict[str, Any]:
        """Capture state, both devices' counters and the front end's."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "state": self.state,
            "microphone": asdict(self._mic.stats),
            "speaker_played_s": round(self._speaker.played_seconds, 2),
            "speaker_underruns": self._speaker.stats.underruns,
            "speaker_reopens": self._speaker.stats.reopens,
            # keyed as the glasses' playback: one /metrics key whatever the peripheral
            "playback": {"dropped_seconds": {
                "overflow": round(self._speaker.stats.dropped_seconds, 3)}},
            "assistant": self.assistant_state,  # idle, listening, thinking, speaking
            "stop_words": self.stopped_by_word,
            "push_to_talk": self._ptt.pressed,
            "push_to_talk_counts": asdict(self._ptt.stats),
        }
        if self._frontend is not None:
            out["frontend"] = self._frontend.status()
            # barge-in decisions -> the lowered audio at the converter: the last, the worst
            out["frontend"]["duck_to_quiet_ms"] = self.quiet_ms[-1] if self.quiet_ms else 0.0
            out["frontend"]["duck_to_quiet_max_ms"] = max(self.quiet_ms, default=0.0)
        return out

"""The kiosk: a local microphone and speaker instead of glasses.

A device that disappears (a USB microphone pulled out) is reopened with
backoff; the conversation waits rather than ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

from daemon.backoff import Backoff
from daemon.media.types import DOWNLINK_RATE, UPLINK_RATE, AudioChunk
from daemon.peripherals.audio_device import (
    AudioDeviceError,
    SoundCardMicrophone,
    SoundCardSpeaker,
    find_device,
)
from daemon.peripherals.base import MediaSink, Peripheral

log = logging.getLogger(__name__)

STALL_SECONDS = 2.0


class KioskPeripheral(Peripheral):
    """A local microphone and loudspeaker (PortAudio) instead of glasses."""
    kind = "kiosk"
    hears_own_speaker = True  # an open loudspeaker, no echo canceller yet

    def __init__(self, input_device: str, output_device: str, *, block_ms: int = 40) -> None:
        find_device(input_device, output=False)  # fail at start, with the device list
        find_device(output_device, output=True)
        self._mic = SoundCardMicrophone(input_device, UPLINK_RATE, block_ms)
        self._speaker = SoundCardSpeaker(output_device, DOWNLINK_RATE)
        self._backoff = Backoff(0.5, 10.0)
        self.state = "idle"

    async def run(self, sink: MediaSink) -> None:
        """Capture until cancelled; a lost microphone is reopened with backoff."""
        self._speaker.open()
        try:
            while True:
                try:
                    await self._capture(sink)
                except AudioDeviceError as exc:
                    self._mic.close()
                    self.state = "reopening"
                    self._mic.stats.reopens += 1
                    delay = self._backoff.next_delay()
                    log.warning("microphone: %s; reopening in %.1f s", exc, delay)
                    sink.input_paused()
                    await asyncio.sleep(delay)
        finally:
            self._mic.close()
            self._speaker.close()
            self.state = "stopped"

    async def _capture(self, sink: MediaSink) -> None:
        queue = await self._mic.blocks()
        self.state = "listening"
        self._backoff.reset()
        while True:
            try:
                async with asyncio.timeout(STALL_SECONDS):
                    pcm = await queue.get()
            except TimeoutError:
                if not self._mic.active:
                    raise AudioDeviceError("input stream stopped") from None
                continue
            sink.audio(AudioChunk(pcm, UPLINK_RATE, time.monotonic()))

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue model audio on the loudspeaker."""
        self._speaker.play(pcm, rate)

    def flush_playback(self) -> float:
        """Drop what the loudspeaker has not played yet."""
        return self._speaker.flush_playback()

    def playback_pending(self) -> float:
        """Seconds the loudspeaker has still to play."""
        return self._speaker.playback_pending()

    def status(self) -> dict[str, Any]:
        """Capture state and both devices' counters."""
        return {
            "kind": self.kind,
            "state": self.state,
            "microphone": asdict(self._mic.stats),
            "speaker_played_s": round(self._speaker.played_seconds, 2),
            "speaker_underruns": self._speaker.stats.underruns,
        }

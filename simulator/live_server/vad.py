"""How the fake hears the end of an utterance: energy over 20 ms frames, like a simple VAD.

Time is counted in samples, not wall time, so a client streaming faster than
real time gets the same decisions as a paced one.
"""

from __future__ import annotations

import enum

import numpy as np


class VadEvent(enum.Enum):
    """What the energy detector noticed in a chunk of audio."""

    SPEECH_START = "speech_start"
    UTTERANCE_END = "utterance_end"


class EndOfUtteranceDetector:
    """Energy-based end-of-utterance detection on 16-bit mono PCM.

    Time is counted in samples received, not wall time, so a client that
    streams faster than real time gets the same decisions as a paced one.
    """

    def __init__(
        self,
        *,
        threshold_rms: float = 300.0,
        silence_ms: float = 600.0,
        min_speech_ms: float = 40.0,
        frame_ms: float = 20.0,
    ) -> None:
        self.threshold_rms = threshold_rms
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.frame_ms = frame_ms
        self.in_speech = False
        self._rate = 0
        self._pending = b""
        self._speech_samples = 0
        self._silence_samples = 0

    def feed(self, pcm: bytes, sample_rate: int = 16_000) -> list[VadEvent]:
        """Consume PCM and return the events it produced, in order."""
        if sample_rate != self._rate:
            self._rate = sample_rate
            self._pending = b""
        frame_samples = max(1, round(sample_rate * self.frame_ms / 1000.0))
        frame_bytes = 2 * frame_samples
        data = self._pending + pcm
        n_frames = len(data) // frame_bytes
        self._pending = data[n_frames * frame_bytes :]
        if n_frames == 0:
            return []
        samples = np.frombuffer(data, dtype="<i2", count=n_frames * frame_samples)
        frames = samples.astype(np.float64).reshape(n_frames, frame_samples)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        min_speech = sample_rate * self.min_speech_ms / 1000.0
        silence_needed = sample_rate * self.silence_ms / 1000.0
        events: list[VadEvent] = []
        for level in rms.tolist():
            loud = level >= self.threshold_rms
            if not self.in_speech:
                self._speech_samples = self._speech_samples + frame_samples if loud else 0
                if loud and self._speech_samples >= min_speech:
                    self.in_speech = True
                    self._silence_samples = 0
                    events.append(VadEvent.SPEECH_START)
            elif loud:
                self._silence_samples = 0
            else:
                self._silence_samples += frame_samples
                if self._silence_samples >= silence_needed:
                    self._reset()
                    events.append(VadEvent.UTTERANCE_END)
        return events

    def force_end(self) -> bool:
        """End the utterance now (audioStreamEnd); True if speech was in progress."""
        was = self.in_speech
        self._reset()
        self._pending = b""
        return was

    def _reset(self) -> None:
        self.in_speech = False
        self._speech_samples = 0
        self._silence_samples = 0

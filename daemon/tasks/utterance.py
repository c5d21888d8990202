"""Cuts the microphone's stream into utterances for the fallback road: pure, no numpy.

The Live API finds the end of speech itself; a turn-based model needs the
utterance cut here. Energy over 20 ms frames, as the fake Live server hears
(and as the Agent's onset check measures): speech starts after `min_speech`
of loud frames and ends after `silence` of quiet ones. A peripheral with its
own voice detector (the kiosk's VAD gate) sends no silence after speech and
says when it ended: `end_now` cuts there. Time is counted in samples, so a
source faster than real time is cut the same way. A little audio before the
onset is kept (`pre_roll`) so the first syllable is not clipped; an utterance
longer than `max_seconds` is cut there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from daemon.media.level import mean_square

FRAME_MS = 20


@dataclass(frozen=True)
class Utterance:
    """16-bit mono PCM of one utterance, and when its end was heard (monotonic)."""

    pcm: bytes
    rate: int
    ended_at: float

    @property
    def seconds(self) -> float:
        """Its duration."""
        return len(self.pcm) / (2 * self.rate)


class UtteranceCutter:
    """Feed chunks; get an Utterance back when one ends (see the module)."""

    def __init__(self, *, threshold_rms: float = 300.0, silence: float = 0.6,
                 min_speech: float = 0.06, pre_roll: float = 0.2,
                 max_seconds: float = 30.0, rate: int = 16_000) -> None:
        self.rate = rate
        self._frame = 2 * rate * FRAME_MS // 1000
        self._threshold = threshold_rms * threshold_rms
        self._silence_frames = max(1, round(silence * 1000 / FRAME_MS))
        self._min_frames = max(1, round(min_speech * 1000 / FRAME_MS))
        self._max_frames = max(1, round(max_seconds * 1000 / FRAME_MS))
        self._pre: deque[bytes] = deque(maxlen=max(1, round(pre_roll * 1000 / FRAME_MS)))
        self._pending = b""
        self._speech: list[bytes] = []
        self._loud_run = 0
        self._quiet_run = 0
        self.in_speech = False

    def feed(self, pcm: bytes, now: float) -> Utterance | None:
        """Consume a chunk (any length); an utterance if one ended in it."""
        data = self._pending + pcm
        whole = len(data) - len(data) % self._frame
        self._pending = data[whole:]
        done: Utterance | None = None
        for start in range(0, whole, self._frame):
            got = self._frame_in(data[start:start + self._frame], now)
            done = got or done
        return done

    def end_now(self, now: float) -> Utterance | None:
        """The peripheral's own detector heard the end: the utterance so far, if any."""
        if not self.in_speech:
            return None
        return self._cut(now, trim=0)

    def reset(self) -> None:
        """Forget everything heard (the road changed)."""
        self._pending = b""
        self._pre.clear()
        self._speech = []
        self._loud_run = self._quiet_run = 0
        self.in_speech = False

    def _frame_in(self, frame: bytes, now: float) -> Utterance | None:
        loud = mean_square(frame) >= self._threshold
        if not self.in_speech:
            self._pre.append(frame)
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run >= self._min_frames:
                self.in_speech = True
                self._speech = list(self._pre)
                self._pre.clear()
                self._quiet_run = 0
            return None
        self._speech.append(frame)
        self._quiet_run = 0 if loud else self._quiet_run + 1
        if self._quiet_run >= self._silence_frames:
            return self._cut(now, trim=self._quiet_run - 2)  # keep a short tail
        if len(self._speech) >= self._max_frames:
            return self._cut(now, trim=0)
        return None

    def _cut(self, now: float, trim: int) -> Utterance:
        frames = self._speech[: len(self._speech) - trim] if trim > 0 else self._speech
        utt = Utterance(b"".join(frames), self.rate, now)
        self._speech = []
        self._loud_run = self._quiet_run = 0
        self.in_speech = False
        return utt

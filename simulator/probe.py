"""Sequence-stamped audio: each 20 ms chunk carries its own number, so delivery
can be checked by sequence (lost, duplicated, reordered) and timed end to end."""

from __future__ import annotations

import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CHUNK_SAMPLES = 320  # 20 ms at 16 kHz
MARK = 11


def stamped_chunk(seq: int, speech: bool, samples: int = CHUNK_SAMPLES) -> bytes:
    """A tone (speech) or silence, with `seq` in the low bits of five samples.

    The stamp is tiny in amplitude, so silence stays silence for a VAD.
    """
    if speech:
        t = np.arange(samples) + seq * samples
        pcm = (np.sin(2 * np.pi * 300 * t / 16_000) * 6000).astype("<i2")
    else:
        pcm = np.zeros(samples, "<i2")
    pcm[0] = MARK
    for i in range(4):
        pcm[1 + i] = (seq >> (4 * i)) & 0xF
    return pcm.tobytes()


def stamped_wav(path: Path, schedule: Iterable[tuple[bool, float]]) -> Path:
    """A 16 kHz WAV of stamped 20 ms chunks: (speech?, seconds) after one another."""
    frames = bytearray()
    seq = 0
    for speech, seconds in schedule:
        for _ in range(round(seconds / 0.02)):
            frames += stamped_chunk(seq, speech)
            seq += 1
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16_000)
        wf.writeframes(bytes(frames))
    return path


def read_stamp(pcm: bytes) -> int | None:
    """The sequence number stamped by `stamped_chunk`, or None for audio without a stamp."""
    s = np.frombuffer(pcm[:10], "<i2")
    if len(s) < 5 or s[0] != MARK or any(not 0 <= int(v) <= 15 for v in s[1:5]):
        return None
    return sum(int(s[1 + i]) << (4 * i) for i in range(4))


def read_stamps(pcm: bytes, samples: int = CHUNK_SAMPLES) -> list[int | None]:
    """The stamps of every chunk in a message that carries several, in order."""
    step = samples * 2
    return [read_stamp(pcm[i : i + step]) for i in range(0, len(pcm), step)]

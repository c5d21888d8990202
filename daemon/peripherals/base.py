"""What every peripheral offers: media up, playback down, status on request."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from daemon.media.types import AudioChunk, VideoFrame


class MediaSink(Protocol):
    """Where a peripheral puts what it captures (the Agent)."""

    def audio(self, chunk: AudioChunk) -> None: ...

    def video(self, frame: VideoFrame) -> None: ...

    def input_paused(self) -> None:
        """The microphone stopped delivering for now (file ended, glasses gone)."""

    def backlog_seconds(self) -> float:
        """Audio not yet sent upstream; a faster-than-real-time source waits on it."""

    def user_tap(self) -> None:
        """The wearer tapped the device: a deliberate gesture (it confirms an action)."""


class Peripheral(ABC):
    kind: str = ""

    @abstractmethod
    async def run(self, sink: MediaSink) -> None:
        """Capture until cancelled; a finite source (a file) returns when it ends."""

    @abstractmethod
    def play(self, pcm: bytes, rate: int) -> None:
        """Queue model audio for the speaker; never blocks."""

    @abstractmethod
    def flush_playback(self) -> float:
        """The user interrupted: drop queued audio, return how many seconds were dropped."""

    def playback_pending(self) -> float:
        """Seconds of model audio queued but not yet played."""
        return 0.0

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind}

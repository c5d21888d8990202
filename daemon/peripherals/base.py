"""What every peripheral offers: media up, playback down, status on request."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from daemon.config import ConfigError
from daemon.errors import EdgeAgentError
from daemon.media.types import AudioChunk, VideoFrame

__all__ = ["CameraUnavailable", "MediaSink", "Peripheral", "PeripheralUnavailable"]


class MediaSink(Protocol):
    """Where a peripheral puts what it captures (the Agent)."""

    def audio(self, chunk: AudioChunk) -> None:
        """One chunk of microphone audio, as captured."""

    def video(self, frame: VideoFrame) -> None:
        """One camera frame (a JPEG), as captured."""

    def input_paused(self) -> None:
        """The microphone stopped delivering for now (file ended, glasses gone)."""

    def backlog_seconds(self) -> float:
        """Audio not yet sent upstream; a faster-than-real-time source waits on it."""

    def speech_ended(self) -> None:
        """The peripheral's own voice detector heard an utterance end and sends no
        silence after it: end the audio stream now (the input goes on)."""

    def user_tap(self) -> None:
        """The wearer tapped the device: a deliberate gesture (it confirms an action).

        Called only for a trusted device (see `Peripheral.input_trusted`).
        """


class CameraUnavailable(EdgeAgentError, RuntimeError):
    """No photo can be taken now; the message says why (no camera, switched off, ...)."""


class PeripheralUnavailable(ConfigError):
    """The configured peripheral cannot be used here; the message names the key.

    A ConfigError, so every caller that maps bad configuration to exit 2 maps this too.
    """


class Peripheral(ABC):
    """Where media comes from and where the model's voice goes."""
    kind: str = ""
    # A loudspeaker in the room that the microphone hears (a kiosk without an echo
    # canceller): the Agent gates the microphone while the model's audio plays.
    hears_own_speaker: bool = False

    @abstractmethod
    async def run(self, sink: MediaSink) -> None:
        """Capture until cancelled; a finite source (a file) returns when it ends."""

    @abstractmethod
    def play(self, pcm: bytes, rate: int) -> None:
        """Queue model audio for the speaker; never blocks."""

    def play_earcon(self, pcm: bytes, rate: int) -> None:
        """Queue a tone of the daemon's own (not the model's answer: a kiosk must not
        open its follow-up window for it); never blocks."""
        self.play(pcm, rate)

    @abstractmethod
    def flush_playback(self) -> float:
        """The user interrupted: drop queued audio, return how many seconds were dropped."""

    def playback_pending(self) -> float:
        """Seconds of model audio queued but not yet played."""
        return 0.0

    @property
    def input_trusted(self) -> bool:
        """Whether what the microphone and taps deliver now comes from the user's own device.

        A local microphone or file is the user's; glasses are trusted only while the
        connected device is the pinned one. Speech or a tap from an untrusted device
        never confirms a sensitive action.
        """
        return True

    @property
    def can_tap(self) -> bool:
        """Whether the device has a tap (a button) the user can confirm with."""
        return False

    @property
    def has_camera(self) -> bool:
        """Whether `take_photo` can ever work (the model is offered `look` only then)."""
        return False

    async def take_photo(self) -> None:
        """Ask for one photo now; it arrives later through `sink.video()`."""
        raise CameraUnavailable("this device has no camera")

    def set_camera_enabled(self, enabled: bool) -> None:  # noqa: B027 - a no-op by default
        """The user's camera switch; a device without a camera has nothing to switch."""

    def close(self) -> None:  # noqa: B027 - a no-op by default
        """Release what the constructor opened; safe to call more than once."""

    def status(self) -> dict[str, Any]:
        """What /healthz and `doctor` show about the device."""
        return {"kind": self.kind}

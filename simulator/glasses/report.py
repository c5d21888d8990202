"""What the virtual glasses report: counters for tests, events for the `sim glasses` log.

Why one object: every part of the glasses (microphone, camera, speaker, faults) adds
to the same counters and the same event stream, and a failing event callback must
never stop the device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventCallback", "GlassesStats", "Report"]

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class GlassesStats:
    """Everything the glasses did, for tests and the event log."""

    connections: int = 0
    disconnections: int = 0
    audio_frames: int = 0
    silence_frames: int = 0  # of audio_frames: sent after the WAV ended
    audio_notifications: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    malformed_sent: int = 0
    truncated: int = 0  # notifications cut to MTU - 3 (photo chunks on a small MTU)
    photos_sent: int = 0
    photo_chunks: int = 0
    photo_chunks_dropped: int = 0
    photos_skipped: int = 0  # asked for a photo while nobody was subscribed
    speaker_writes: int = 0
    speaker_bytes: int = 0
    speaker_utterances: int = 0
    speaker_decode_errors: int = 0
    speaker_overflow: int = 0  # more PCM than the length prefix announced
    speaker_record_dropped: int = 0
    taps: int = 0  # taps and talk gestures sent
    taps_skipped: int = 0  # tapped while nobody was subscribed (or not yet encrypted)
    commands: dict[str, int] = field(default_factory=dict)
    unknown_commands: int = 0
    faults_fired: list[str] = field(default_factory=list)


class Report:
    """The glasses' counters and their event callback (JSON lines under `sim glasses`)."""

    def __init__(self, on_event: EventCallback | None = None) -> None:
        self.stats = GlassesStats()
        self._on_event = on_event

    def emit(self, event: str, **data: Any) -> None:
        """Tell the callback, if any; its failure is logged, never raised."""
        if self._on_event is not None:
            try:
                self._on_event({"event": event, **data})
            except Exception:
                log.exception("event callback failed")

    def command(self, command: str) -> None:
        """A command the device understood: counted by name and told as an event."""
        self.stats.commands[command] = self.stats.commands.get(command, 0) + 1
        self.emit("command", command=command)

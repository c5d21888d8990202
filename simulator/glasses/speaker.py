"""The virtual glasses' speaker: what the daemon writes, checked, decoded and recorded.

Why check it: the omi firmware takes a 4-byte length before each utterance and counts
every write against it, so the glasses count the same way (`speaker_overflow` when a
write goes past what was announced) and a test sees exactly what the device would
play. Opus writes are decoded; the PCM is kept (bounded) in `pcm` and, if asked,
written to a WAV file whose header is patched after every write, so it stays valid
even if the process is killed.
"""

from __future__ import annotations

import contextlib
import wave
from pathlib import Path
from typing import BinaryIO, Final

from daemon.media.opus import OpusDecoder, OpusError
from daemon.media.types import SAMPLE_WIDTH
from daemon.peripherals.ble.profile import DownlinkSpec
from simulator.glasses.connection import CentralLink
from simulator.glasses.report import Report

__all__ = ["MAX_RECORD_SECONDS", "GlassesSpeaker"]

MAX_RECORD_SECONDS: Final = 600.0


class GlassesSpeaker:
    """Plays (records) what arrives on the speaker characteristic."""

    def __init__(self, downlink: DownlinkSpec, report: Report, record: Path | None) -> None:
        self.downlink = downlink
        self.report = report
        self.record_path = record
        self.pcm = bytearray()  # everything played, up to MAX_RECORD_SECONDS
        self._decoder: OpusDecoder | None = None
        self._file: BinaryIO | None = None
        self._recorder: wave.Wave_write | None = None

    def open(self) -> None:
        """Start the WAV recording, if one was asked for."""
        path = self.record_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")  # ours, so it can be flushed after every write
        rec = wave.open(self._file, "wb")  # noqa: SIM115 - lives as long as the glasses
        rec.setnchannels(1)
        rec.setsampwidth(SAMPLE_WIDTH)
        rec.setframerate(self.downlink.rate)
        self._recorder = rec

    def on_write(self, link: CentralLink, value: bytes) -> None:
        """One write to the speaker characteristic on `link`."""
        dl, stats = self.downlink, self.report.stats
        stats.speaker_writes += 1
        if dl.length_prefix == "u32le" and link.speaker_remaining in (None, 0) and len(value) == 4:
            link.speaker_remaining = int.from_bytes(value, "little")
            stats.speaker_utterances += 1
            self.report.emit("speaker_utterance", bytes=link.speaker_remaining)
            return
        if link.speaker_remaining is not None:  # the prefix counts written bytes (Opus too)
            if len(value) > link.speaker_remaining:
                stats.speaker_overflow += 1
            link.speaker_remaining = max(0, link.speaker_remaining - len(value))
        if dl.kind == "opus":
            if self._decoder is None:
                self._decoder = OpusDecoder(dl.rate)
            try:
                pcm = self._decoder.decode(value)
            except OpusError:
                stats.speaker_decode_errors += 1
                return
        else:
            pcm = value
        stats.speaker_bytes += len(pcm)
        self._record(pcm)

    def _record(self, pcm: bytes) -> None:
        limit = int(MAX_RECORD_SECONDS * self.downlink.rate) * SAMPLE_WIDTH
        if len(self.pcm) + len(pcm) > limit:
            self.report.stats.speaker_record_dropped += len(pcm)
            return
        self.pcm += pcm
        if self._recorder is not None and self._file is not None:
            self._recorder.writeframes(pcm)  # patches the header: valid even if killed
            with contextlib.suppress(Exception):
                self._file.flush()

    def close(self) -> None:
        """Finish the WAV file."""
        rec, self._recorder = self._recorder, None
        if rec is not None:
            with contextlib.suppress(Exception):
                rec.close()
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(Exception):
                file.close()  # a writer given a file object leaves it open

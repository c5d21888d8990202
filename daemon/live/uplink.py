"""What waits to go up the link: audio in order, the newest video frame, tool answers.

The same bounded buffer serves the connected and the disconnected case, so
audio captured during a reconnect is sent once, in order, when the link is
back (the Gemini Developer API keeps no replay state for us). Beyond the bound
the oldest audio is dropped, and every drop is counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from daemon.media.types import SAMPLE_WIDTH, AudioChunk, VideoFrame
from daemon.tools.calls import ToolResponse


@dataclass(frozen=True, slots=True)
class PendingAudio:
    seq: int
    chunk: AudioChunk
    enqueued_at: float


@dataclass(slots=True)
class UplinkStats:
    audio_dropped: int = 0
    video_rate_limited: int = 0
    video_superseded: int = 0


class UplinkBuffer:
    def __init__(self, max_audio_seconds: float, video_fps: float) -> None:
        self._max_bytes = int(max_audio_seconds * 16_000 * SAMPLE_WIDTH)
        self._audio: deque[PendingAudio] = deque()
        self._audio_bytes = 0
        self._seq = 0
        self._video: VideoFrame | None = None
        self._video_interval = 1.0 / video_fps
        self._last_video_at: float | None = None
        self._responses: deque[ToolResponse] = deque(maxlen=256)
        self.stream_end_pending = False
        self.stats = UplinkStats()

    # audio ----------------------------------------------------------------
    def push_audio(self, chunk: AudioChunk, now: float) -> int:
        """Queue a chunk; returns how many old chunks were dropped to make room."""
        self._seq += 1
        self._audio.append(PendingAudio(self._seq, chunk, now))
        self._audio_bytes += len(chunk.pcm)
        self.stream_end_pending = False
        dropped = 0
        while self._audio_bytes > self._max_bytes and len(self._audio) > 1:
            old = self._audio.popleft()
            self._audio_bytes -= len(old.chunk.pcm)
            dropped += 1
        self.stats.audio_dropped += dropped
        return dropped

    def peek_audio(self) -> PendingAudio | None:
        return self._audio[0] if self._audio else None

    def ack_audio(self, seq: int) -> None:
        """The chunk with this sequence number (and any older) reached the socket."""
        while self._audio and self._audio[0].seq <= seq:
            self._audio_bytes -= len(self._audio.popleft().chunk.pcm)

    @property
    def audio_seconds(self) -> float:
        return self._audio_bytes / (16_000 * SAMPLE_WIDTH)

    @property
    def audio_chunks(self) -> int:
        return len(self._audio)

    # video ----------------------------------------------------------------
    def offer_video(self, frame: VideoFrame, now: float) -> bool:
        """Keep the frame if the rate allows; only the newest unsent frame is kept."""
        if self._last_video_at is not None and now - self._last_video_at < self._video_interval:
            self.stats.video_rate_limited += 1
            return False
        if self._video is not None:
            self.stats.video_superseded += 1
        self._video = frame
        self._last_video_at = now
        return True

    def take_video(self) -> VideoFrame | None:
        frame, self._video = self._video, None
        return frame

    def restore_video(self, frame: VideoFrame) -> None:
        """A frame whose send failed goes back unless a newer one arrived meanwhile."""
        if self._video is None:
            self._video = frame

    # tool responses ---------------------------------------------------------
    def push_response(self, response: ToolResponse) -> None:
        self._responses.append(response)

    def peek_response(self) -> ToolResponse | None:
        return self._responses[0] if self._responses else None

    def pop_response(self) -> None:
        self._responses.popleft()

    def drain_responses(self) -> list[ToolResponse]:
        out = list(self._responses)
        self._responses.clear()
        return out

    def has_work(self) -> bool:
        return bool(
            self._audio or self._video is not None or self._responses or self.stream_end_pending
        )

"""What waits to go up the link: audio in order, the newest video frame, tool answers.

The same bounded buffer serves the connected and the disconnected case, so
audio captured during a reconnect is sent once, in order, when the link is
back (the Gemini Developer API keeps no replay state for us). Audio that went
out on a socket stays until a pong confirms the peer read past it: if the
peer goes silent, or stops reading, that unconfirmed tail is sent again after
the reconnect. Beyond the bound the oldest audio is dropped, and every drop is
counted: sent audio let go unconfirmed at the bound is remembered (by number)
until a pong confirms it or the connection ends, so a replay that cannot
include it counts it as lost instead of taking it as delivered.

Tool answers are not bounded by count: each one answers a call the server still
waits for, and a dropped answer leaves the model silent for good. They are
bounded by the calls the session has open instead, one answer per call id.
Like audio, a sent answer stays until a pong confirms it: an answer that
crossed a closing socket is sent again when the session is resumed.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from daemon.live.calls import ToolResponse
from daemon.media.types import SAMPLE_WIDTH, AudioChunk, VideoFrame


@dataclass(frozen=True, slots=True)
class PendingAudio:
    """A chunk waiting to go up (or sent, until confirmed), numbered in order."""

    seq: int
    chunk: AudioChunk
    enqueued_at: float


class Requeued(NamedTuple):
    """What became of the unconfirmed audio when it had to be sent again."""

    resent: int  # chunks back in the queue, in order
    lost: int  # chunks beyond live.replay_seconds: let go unconfirmed, not sent again
    withheld: int = 0  # heard before the user muted: never sent again


@dataclass(slots=True)
class UplinkStats:
    """What the buffer dropped or skipped, counted since start."""

    audio_dropped: int = 0
    video_rate_limited: int = 0
    video_superseded: int = 0


class UplinkBuffer:
    """Audio, the newest video frame and tool answers, until the peer has them."""

    def __init__(self, max_audio_seconds: float, video_fps: float) -> None:
        self._max_bytes = int(max_audio_seconds * 16_000 * SAMPLE_WIDTH)
        self._pending: deque[PendingAudio] = deque()
        self._sent: deque[PendingAudio] = deque()  # on the socket, not yet confirmed
        self._released: deque[int] = deque()  # sent, let go unconfirmed at the bound
        self._audio_bytes = 0
        self._pending_bytes = 0
        self._seq = 0
        self._withheld_through = 0  # chunks up to this number were heard before a mute
        self._video: VideoFrame | None = None
        self._video_withdrawn = False  # since the last take: a failed send is not restored
        self._video_interval = 1.0 / video_fps
        self._next_video_at: float | None = None
        self._responses: OrderedDict[str, ToolResponse] = OrderedDict()  # by call id
        # sent, not yet confirmed: call id -> (send number, answer), in send order
        self._sent_responses: OrderedDict[str, tuple[int, ToolResponse]] = OrderedDict()
        self._response_seq = 0
        self.stream_end_pending = False
        self.stats = UplinkStats()

    # audio ----------------------------------------------------------------
    def push_audio(self, chunk: AudioChunk, now: float) -> int:
        """Queue a chunk; returns how many old chunks were dropped to make room."""
        self._seq += 1
        self._pending.append(PendingAudio(self._seq, chunk, now))
        self._audio_bytes += len(chunk.pcm)
        self._pending_bytes += len(chunk.pcm)
        self.stream_end_pending = False
        dropped = 0
        while self._pending_bytes > self._max_bytes and len(self._pending) > 1:
            old = self._pending.popleft()
            self._pending_bytes -= len(old.chunk.pcm)
            self._audio_bytes -= len(old.chunk.pcm)
            dropped += 1
        self.stats.audio_dropped += dropped
        return dropped

    def peek_audio(self) -> PendingAudio | None:
        """The oldest audio not yet sent, if any."""
        return self._pending[0] if self._pending else None

    def peek_batch(self, seconds: float) -> list[PendingAudio]:
        """The oldest pending chunks, in order, until they hold `seconds` of audio."""
        out: list[PendingAudio] = []
        have = 0.0
        for item in self._pending:
            out.append(item)
            have += item.chunk.duration
            if have >= seconds - 1e-9:
                break
        return out

    def mark_sent(self, seq: int) -> None:
        """The chunk reached the socket; it stays until the peer confirms it."""
        while self._pending and self._pending[0].seq <= seq:
            item = self._pending.popleft()
            self._pending_bytes -= len(item.chunk.pcm)
            self._sent.append(item)
        # Keep at most the bound for resending; older sent audio is let go (its
        # number kept until a pong says whether the peer read it).
        while self._audio_bytes - self._pending_bytes > self._max_bytes:
            item = self._sent.popleft()
            self._audio_bytes -= len(item.chunk.pcm)
            self._released.append(item.seq)

    def confirm(self, seq: int) -> None:
        """The peer has read everything up to this chunk (a pong came back after it)."""
        while self._sent and self._sent[0].seq <= seq:
            self._audio_bytes -= len(self._sent.popleft().chunk.pcm)
        while self._released and self._released[0] <= seq:
            self._released.popleft()

    def confirm_all(self) -> int:
        """Take every sent chunk as read; returns how many were unconfirmed (including
        those let go at the bound)."""
        n = len(self._sent) + len(self._released)
        if self._sent:
            self.confirm(self._sent[-1].seq)
        self._released.clear()
        return n

    def requeue_unconfirmed(self) -> Requeued:
        """The peer did not read what it never confirmed: that goes again, in order,
        within the bound; what did not fit (let go at the bound, or the oldest
        beyond it now) is lost and counted in `stats.audio_dropped`."""
        withheld = 0
        while self._sent and self._sent[0].seq <= self._withheld_through:
            self._audio_bytes -= len(self._sent.popleft().chunk.pcm)
            withheld += 1
        resent = len(self._sent)
        lost = len(self._released)
        self._released.clear()
        self._pending_bytes += sum(len(p.chunk.pcm) for p in self._sent)
        self._pending.extendleft(reversed(self._sent))
        self._sent.clear()
        while self._pending_bytes > self._max_bytes and len(self._pending) > 1:
            old = self._pending.popleft()
            self._pending_bytes -= len(old.chunk.pcm)
            self._audio_bytes -= len(old.chunk.pcm)
            lost += 1
            resent = max(0, resent - 1)  # the requeued chunks are the oldest
        self.stats.audio_dropped += lost
        return Requeued(resent, lost, withheld)

    def withdraw_audio(self) -> int:
        """Forget the audio not yet sent (the user muted: it never leaves the device);
        returns how many chunks. What is on a socket unconfirmed has left already."""
        n = len(self._pending)
        self._audio_bytes -= self._pending_bytes
        self._pending_bytes = 0
        self._pending.clear()
        self._withheld_through = self._seq  # nor is what is unconfirmed ever sent again
        return n

    @property
    def last_sent_seq(self) -> int:
        """The number of the newest chunk sent: a ping's mark for confirm."""
        return self._sent[-1].seq if self._sent else 0

    @property
    def audio_seconds(self) -> float:
        """Audio not known to have reached the peer (pending plus unconfirmed)."""
        return self._audio_bytes / (16_000 * SAMPLE_WIDTH)

    @property
    def pending_seconds(self) -> float:
        """Audio not yet sent."""
        return self._pending_bytes / (16_000 * SAMPLE_WIDTH)

    @property
    def audio_chunks(self) -> int:
        """Chunks not yet sent."""
        return len(self._pending)

    # video ----------------------------------------------------------------
    def offer_video(self, frame: VideoFrame, now: float, *, force: bool = False) -> bool:
        """Keep the frame if the rate allows; only the newest unsent frame is kept.

        Frames are accepted on a schedule of one per interval, with a tenth of an
        interval of slack: a camera that delivers every second, give or take a
        few milliseconds, is not cut to one frame every two seconds, and the
        average stays within the rate.
        """
        slack = 0.1 * self._video_interval
        if not force and self._next_video_at is not None and now < self._next_video_at - slack:
            self.stats.video_rate_limited += 1
            return False
        if self._video is not None:
            self.stats.video_superseded += 1
        self._video = frame
        base = now if self._next_video_at is None else max(now, self._next_video_at)
        self._next_video_at = base + self._video_interval
        return True

    def take_video(self) -> VideoFrame | None:
        """The frame to send now, if one waits (it leaves the buffer)."""
        frame, self._video = self._video, None
        self._video_withdrawn = False
        return frame

    def restore_video(self, frame: VideoFrame) -> None:
        """A frame whose send failed goes back unless a newer one arrived meanwhile,
        or the camera was switched off while it was being sent."""
        if self._video is None and not self._video_withdrawn:
            self._video = frame

    def withdraw_video(self) -> int:
        """Forget the frame waiting to go up (the user switched the camera off), and
        one being sent now if its send fails; returns 1 if a frame waited, else 0."""
        frame, self._video = self._video, None
        self._video_withdrawn = True
        return int(frame is not None)

    # tool responses ---------------------------------------------------------
    def push_response(self, response: ToolResponse) -> bool:
        """Queue an answer; False (nothing queued) if one for this call already waits
        or is on the socket unconfirmed."""
        if response.id in self._responses or response.id in self._sent_responses:
            return False
        self._responses[response.id] = response
        return True

    def peek_response(self) -> ToolResponse | None:
        """The answer to send next (unconfirmed ones requeued first), if any."""
        return next(iter(self._responses.values()), None)

    def pop_response(self, response: ToolResponse) -> None:
        """Remove this answer for good, unless it was purged or replaced meanwhile."""
        if self._responses.get(response.id) is response:
            del self._responses[response.id]

    def response_sent(self, response: ToolResponse) -> None:
        """The answer reached the socket: it is kept until a pong confirms it.

        One purged while it was being sent (the model cancelled the call) is not
        kept: nobody waits for it any more.
        """
        if self._responses.get(response.id) is not response:
            return
        del self._responses[response.id]
        self._response_seq += 1
        self._sent_responses[response.id] = (self._response_seq, response)

    @property
    def last_response_seq(self) -> int:
        """The send number of the newest answer sent: a ping's mark for confirm_responses."""
        return self._response_seq

    @property
    def unconfirmed_responses(self) -> int:
        """Answers on the socket that no pong has confirmed yet."""
        return len(self._sent_responses)

    def unconfirmed_response_ids(self) -> set[str]:
        """The calls whose answers are on the socket, unconfirmed."""
        return set(self._sent_responses)

    def confirm_responses(self, seq: int) -> int:
        """The peer has read every answer sent up to this send number; how many that was."""
        confirmed = 0
        while self._sent_responses:
            call_id, (n, _) = next(iter(self._sent_responses.items()))
            if n > seq:
                break
            del self._sent_responses[call_id]
            confirmed += 1
        return confirmed

    def confirm_all_responses(self) -> int:
        """Take every sent answer as read; returns how many were unconfirmed."""
        n = len(self._sent_responses)
        self._sent_responses.clear()
        return n

    def requeue_unconfirmed_responses(self) -> list[ToolResponse]:
        """The connection ended before a pong: the unconfirmed answers go first again,
        in the order they were sent."""
        again = [r for _, r in self._sent_responses.values()]
        self._sent_responses.clear()
        queued = self._responses
        self._responses = OrderedDict((r.id, r) for r in again)
        self._responses.update(queued)
        return again

    def replace_response(self, response: ToolResponse) -> None:
        """Put another answer for the same call in the queued one's place."""
        if response.id in self._responses:
            self._responses[response.id] = response

    def purge_responses(self, ids: Iterable[str]) -> list[ToolResponse]:
        """Take out the answers to these calls (the model cancelled them); returns the
        queued ones. Sent ones are forgotten too: they must not be sent again."""
        out = []
        for i in ids:
            self._sent_responses.pop(i, None)
            if (r := self._responses.pop(i, None)) is not None:
                out.append(r)
        return out

    def drain_responses(self) -> list[ToolResponse]:
        """Every answer not known to have arrived (unconfirmed first, then queued)."""
        out = [r for _, r in self._sent_responses.values()]
        out += self._responses.values()
        self._sent_responses.clear()
        self._responses.clear()
        return out

    def has_work(self) -> bool:
        """True while anything waits to be sent."""
        return bool(
            self._pending or self._video is not None or self._responses or self.stream_end_pending
        )

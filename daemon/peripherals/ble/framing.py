"""Wire framing of wearable notifications: pure, bounded, never raising on bad input.

BLE notifications arrive in order but can be lost, repeated after a reconnect, cut
short by a small MTU, or restart from zero when the device reboots. Every decoder here
turns raw notification bytes into whole units (codec frames, JPEG photos), classifies
everything else into counters, and keeps at most a fixed number of bytes buffered. No
method raises on any input bytes; the transport code stays a thin loop around them.

Layouts (see device_profiles/README.md):

* omi audio: ``[u16 LE packet id][u8 fragment index][payload]``. Current omi firmware
  gives every notification the next packet id and numbers the fragments of one codec
  frame 0, 1, 2...; older code reused one id for all fragments. Both are accepted.
* omi photo: ``[u16 LE chunk index][<=200 B data]``, chunk 0 first (omiGlass puts an
  orientation byte before its data), a bare ``FF FF`` ends the photo.
* Brilliant Labs Frame: ``[data prefix][flag][payload]``; flags for audio (non-final /
  final) and photo (chunk / final chunk) come from the device profile.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

U16: Final = 0x10000
OMI_AUDIO_HEADER: Final = 3
OMI_PHOTO_HEADER: Final = 2
PHOTO_END_MARKER: Final = 0xFFFF
OMI_PHOTO_CHUNK_BYTES: Final = 200
DEFAULT_MAX_PHOTO_BYTES: Final = 512 * 1024


# ===================================================================== audio (omi)
class PacketKind(enum.Enum):
    """How one audio notification relates to the one before it."""

    FIRST = "first"  # first packet since start/reset
    CONTIGUOUS = "contiguous"  # next packet id (65535 -> 0 included)
    GAP = "gap"  # `missing` packet ids skipped
    DUPLICATE = "duplicate"  # same id again, or a few ids back: ignored
    RESET = "reset"  # large backwards (or implausibly large forward) jump: device restart
    MALFORMED = "malformed"  # too short to carry a header and a payload


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One reassembled codec frame (e.g. one Opus packet)."""

    packet_id: int  # id of the frame's first fragment
    payload: bytes
    lost_before: int = 0  # estimated frames lost right before this one (for PLC)
    discontinuity: bool = False  # the stream restarted before this frame: reset codec state


@dataclass(frozen=True, slots=True)
class AudioPush:
    """What one notification did: its classification and any frames it completed."""

    kind: PacketKind
    packet_id: int | None
    missing: int = 0
    frames: tuple[AudioFrame, ...] = ()


@dataclass(slots=True)
class AudioTrackerStats:
    """Plain counters for /metrics (one per classification plus reassembly outcomes)."""

    notifications: int = 0
    first: int = 0
    contiguous: int = 0
    gaps: int = 0
    missing_packets: int = 0
    duplicates: int = 0
    resets: int = 0
    malformed: int = 0
    frames: int = 0
    frames_dropped: int = 0  # incomplete frames thrown away (lost fragment, oversize)
    orphan_fragments: int = 0  # continuation fragments with no frame to join
    oversize_frames: int = 0


class AudioPacketTracker:
    """Continuity over the u16 packet id plus reassembly of fragmented frames.

    A frame is complete when the next fragment-0 notification arrives, when `flush()`
    is called, or at once when its fragment is shorter than `fragment_payload_max`
    (pass the largest payload a fragment can carry at the current MTU, e.g. MTU - 6;
    a smaller value is safe, a larger one is not). Without that hint the tracker assumes
    an unfragmented stream and emits each fragment 0 immediately until it first sees a
    fragment index above 0; from then on it waits for the next frame (one frame late).

    Continuity: the next id (65535 -> 0 included) is contiguous; up to `max_gap` ids
    ahead is a gap; up to `reorder_window` ids back is a stale duplicate (ignored) unless
    three such packets count up in a row, which is a device restart whose first packets
    were lost. Id 0 is no exception: a late or repeated 0 shortly after the wrap (or
    after a start) is a stale duplicate, not a restart. Anything else - a jump back to 0
    or a small id from far away, far back or far ahead - is a reset, and
    the next frame carries `discontinuity` so the codec starts afresh instead of
    concealing. Loss estimates (`AudioFrame.lost_before`) are in frames: missing packet
    ids divided by the mean fragments per frame seen so far, plus any incomplete frame
    dropped.
    """

    STALE_RUN_RESET: Final = 3

    def __init__(
        self,
        *,
        fragment_payload_max: int | None = None,
        max_fragments: int = 16,
        max_frame_bytes: int = 4096,
        max_gap: int = 1024,
        reorder_window: int = 8,
    ) -> None:
        self.fragment_payload_max = fragment_payload_max
        self.max_fragments = max(1, max_fragments)
        self.max_frame_bytes = max(1, max_frame_bytes)
        self.max_gap = max(1, max_gap)
        self.reorder_window = max(0, reorder_window)
        self.stats = AudioTrackerStats()
        self._last_id: int | None = None
        self._last_idx = 0
        self._fragmented = False
        self._parts: list[bytes] | None = None
        self._pending_id = 0
        self._pending_idx = 0
        self._pending_bytes = 0
        self._lost_carry = 0
        self._disc_carry = False
        self._tally_frames = 0
        self._tally_fragments = 0
        self._stale_id = -1
        self._stale_run = 0

    # ------------------------------------------------------------------ state
    @property
    def pending_bytes(self) -> int:
        """Bytes held for an incomplete frame (never above `max_frame_bytes`)."""
        return self._pending_bytes

    def reset(self) -> None:
        """Forget the stream (new connection); the next packet is FIRST."""
        self._stale_id, self._stale_run = -1, 0
        self._last_id = None
        self._last_idx = 0
        self._fragmented = False
        self._parts = None
        self._pending_bytes = 0
        self._lost_carry = 0
        self._disc_carry = False

    def flush(self) -> tuple[AudioFrame, ...]:
        """Emit a buffered frame now (stream idle or ending)."""
        if self._parts is None:
            return ()
        return (self._complete(),)

    # -------------------------------------------------------------- internals
    def _classify(self, pid: int, idx: int) -> tuple[PacketKind, int]:
        if self._last_id is None:
            return PacketKind.FIRST, 0
        d = (pid - self._last_id) % U16
        if d == 0:
            if idx != 0 and idx == self._last_idx + 1:
                return PacketKind.CONTIGUOUS, 0  # same-id fragmentation scheme
            return PacketKind.DUPLICATE, 0
        if d == 1:
            return PacketKind.CONTIGUOUS, 0
        if U16 - d <= self.reorder_window:
            # A few ids back (0 too, late or repeated just after 65535 -> 0 or a start):
            # a stale repeat - unless such packets keep counting up on their own, which
            # is a device that restarted and lost its first packets.
            run = self._stale_run + 1 if self._stale_id == (pid - 1) % U16 else 1
            self._stale_id, self._stale_run = pid, run
            if run >= self.STALE_RUN_RESET:
                return PacketKind.RESET, 0
            return PacketKind.DUPLICATE, 0
        if d - 1 <= self.max_gap:
            return PacketKind.GAP, d - 1
        return PacketKind.RESET, 0

    def _drop_pending(self) -> int:
        if self._parts is None:
            return 0
        self._parts = None
        self._pending_bytes = 0
        self.stats.frames_dropped += 1
        return 1

    def _estimate_frames(self, missing: int) -> int:
        if self._tally_frames == 0:
            return missing
        # round(missing / mean fragments per frame), in integers
        return (2 * missing * self._tally_frames + self._tally_fragments) // (
            2 * self._tally_fragments
        )

    def _complete(self) -> AudioFrame:
        parts = self._parts or []
        frame = AudioFrame(
            packet_id=self._pending_id,
            payload=b"".join(parts),
            lost_before=self._lost_carry,
            discontinuity=self._disc_carry,
        )
        self._tally_frames += 1
        self._tally_fragments += len(parts)
        if self._tally_frames >= 4096:  # keep a recent mean and bounded integers
            self._tally_frames //= 2
            self._tally_fragments = max(self._tally_frames, self._tally_fragments // 2)
        self._parts = None
        self._pending_bytes = 0
        self._lost_carry = 0
        self._disc_carry = False
        self.stats.frames += 1
        return frame

    def _oversize(self, parts: int, size: int) -> bool:
        if parts <= self.max_fragments and size <= self.max_frame_bytes:
            return False
        self._drop_pending()
        self.stats.oversize_frames += 1
        self._lost_carry += 1
        return True

    def _account(self, kind: PacketKind, missing: int) -> None:
        """Count a packet that is not a duplicate; a gap or a reset drops the frame in progress."""
        stats = self.stats
        if kind is PacketKind.FIRST:
            stats.first += 1
        elif kind is PacketKind.CONTIGUOUS:
            stats.contiguous += 1
        elif kind is PacketKind.GAP:
            stats.gaps += 1
            stats.missing_packets += missing
            dropped = self._drop_pending()
            self._lost_carry += max(1, dropped + self._estimate_frames(missing))
        else:  # RESET
            stats.resets += 1
            self._drop_pending()
            self._lost_carry = 0
            self._disc_carry = True

    def _buffer(self, pid: int, idx: int, payload: bytes, out: list[AudioFrame]) -> bool:
        """Add the payload to the frame in progress; False when it was dropped instead.

        A first fragment (`idx` 0) completes the buffered frame into `out` and starts anew.
        """
        if idx == 0:
            if self._parts is not None:
                out.append(self._complete())
            self._parts = [payload]
            self._pending_id, self._pending_idx = pid, 0
            self._pending_bytes = len(payload)
            return not self._oversize(1, len(payload))
        self._fragmented = True
        if self._parts is not None and idx == self._pending_idx + 1:
            self._parts.append(payload)
            self._pending_idx = idx
            self._pending_bytes += len(payload)
            return not self._oversize(len(self._parts), self._pending_bytes)
        self.stats.orphan_fragments += 1
        if self._drop_pending():  # a fragment of the buffered frame went missing
            self._lost_carry += 1
        return False

    # ----------------------------------------------------------------- public
    def push(self, notification: bytes) -> AudioPush:
        """Classify one notification and return any frames it completed."""
        self.stats.notifications += 1
        if len(notification) <= OMI_AUDIO_HEADER:
            self.stats.malformed += 1
            return AudioPush(PacketKind.MALFORMED, None)
        pid = notification[0] | (notification[1] << 8)
        idx = notification[2]
        payload = bytes(notification[OMI_AUDIO_HEADER:])

        kind, missing = self._classify(pid, idx)
        if kind is not PacketKind.DUPLICATE:
            self._stale_id, self._stale_run = -1, 0
        if kind is PacketKind.DUPLICATE:
            self.stats.duplicates += 1
            return AudioPush(kind, pid)
        self._account(kind, missing)
        self._last_id, self._last_idx = pid, idx

        out: list[AudioFrame] = []
        if not self._buffer(pid, idx, payload, out):
            return AudioPush(kind, pid, missing, tuple(out))
        hint = self.fragment_payload_max
        if hint is not None:
            if len(payload) < hint:
                out.append(self._complete())
        elif idx == 0 and not self._fragmented:
            out.append(self._complete())
        return AudioPush(kind, pid, missing, tuple(out))


def omi_audio_notifications(
    packet_id: int, frame: bytes, max_payload: int
) -> tuple[list[bytes], int]:
    """Split one codec frame like omi firmware does; returns notifications and next id.

    Every notification takes the next packet id; fragments are numbered from 0. Used by
    the simulator and the tests (the daemon only decodes).
    """
    size = max(1, max_payload)
    chunks = [frame[i : i + size] for i in range(0, len(frame), size)] or [b""]
    out: list[bytes] = []
    for index, chunk in enumerate(chunks[:256]):
        pid = packet_id % U16
        out.append(bytes((pid & 0xFF, pid >> 8, index)) + chunk)
        packet_id += 1
    return out, packet_id % U16


# ========================================================================= photos
@dataclass(frozen=True, slots=True)
class Photo:
    """A complete JPEG and the orientation code the device sent with it (0 if none)."""

    jpeg: bytes
    orientation: int = 0  # omiGlass: 0/1/2/3 = rotate 0/90/180/270 degrees

    @property
    def rotation_degrees(self) -> int:
        """The orientation byte as degrees (0 for unknown values)."""
        return self.orientation * 90 if 0 <= self.orientation <= 3 else 0


_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _skip_entropy_data(b: bytes, i: int) -> int:
    """Index of the next real marker after entropy-coded data at `i`, or -1."""
    n = len(b)
    while True:
        j = b.find(b"\xff", i)
        if j < 0:
            return -1
        k = j + 1
        while k < n and b[k] == 0xFF:  # fill bytes
            k += 1
        if k >= n:
            return -1
        if b[k] == 0x00 or 0xD0 <= b[k] <= 0xD7:  # stuffed 0xFF or restart marker
            i = k + 1
            continue
        return j


def _jpeg_structure_ok(b: bytes) -> bool:
    n = len(b)
    if n < 4 or b[0] != 0xFF or b[1] != 0xD8 or b[-2] != 0xFF or b[-1] != 0xD9:
        return False
    i, seen_sof, seen_sos = 2, False, False
    while True:
        marker, i = _read_marker(b, i)
        if marker < 0:
            return False
        if marker == 0xD9:  # EOI: must be the very end, after at least one scan
            return seen_sos and i == n
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # stand-alone markers
        if marker in (0x00, 0xD8):
            return False
        i = _skip_segment(b, i)
        if i < 0:
            return False
        if marker in _SOF_MARKERS:
            seen_sof = True
        elif marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            if not seen_sof:
                return False
            seen_sos = True
            i = _skip_entropy_data(b, i)
            if i < 0:
                return False


def _read_marker(b: bytes, i: int) -> tuple[int, int]:
    """The marker at `i` (after any fill bytes) and the index past it; -1 when none is there."""
    n = len(b)
    if i >= n or b[i] != 0xFF:
        return -1, i
    while i < n and b[i] == 0xFF:  # fill bytes
        i += 1
    if i >= n:
        return -1, i
    return b[i], i + 1


def _skip_segment(b: bytes, i: int) -> int:
    """Index past the marker segment whose length field is at `i`, or -1 if it overruns."""
    n = len(b)
    if i + 2 > n:
        return -1
    seglen = (b[i] << 8) | b[i + 1]
    if seglen < 2 or i + seglen > n:
        return -1
    return i + seglen


def complete_jpeg(data: bytes) -> bytes | None:
    """`data` as a whole JPEG (trailing zero padding trimmed), or None if it is not one.

    Whole means: SOI first, well-formed marker segments, a frame header before the first
    scan, entropy data with no stray markers, and one EOI, at the very end. Pixel data
    is not decoded.
    """
    end = len(data)
    while end and data[end - 1] == 0:
        end -= 1
    jpeg = data[:end] if end != len(data) else data
    return bytes(jpeg) if _jpeg_structure_ok(jpeg) else None


@dataclass(slots=True)
class PhotoStats:
    """omi photo reassembly counters (cumulative)."""
    notifications: int = 0
    chunks: int = 0
    photos: int = 0
    malformed: int = 0  # shorter than a chunk index, or chunk 0 without its orientation
    restarts: int = 0  # chunk 0 while a photo was in progress: old one dropped
    out_of_order: int = 0  # unexpected chunk index (missing or repeated): photo dropped
    orphan_chunks: int = 0  # chunks with no photo in progress
    bad_length: int = 0  # a chunk of the wrong size (cut short by the MTU?): photo dropped
    oversize: int = 0
    not_jpeg: int = 0
    empty_end: int = 0  # end marker with no photo in progress


class PhotoAssembler:
    """omi photo chunks to whole JPEGs; anything doubtful is dropped and counted.

    Firmware fills every chunk but the last with exactly `chunk_bytes` bytes after the
    index (chunk 0 counts its orientation byte), so a notification cut short - e.g. by a
    too-small MTU - shows up as a wrong-sized chunk and drops the photo instead of
    yielding a JPEG with a hole in it. With `chunk_bytes=None` chunk 0 sets the size.
    """

    def __init__(
        self,
        *,
        orientation_byte: bool = False,
        max_bytes: int = DEFAULT_MAX_PHOTO_BYTES,
        chunk_bytes: int | None = OMI_PHOTO_CHUNK_BYTES,
    ) -> None:
        self.orientation_byte = orientation_byte
        self.max_bytes = max(1, max_bytes)
        self.chunk_bytes = chunk_bytes if chunk_bytes and chunk_bytes > 0 else None
        self.stats = PhotoStats()
        self._buf: bytearray | None = None
        self._expected = 0
        self._orientation = 0
        self._chunk_len = 0
        self._short = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the photo in progress."""
        return 0 if self._buf is None else len(self._buf)

    @property
    def in_progress(self) -> bool:
        """Whether a photo has begun and not yet ended."""
        return self._buf is not None

    def reset(self) -> None:
        """Drop a photo in progress (disconnect)."""
        self._buf = None
        self._expected = 0
        self._orientation = 0
        self._chunk_len = 0
        self._short = False

    def _append(self, data: bytes) -> None:
        assert self._buf is not None
        if len(self._buf) + len(data) > self.max_bytes:
            self.stats.oversize += 1
            self.reset()
            return
        self._buf += data

    def _end(self) -> Photo | None:
        """The end marker: the photo in progress, if it is a whole JPEG."""
        stats = self.stats
        if self._buf is None:
            stats.empty_end += 1
            return None
        data, orientation = bytes(self._buf), self._orientation
        self.reset()
        jpeg = complete_jpeg(data)
        if jpeg is None:
            stats.not_jpeg += 1
            return None
        stats.photos += 1
        return Photo(jpeg, orientation)

    def _first_chunk(self, data: bytes, size: int) -> None:
        """Chunk 0 starts a photo (dropping one in progress); `size` sets the chunk size."""
        stats = self.stats
        if self._buf is not None:
            stats.restarts += 1
        self.reset()
        if self.orientation_byte:
            if not data:
                stats.malformed += 1
                return
            self._orientation, data = data[0], data[1:]
        if self.chunk_bytes is not None and size > self.chunk_bytes:
            stats.bad_length += 1
            return
        self._buf = bytearray()
        self._expected = 1
        self._chunk_len = self.chunk_bytes or size
        self._short = size < self._chunk_len
        self._append(data)

    def push(self, notification: bytes) -> Photo | None:
        """Feed one notification; returns a Photo when an end marker completes one."""
        stats = self.stats
        stats.notifications += 1
        if len(notification) < OMI_PHOTO_HEADER:
            stats.malformed += 1
            return None
        index = notification[0] | (notification[1] << 8)
        if index == PHOTO_END_MARKER:
            return self._end()
        stats.chunks += 1
        data = bytes(notification[OMI_PHOTO_HEADER:])
        if index == 0:
            self._first_chunk(data, len(notification) - OMI_PHOTO_HEADER)
        elif self._buf is None:
            stats.orphan_chunks += 1
        elif index == self._expected:
            size = len(notification) - OMI_PHOTO_HEADER
            if self._short or size > self._chunk_len:
                stats.bad_length += 1
                self.reset()
                return None
            self._short = size < self._chunk_len
            self._expected += 1
            self._append(data)
        else:
            stats.out_of_order += 1
            self.reset()
        return None


def omi_photo_chunks(
    jpeg: bytes, orientation: int | None = None, chunk_size: int = OMI_PHOTO_CHUNK_BYTES
) -> list[bytes]:
    """Chunk a photo like omi/omiGlass firmware, ending with the FF FF marker."""
    size = max(2, chunk_size)
    out: list[bytes] = []
    offset, index = 0, 0
    while offset < len(jpeg) or index == 0:
        if index == 0 and orientation is not None:
            take = size - 1
            body = bytes((orientation & 0xFF,)) + jpeg[offset : offset + take]
        else:
            take = size
            body = jpeg[offset : offset + take]
        out.append(bytes((index & 0xFF, (index >> 8) & 0xFF)) + body)
        offset += take
        index += 1
    out.append(b"\xff\xff")
    return out


# =================================================== Brilliant Labs Frame messages
@dataclass(frozen=True, slots=True)
class FrameFlags:
    """Frame message-layer bytes: data prefix and per-message flags (from the profile).

    `tap` (None: the app sends none) is edge-agent's own convention for its companion
    Lua app: a data message with this flag means the wearer tapped the glasses; `talk`
    likewise the talk gesture (push-to-talk), which must never read as a tap.
    """

    data_prefix: int = 0x01
    audio: int = 0x05
    audio_final: int = 0x06
    photo: int = 0x07
    photo_final: int = 0x08
    tap: int | None = None
    talk: int | None = None

    def __post_init__(self) -> None:
        flags: tuple[int, ...] = (self.audio, self.audio_final, self.photo, self.photo_final)
        flags += tuple(f for f in (self.tap, self.talk) if f is not None)
        if any(not 0 <= v <= 0xFF for v in (self.data_prefix, *flags)):
            raise ValueError("frame flags must be byte values 0..255")
        if len(set(flags)) != len(flags):
            raise ValueError("frame audio/photo/tap/talk flags must be distinct")


@dataclass(frozen=True, slots=True)
class FrameAudio:
    """Raw microphone bytes from one Frame data message; `final` ends the recording."""

    pcm: bytes
    final: bool = False


@dataclass(frozen=True, slots=True)
class FrameTap:
    """The wearer tapped the glasses (a data message with the profile's tap flag)."""


@dataclass(frozen=True, slots=True)
class FrameTalk:
    """The wearer made the talk gesture (a data message with the profile's talk flag)."""


FrameEvent = FrameAudio | Photo | FrameTap | FrameTalk


@dataclass(slots=True)
class FrameStats:
    """Frame message-layer counters (cumulative)."""
    notifications: int = 0
    non_data: int = 0  # not a data message (e.g. Lua print output): ignored
    malformed: int = 0
    unknown_flag: int = 0
    audio_chunks: int = 0
    audio_finals: int = 0
    photo_chunks: int = 0
    photos: int = 0
    oversize: int = 0
    not_jpeg: int = 0
    taps: int = 0
    talks: int = 0


class FrameMessageDecoder:
    """Frame->host notifications to audio chunks and whole photos."""

    def __init__(
        self, flags: FrameFlags | None = None, *, max_photo_bytes: int = DEFAULT_MAX_PHOTO_BYTES
    ) -> None:
        self.flags = flags or FrameFlags()
        self.max_photo_bytes = max(1, max_photo_bytes)
        self.stats = FrameStats()
        self._photo = bytearray()
        self._discarding = False  # photo overflowed: skip chunks until its final one

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the photo in progress."""
        return len(self._photo)

    def reset(self) -> None:
        """Drop a photo in progress (disconnect)."""
        self._photo = bytearray()
        self._discarding = False

    def _add_photo(self, data: bytes) -> None:
        if self._discarding:
            return
        if len(self._photo) + len(data) > self.max_photo_bytes:
            self.stats.oversize += 1
            self._photo = bytearray()
            self._discarding = True
            return
        self._photo += data

    def push(self, notification: bytes) -> FrameEvent | None:
        """Feed one notification; returns audio bytes, a completed photo or a tap."""
        stats, flags = self.stats, self.flags
        stats.notifications += 1
        if not notification:
            stats.malformed += 1
            return None
        if notification[0] != flags.data_prefix:
            stats.non_data += 1
            return None
        if len(notification) < 2:
            stats.malformed += 1
            return None
        flag, body = notification[1], bytes(notification[2:])
        if flag == flags.audio:
            stats.audio_chunks += 1
            return FrameAudio(body, False) if body else None
        if flag == flags.audio_final:
            stats.audio_finals += 1
            return FrameAudio(body, True)
        if flag == flags.photo:
            stats.photo_chunks += 1
            self._add_photo(body)
            return None
        if flag == flags.photo_final:
            stats.photo_chunks += 1
            self._add_photo(body)
            discarded = self._discarding
            data = bytes(self._photo)
            self.reset()
            if discarded:
                return None
            jpeg = complete_jpeg(data)
            if jpeg is None:
                stats.not_jpeg += 1
                return None
            stats.photos += 1
            return Photo(jpeg)
        if flag == flags.tap:
            stats.taps += 1
            return FrameTap()
        if flag == flags.talk:
            stats.talks += 1
            return FrameTalk()
        stats.unknown_flag += 1
        return None


def frame_tap_message(flags: FrameFlags) -> bytes:
    """The data message the companion app sends for a tap (simulator and tests)."""
    if flags.tap is None:
        raise ValueError("this Frame profile has no tap flag")
    return bytes((flags.data_prefix, flags.tap))


def frame_talk_message(flags: FrameFlags) -> bytes:
    """The data message the companion app sends for the talk gesture (simulator and tests)."""
    if flags.talk is None:
        raise ValueError("this Frame profile has no talk flag")
    return bytes((flags.data_prefix, flags.talk))


def frame_data_messages(
    flags: FrameFlags,
    kind: Literal["audio", "photo"],
    data: bytes,
    max_payload: int,
    *,
    final: bool = True,
) -> list[bytes]:
    """Split `data` into Frame data messages (simulator and tests).

    The last message carries the final flag when `final`; `max_payload` counts the
    bytes after the two-byte prefix+flag header.
    """
    size = max(1, max_payload)
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    normal = flags.audio if kind == "audio" else flags.photo
    last = flags.audio_final if kind == "audio" else flags.photo_final
    out = []
    for i, chunk in enumerate(chunks):
        flag = last if final and i == len(chunks) - 1 else normal
        out.append(bytes((flags.data_prefix, flag)) + chunk)
    return out

"""Audio continuity/reassembly, photo assembly and the Frame message layer."""

from __future__ import annotations

import struct

import pytest

from daemon.peripherals.ble.button import ButtonDecoder, omi_button_notification
from daemon.peripherals.ble.framing import (
    AudioFrame,
    AudioPacketTracker,
    FrameAudio,
    FrameFlags,
    FrameMessageDecoder,
    FrameTalk,
    FrameTap,
    PacketKind,
    Photo,
    PhotoAssembler,
    complete_jpeg,
    frame_data_messages,
    frame_talk_message,
    frame_tap_message,
    omi_audio_notifications,
    omi_photo_chunks,
)
from daemon.peripherals.ble.profile import load_profile

pytestmark = pytest.mark.timeout(30)


def make_jpeg(body_len: int = 500, seed: int = 1) -> bytes:
    """A structurally whole baseline JPEG: SOI, APP0, DQT, SOF0, DHT, SOS, data, EOI."""

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

    app0 = seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = seg(0xDB, b"\x00" + bytes(range(1, 65)))
    sof = seg(0xC0, b"\x08\x00\x10\x00\x10\x01\x01\x11\x00")
    dht = seg(0xC4, b"\x00" + bytes(16) + b"")
    sos = seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    data = bytes(((i * 7 + seed * 13) % 0xFE) for i in range(body_len))  # never 0xFF
    return b"\xff\xd8" + app0 + dqt + sof + dht + sos + data + b"\xff\xd9"


def pkt(pid: int, idx: int = 0, payload: bytes = b"x") -> bytes:
    return struct.pack("<HB", pid & 0xFFFF, idx) + payload


# ======================================================================= tracker
def test_first_then_contiguous() -> None:
    t = AudioPacketTracker()
    r = t.push(pkt(10, payload=b"a"))
    assert r.kind is PacketKind.FIRST
    assert r.packet_id == 10
    assert [f.payload for f in r.frames] == [b"a"]
    r = t.push(pkt(11, payload=b"b"))
    assert r.kind is PacketKind.CONTIGUOUS
    assert r.frames[0].payload == b"b"
    assert r.frames[0].lost_before == 0
    assert t.stats.first == 1
    assert t.stats.contiguous == 1
    assert t.stats.frames == 2


def test_wraparound_65535_to_0_is_contiguous() -> None:
    t = AudioPacketTracker()
    t.push(pkt(65534))
    assert t.push(pkt(65535)).kind is PacketKind.CONTIGUOUS
    r = t.push(pkt(0))
    assert r.kind is PacketKind.CONTIGUOUS
    assert r.missing == 0
    assert t.push(pkt(1)).kind is PacketKind.CONTIGUOUS
    assert t.stats.gaps == 0
    assert t.stats.resets == 0


def test_gap_counts_missing_and_lost_frames() -> None:
    t = AudioPacketTracker()
    t.push(pkt(100))
    r = t.push(pkt(104, payload=b"z"))
    assert r.kind is PacketKind.GAP
    assert r.missing == 3
    assert r.frames[0].lost_before == 3
    assert t.stats.gaps == 1
    assert t.stats.missing_packets == 3


def test_gap_across_wraparound() -> None:
    t = AudioPacketTracker()
    t.push(pkt(65534))
    r = t.push(pkt(2))
    assert r.kind is PacketKind.GAP
    assert r.missing == 3  # 65535, 0, 1


def test_duplicate_is_ignored() -> None:
    t = AudioPacketTracker()
    t.push(pkt(5))
    r = t.push(pkt(5))
    assert r.kind is PacketKind.DUPLICATE
    assert r.frames == ()
    assert t.push(pkt(6)).kind is PacketKind.CONTIGUOUS
    assert t.stats.duplicates == 1


def test_slightly_older_packet_is_a_stale_duplicate() -> None:
    t = AudioPacketTracker(reorder_window=8)
    t.push(pkt(50))
    assert t.push(pkt(45)).kind is PacketKind.DUPLICATE
    assert t.push(pkt(51)).kind is PacketKind.CONTIGUOUS


def test_restart_whose_first_packets_were_lost_is_a_reset() -> None:
    t = AudioPacketTracker(reorder_window=8)
    t.push(pkt(6))
    kinds = [t.push(pkt(i)).kind for i in (2, 3, 4, 5)]  # counting up from behind
    assert kinds == [
        PacketKind.DUPLICATE,
        PacketKind.DUPLICATE,
        PacketKind.RESET,
        PacketKind.CONTIGUOUS,
    ]
    assert t.stats.resets == 1


def test_scattered_stale_packets_stay_duplicates() -> None:
    t = AudioPacketTracker(reorder_window=8)
    t.push(pkt(20))
    kinds = [t.push(pkt(i)).kind for i in (15, 17, 15, 19)]
    assert kinds == [PacketKind.DUPLICATE] * 4
    assert t.push(pkt(21)).kind is PacketKind.CONTIGUOUS


def test_big_backwards_jump_is_a_reset() -> None:
    t = AudioPacketTracker()
    t.push(pkt(3000))
    r = t.push(pkt(0, payload=b"r"))
    assert r.kind is PacketKind.RESET
    assert r.frames[0].discontinuity
    assert r.frames[0].lost_before == 0
    assert t.push(pkt(1)).kind is PacketKind.CONTIGUOUS
    assert t.stats.resets == 1


def test_late_or_repeated_packet_zero_after_the_wrap_is_a_stale_duplicate() -> None:
    # 65535, 0, 1, 0, 2: the second 0 is old audio, not a restart; 2 follows 1.
    t = AudioPacketTracker(reorder_window=8)
    out: list[bytes] = []
    kinds = []
    for pid, payload in ((65535, b"a"), (0, b"b"), (1, b"c"), (0, b"B"), (2, b"d")):
        push = t.push(pkt(pid, payload=payload))
        kinds.append(push.kind)
        out += [f.payload for f in push.frames]
    assert kinds == [
        PacketKind.FIRST,
        PacketKind.CONTIGUOUS,
        PacketKind.CONTIGUOUS,
        PacketKind.DUPLICATE,
        PacketKind.CONTIGUOUS,
    ]
    assert out == [b"a", b"b", b"c", b"d"]  # nothing sent twice
    assert (t.stats.duplicates, t.stats.gaps, t.stats.resets) == (1, 0, 0)


def test_packet_zero_from_far_away_is_a_reset() -> None:
    t = AudioPacketTracker(reorder_window=8)
    t.push(pkt(9))  # just outside the window of 0
    r = t.push(pkt(0, payload=b"r"))
    assert r.kind is PacketKind.RESET and r.frames[0].discontinuity


def test_restart_to_zero_just_after_start_is_found_by_the_stale_run() -> None:
    # 0 three ids after a start looks like a late packet; the ids counting up from it
    # are the restart (as for any restart whose first packets were lost).
    t = AudioPacketTracker(reorder_window=8)
    t.push(pkt(3))
    kinds = [t.push(pkt(i)).kind for i in (0, 1, 2, 3)]
    assert kinds == [
        PacketKind.DUPLICATE,
        PacketKind.DUPLICATE,
        PacketKind.RESET,
        PacketKind.CONTIGUOUS,
    ]


def test_implausible_forward_jump_is_a_reset() -> None:
    t = AudioPacketTracker(max_gap=100)
    t.push(pkt(0))
    assert t.push(pkt(500)).kind is PacketKind.RESET


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x00", b"\x01\x00\x00"])
def test_too_short_is_malformed(data: bytes) -> None:
    t = AudioPacketTracker()
    r = t.push(data)
    assert r.kind is PacketKind.MALFORMED
    assert r.packet_id is None
    assert t.stats.malformed == 1
    assert t.push(pkt(7)).kind is PacketKind.FIRST  # malformed does not start the stream


def test_reset_method_starts_over() -> None:
    t = AudioPacketTracker()
    t.push(pkt(9))
    t.reset()
    assert t.push(pkt(100)).kind is PacketKind.FIRST


# --------------------------------------------------------------- reassembly
def _feed(t: AudioPacketTracker, notes: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for n in notes:
        out += [f.payload for f in t.push(n).frames]
    return out


def test_firmware_style_fragments_with_mtu_hint_emit_immediately() -> None:
    frame_a, frame_b = bytes(range(250)), b"B" * 40
    notes_a, pid = omi_audio_notifications(7, frame_a, 100)
    notes_b, pid = omi_audio_notifications(pid, frame_b, 100)
    assert len(notes_a) == 3
    assert pid == 11
    t = AudioPacketTracker(fragment_payload_max=100)
    assert _feed(t, notes_a) == [frame_a]
    assert _feed(t, notes_b) == [frame_b]
    assert t.pending_bytes == 0
    assert t.stats.contiguous == 3


def test_full_size_last_fragment_waits_for_next_frame_or_flush() -> None:
    frame = b"F" * 200
    notes, pid = omi_audio_notifications(0, frame, 100)
    t = AudioPacketTracker(fragment_payload_max=100)
    assert _feed(t, notes) == []
    assert t.pending_bytes == 200
    assert [f.payload for f in t.flush()] == [frame]
    assert t.flush() == ()
    notes, _ = omi_audio_notifications(pid, frame, 100)
    t2 = AudioPacketTracker(fragment_payload_max=100)
    assert _feed(t2, notes) == []
    assert _feed(t2, [pkt(pid + 2, 0, b"n")]) == [frame, b"n"]


def test_without_hint_unfragmented_stream_has_no_latency() -> None:
    t = AudioPacketTracker()
    assert _feed(t, [pkt(1, 0, b"a")]) == [b"a"]
    assert _feed(t, [pkt(2, 0, b"b")]) == [b"b"]


def test_without_hint_fragmented_stream_switches_to_buffering() -> None:
    t = AudioPacketTracker()
    notes, pid = omi_audio_notifications(0, b"1" * 10 + b"2" * 10, 10)
    out = _feed(t, notes)  # first head goes out alone, its tail is an orphan
    assert out == [b"1" * 10]
    assert t.stats.orphan_fragments == 1
    notes, pid = omi_audio_notifications(pid, b"abcdefghijKLM", 10)
    assert _feed(t, notes) == []
    notes, pid = omi_audio_notifications(pid, b"z", 10)
    assert _feed(t, notes) == [b"abcdefghijKLM"]


def test_same_id_fragment_scheme() -> None:
    t = AudioPacketTracker(fragment_payload_max=4)
    r = t.push(pkt(40, 0, b"abcd"))
    assert r.kind is PacketKind.FIRST
    r = t.push(pkt(40, 1, b"ef"))
    assert r.kind is PacketKind.CONTIGUOUS
    assert [f.payload for f in r.frames] == [b"abcdef"]
    assert t.push(pkt(40, 1, b"ef")).kind is PacketKind.DUPLICATE
    assert t.push(pkt(41, 0, b"g")).kind is PacketKind.CONTIGUOUS


def test_lost_fragment_drops_the_frame() -> None:
    frame_a, frame_b = b"A" * 250, b"B" * 30
    notes_a, pid = omi_audio_notifications(0, frame_a, 100)
    notes_b, _ = omi_audio_notifications(pid, frame_b, 100)
    t = AudioPacketTracker(fragment_payload_max=100)
    out = _feed(t, [notes_a[0], notes_a[2], *notes_b])  # fragment 1 lost
    assert out == [frame_b]
    assert t.stats.gaps == 1
    assert t.stats.frames_dropped == 1
    assert t.stats.orphan_fragments == 1


def test_lost_last_fragment_drops_frame_and_reports_loss() -> None:
    frame_a, frame_b = b"A" * 250, b"B" * 30
    notes_a, pid = omi_audio_notifications(0, frame_a, 100)
    notes_b, _ = omi_audio_notifications(pid, frame_b, 100)
    t = AudioPacketTracker(fragment_payload_max=100)
    frames: list[AudioFrame] = []
    for n in [notes_a[0], notes_a[1], *notes_b]:
        frames += t.push(n).frames
    assert [f.payload for f in frames] == [frame_b]
    assert frames[0].lost_before >= 1
    assert t.stats.frames_dropped == 1


def test_fragment_index_skip_within_same_id_drops_frame() -> None:
    t = AudioPacketTracker(fragment_payload_max=4)
    t.push(pkt(1, 0, b"abcd"))
    r = t.push(pkt(2, 2, b"zz"))  # index 1 never came
    assert r.frames == ()
    assert t.stats.frames_dropped == 1
    r = t.push(pkt(3, 0, b"q"))
    assert [(f.payload, f.lost_before) for f in r.frames] == [(b"q", 1)]


def test_huge_fragment_index_is_an_orphan() -> None:
    t = AudioPacketTracker(fragment_payload_max=4)
    r = t.push(pkt(1, 255, b"zzzz"))
    assert r.frames == ()
    assert t.stats.orphan_fragments == 1
    assert t.pending_bytes == 0


def test_oversize_frame_is_dropped_and_bounded() -> None:
    t = AudioPacketTracker(fragment_payload_max=100, max_frame_bytes=250, max_fragments=16)
    notes, _ = omi_audio_notifications(0, b"x" * 1000, 100)
    out = _feed(t, notes)
    assert out == []
    assert t.stats.oversize_frames == 1
    assert t.pending_bytes <= 250
    t2 = AudioPacketTracker(fragment_payload_max=10, max_fragments=3)
    assert _feed(t2, omi_audio_notifications(0, b"y" * 100, 10)[0]) == []
    assert t2.stats.oversize_frames == 1


def test_loss_estimate_uses_fragments_per_frame() -> None:
    t = AudioPacketTracker(fragment_payload_max=100)
    pid = 0
    for _ in range(4):  # frames of two fragments each
        notes, pid = omi_audio_notifications(pid, b"p" * 150, 100)
        _feed(t, notes)
    pid += 6  # three whole frames (six notifications) lost
    notes, pid = omi_audio_notifications(pid, b"p" * 150, 100)
    frames: list[AudioFrame] = []
    for n in notes:
        frames += t.push(n).frames
    assert [f.lost_before for f in frames] == [3]


# =============================================================== photo assembler
def test_photo_round_trip_without_orientation() -> None:
    jpeg = make_jpeg(1000)
    pa = PhotoAssembler()
    results = [pa.push(c) for c in omi_photo_chunks(jpeg)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == Photo(jpeg, 0)
    assert pa.stats.photos == 1
    assert not pa.in_progress


def test_photo_round_trip_with_orientation_byte() -> None:
    jpeg = make_jpeg(777)
    chunks = omi_photo_chunks(jpeg, orientation=2)
    assert chunks[0][:3] == b"\x00\x00\x02"
    assert all(len(c) <= 202 for c in chunks)
    assert chunks[-1] == b"\xff\xff"
    pa = PhotoAssembler(orientation_byte=True)
    photo = next(p for p in map(pa.push, chunks) if p)
    assert photo.jpeg == jpeg
    assert photo.orientation == 2
    assert photo.rotation_degrees == 180


def test_missing_chunk_drops_photo() -> None:
    chunks = omi_photo_chunks(make_jpeg(1000))
    del chunks[2]
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.out_of_order == 1
    assert pa.stats.empty_end == 1  # the end marker then has nothing to end
    assert pa.stats.orphan_chunks == len(chunks) - 4  # all after the bad one, bar the end


def test_out_of_order_chunk_drops_photo() -> None:
    chunks = omi_photo_chunks(make_jpeg(1000))
    chunks[1], chunks[2] = chunks[2], chunks[1]
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.out_of_order == 1


def test_repeated_chunk_drops_photo() -> None:
    chunks = omi_photo_chunks(make_jpeg(1000))
    chunks.insert(2, chunks[1])
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == []


def test_new_chunk_zero_mid_photo_restarts() -> None:
    first, second = make_jpeg(900, seed=1), make_jpeg(600, seed=2)
    a, b = omi_photo_chunks(first), omi_photo_chunks(second)
    pa = PhotoAssembler()
    photos = [p for p in map(pa.push, a[:3] + b) if p]
    assert photos == [Photo(second)]
    assert pa.stats.restarts == 1


def test_photo_larger_than_bound_is_dropped() -> None:
    pa = PhotoAssembler(max_bytes=2048)
    chunks = omi_photo_chunks(make_jpeg(5000))
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.oversize == 1
    assert pa.buffered_bytes == 0
    assert pa.push(b"\x00\x00" + b"x" * 100) is None
    assert pa.buffered_bytes == 100  # a fresh photo can start after the drop


def test_non_jpeg_photo_is_dropped() -> None:
    pa = PhotoAssembler()
    chunks = omi_photo_chunks(b"hello, not a jpeg" * 30)
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.not_jpeg == 1


def test_truncated_jpeg_is_dropped() -> None:
    pa = PhotoAssembler()
    chunks = omi_photo_chunks(make_jpeg(1000)[:-1])
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.not_jpeg == 1


def test_truncated_notification_drops_photo() -> None:
    chunks = omi_photo_chunks(make_jpeg(1000))
    chunks[1] = chunks[1][:50]  # cut short, e.g. by a too-small MTU
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.bad_length == 1


def test_truncated_first_chunk_drops_photo() -> None:
    chunks = omi_photo_chunks(make_jpeg(1000), orientation=1)
    chunks[0] = chunks[0][:60]
    pa = PhotoAssembler(orientation_byte=True)
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.bad_length == 1


def test_chunk_size_is_checked_against_the_fixed_size() -> None:
    jpeg = make_jpeg(1000)
    chunks = omi_photo_chunks(jpeg, chunk_size=180)  # not what the assembler expects
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == []
    assert pa.stats.bad_length == 1
    pa = PhotoAssembler(chunk_bytes=None)  # size taken from chunk 0
    assert [p for p in map(pa.push, chunks) if p] == [Photo(jpeg)]
    pa = PhotoAssembler(chunk_bytes=100)
    assert pa.push(b"\x00\x00" + bytes(150)) is None  # chunk 0 too long
    assert pa.stats.bad_length == 1
    assert not pa.in_progress


def test_whole_photo_in_chunk_zero() -> None:
    jpeg = make_jpeg(20)
    chunks = omi_photo_chunks(jpeg)
    assert len(chunks) == 2
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == [Photo(jpeg)]
    pa.push(chunks[0])
    pa.push(b"\x01\x00abc")  # data after a short chunk 0
    assert pa.stats.bad_length == 1


def test_short_last_chunk_is_fine() -> None:
    jpeg = make_jpeg(1000)
    chunks = omi_photo_chunks(jpeg)
    assert len(chunks[-2]) < len(chunks[0])
    pa = PhotoAssembler()
    assert [p for p in map(pa.push, chunks) if p] == [Photo(jpeg)]
    assert pa.stats.bad_length == 0


def test_zero_padding_after_eoi_is_trimmed() -> None:
    jpeg = make_jpeg(300)
    pa = PhotoAssembler()
    photos = [p for p in map(pa.push, omi_photo_chunks(jpeg + bytes(37))) if p]
    assert photos == [Photo(jpeg)]


def test_photo_malformed_and_orphans() -> None:
    pa = PhotoAssembler(orientation_byte=True)
    assert pa.push(b"") is None
    assert pa.push(b"\x00") is None
    assert pa.push(b"\x00\x00") is None  # chunk 0 without its orientation byte
    assert pa.stats.malformed == 3
    assert pa.push(b"\x05\x00abc") is None
    assert pa.stats.orphan_chunks == 1
    assert pa.push(b"\xff\xff") is None
    assert pa.stats.empty_end == 1


def test_reset_drops_photo_in_progress() -> None:
    pa = PhotoAssembler()
    chunks = omi_photo_chunks(make_jpeg(1000))
    for c in chunks[:3]:
        pa.push(c)
    assert pa.buffered_bytes > 0
    pa.reset()
    assert not pa.in_progress
    assert pa.buffered_bytes == 0


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8\xff\xd9",
        b"\xff\xd8" + b"\x00" * 10 + b"\xff\xd9",
        b"\xff\xd8\xff\xda\x00\x02\xff\xd9",  # scan without a frame header
        b"\xff\xd8\xff\xc0\x00\x40\xff\xd9",  # segment longer than the data
        make_jpeg(50) + b"junk\xff\xd9",  # data after the real EOI
        make_jpeg(50)[:-2] + b"\xff\xc4\xff\xd9",  # marker segment cut short
        make_jpeg(50).replace(b"\xff\xc0", b"\xff\xe1", 1),  # no frame header
    ],
)
def test_complete_jpeg_rejects(data: bytes) -> None:
    assert complete_jpeg(data) is None


def test_complete_jpeg_accepts_fill_bytes_and_restart_markers() -> None:
    jpeg = make_jpeg(50)
    soi, rest = jpeg[:2], jpeg[2:]
    assert complete_jpeg(soi + b"\xff" + rest) is not None  # a fill byte
    assert complete_jpeg(soi + b"\xff\xd0" + rest) is not None  # stand-alone marker
    assert complete_jpeg(jpeg) == jpeg
    body, eoi = jpeg[:-2], jpeg[-2:]
    assert complete_jpeg(body + b"\xff\x00\x12\xff\xd3\x34" + eoi) is not None  # stuffing, RST
    dht = b"\xff\xc4\x00\x03\x00"
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    assert complete_jpeg(body + dht + sos + b"\x10\x20" + eoi) is not None  # progressive


# ============================================================== Frame messages
FLAGS = FrameFlags()


def test_frame_audio_chunks_and_final() -> None:
    d = FrameMessageDecoder(FLAGS)
    assert d.push(b"\x01\x05" + b"\x01\x02" * 10) == FrameAudio(b"\x01\x02" * 10, False)
    assert d.push(b"\x01\x06") == FrameAudio(b"", True)
    assert d.push(b"\x01\x05") is None  # empty non-final chunk: nothing to pass on
    assert d.stats.audio_chunks == 2
    assert d.stats.audio_finals == 1


def test_frame_photo_across_messages() -> None:
    jpeg = make_jpeg(2000)
    msgs = frame_data_messages(FLAGS, "photo", jpeg, 240)
    assert msgs[0][:2] == b"\x01\x07"
    assert msgs[-1][:2] == b"\x01\x08"
    d = FrameMessageDecoder(FLAGS)
    events = [d.push(m) for m in msgs]
    assert events[:-1] == [None] * (len(msgs) - 1)
    assert events[-1] == Photo(jpeg)
    assert d.buffered_bytes == 0


def test_frame_interleaved_audio_and_photo() -> None:
    jpeg = make_jpeg(800)
    photo = frame_data_messages(FLAGS, "photo", jpeg, 100)
    audio = frame_data_messages(FLAGS, "audio", b"\x00\x01" * 200, 100, final=False)
    mixed = [m for pair in zip(photo, audio, strict=False) for m in pair] + photo[len(audio) :]
    d = FrameMessageDecoder(FLAGS)
    events = [e for e in map(d.push, mixed) if e is not None]
    assert Photo(jpeg) in events
    assert b"".join(e.pcm for e in events if isinstance(e, FrameAudio)) == b"\x00\x01" * 200


def test_frame_non_data_unknown_and_malformed() -> None:
    d = FrameMessageDecoder(FLAGS)
    assert d.push(b"print output") is None
    assert d.push(b"") is None
    assert d.push(b"\x01") is None
    assert d.push(b"\x01\x42abc") is None
    assert d.stats.non_data == 1
    assert d.stats.malformed == 2
    assert d.stats.unknown_flag == 1


def test_frame_photo_oversize_and_not_jpeg() -> None:
    d = FrameMessageDecoder(FLAGS, max_photo_bytes=1000)
    for m in frame_data_messages(FLAGS, "photo", make_jpeg(3000), 200):
        assert d.push(m) is None
        assert d.buffered_bytes <= 1000
    assert d.stats.oversize == 1
    jpeg = make_jpeg(100)
    assert [e for e in map(d.push, frame_data_messages(FLAGS, "photo", jpeg, 50)) if e] == [
        Photo(jpeg)
    ]
    assert d.push(b"\x01\x08not a jpeg") is None
    assert d.stats.not_jpeg == 1


def test_frame_flags_come_from_the_profile() -> None:
    flags = load_profile("frame").frame_flags
    assert flags is not None
    custom = FrameFlags(
        data_prefix=0x02, audio=0x10, audio_final=0x11, photo=0x12, photo_final=0x13
    )
    d = FrameMessageDecoder(custom)
    assert d.push(b"\x01\x05abc") is None  # default layout means nothing here
    assert d.push(b"\x02\x10ab") == FrameAudio(b"ab")
    assert FrameMessageDecoder(flags).push(b"\x01\x05ab") == FrameAudio(b"ab")


def test_frame_tap_message_is_a_tap() -> None:
    flags = FrameFlags(tap=0x09)
    d = FrameMessageDecoder(flags)
    assert frame_tap_message(flags) == b"\x01\x09"
    assert d.push(b"\x01\x09") == FrameTap()
    assert d.push(b"\x01\x09extra") == FrameTap()  # a payload is allowed and ignored
    assert d.stats.taps == 2
    # without a tap flag in the profile, 0x09 is just an unknown flag
    plain = FrameMessageDecoder(FrameFlags())
    assert plain.push(b"\x01\x09") is None
    assert plain.stats.unknown_flag == 1 and plain.stats.taps == 0
    with pytest.raises(ValueError, match="no tap flag"):
        frame_tap_message(FrameFlags())


def test_frame_talk_message_is_the_talk_gesture_and_never_a_tap() -> None:
    flags = FrameFlags(tap=0x09, talk=0x0A)
    d = FrameMessageDecoder(flags)
    assert frame_talk_message(flags) == b"\x01\x0a"
    assert d.push(frame_talk_message(flags)) == FrameTalk()
    assert d.push(frame_tap_message(flags)) == FrameTap()
    assert (d.stats.talks, d.stats.taps) == (1, 1)
    with pytest.raises(ValueError, match="no talk flag"):
        frame_talk_message(FrameFlags(tap=0x09))
    with pytest.raises(ValueError, match="distinct"):
        FrameFlags(tap=0x09, talk=0x09)


def test_frame_tap_flag_must_differ_from_the_others() -> None:
    with pytest.raises(ValueError, match="distinct"):
        FrameFlags(tap=0x05)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        FrameFlags(tap=256)


def test_omi_button_single_tap_is_a_tap_other_events_are_not() -> None:
    b = ButtonDecoder()
    assert omi_button_notification(1) == b"\x01\x00\x00\x00\x00\x00\x00\x00"
    assert b.push(omi_button_notification(1))
    assert not b.push(omi_button_notification(2))  # double tap
    assert not b.push(omi_button_notification(5))  # release
    assert b.push(b"\x01")  # a one-byte form is read the same way
    assert not b.push(b"")
    assert not b.push(bytes(9))
    assert (b.stats.notifications, b.stats.taps) == (6, 2)
    assert (b.stats.other_events, b.stats.malformed) == (2, 2)


def test_button_tap_events_come_from_the_profile() -> None:
    b = ButtonDecoder((2, 6))
    assert not b.push(omi_button_notification(1))
    assert b.push(omi_button_notification(2)) and b.push(omi_button_notification(6))


def test_frame_flags_validation() -> None:
    with pytest.raises(ValueError, match="distinct"):
        FrameFlags(audio=7)
    with pytest.raises(ValueError, match="byte values"):
        FrameFlags(data_prefix=300)

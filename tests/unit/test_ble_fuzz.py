"""Property tests: arbitrary and adversarial bytes at every decoder.

Invariants: no exception escapes, buffers stay within their bounds, counters add up,
and nothing but a whole JPEG is ever emitted as a photo.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.media.codecs import CodecSpec, StreamDecoder, mulaw_decode, pcm8_to_pcm16
from daemon.media.opus import OpusDecoder, OpusError
from daemon.media.resample import Resampler
from daemon.peripherals.ble.button import ButtonDecoder
from daemon.peripherals.ble.framing import (
    AudioPacketTracker,
    FrameAudio,
    FrameFlags,
    FrameMessageDecoder,
    FrameTap,
    PacketKind,
    Photo,
    PhotoAssembler,
    complete_jpeg,
    frame_data_messages,
    omi_audio_notifications,
    omi_photo_chunks,
)
from daemon.peripherals.ble.profile import ProfileError, load_profile

pytestmark = pytest.mark.timeout(30)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_jpeg(body_len: int, seed: int = 1) -> bytes:
    def seg(marker: int, payload: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

    header = (
        seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + seg(0xC0, b"\x08\x00\x10\x00\x10\x01\x01\x11\x00")
        + seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    )
    data = bytes(((i * 31 + seed * 17) % 0xFE) for i in range(body_len))
    return b"\xff\xd8" + header + data + b"\xff\xd9"


notification = st.binary(min_size=0, max_size=300)
notifications = st.lists(notification, max_size=60)


def omi_audio_note() -> st.SearchStrategy[bytes]:
    """Well-formed headers with hostile values: any id, any (huge) index, any size."""
    return st.builds(
        lambda pid, idx, payload: struct.pack("<HB", pid, idx) + payload,
        st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 0xFFFE, 0xFFFF])),
        st.one_of(st.integers(0, 255), st.just(0), st.just(1)),
        st.binary(max_size=260),
    )


# ===================================================================== tracker
def _check_tracker(t: AudioPacketTracker, stream: list[bytes]) -> None:
    for data in stream:
        push = t.push(data)
        assert isinstance(push.kind, PacketKind)
        assert push.missing >= 0
        for frame in push.frames:
            assert 0 < len(frame.payload) <= t.max_frame_bytes
            assert frame.lost_before >= 0
        assert 0 <= t.pending_bytes <= t.max_frame_bytes
    for frame in t.flush():
        assert len(frame.payload) <= t.max_frame_bytes
    s = t.stats
    assert s.notifications == len(stream)
    assert s.first + s.contiguous + s.gaps + s.duplicates + s.resets + s.malformed == len(stream)


@FUZZ
@given(notifications, st.one_of(st.none(), st.integers(1, 300)))
def test_tracker_random_bytes(stream: list[bytes], hint: int | None) -> None:
    _check_tracker(AudioPacketTracker(fragment_payload_max=hint, max_frame_bytes=1024), stream)


@FUZZ
@given(st.lists(omi_audio_note(), max_size=80), st.one_of(st.none(), st.integers(1, 300)))
def test_tracker_adversarial_headers(stream: list[bytes], hint: int | None) -> None:
    _check_tracker(
        AudioPacketTracker(fragment_payload_max=hint, max_fragments=4, max_frame_bytes=600),
        stream,
    )


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=30),
    st.integers(20, 244),
    st.integers(0, 0xFFFF),
    st.data(),
)
def test_tracker_emits_only_whole_original_frames_in_order(
    frames: list[bytes], mtu_payload: int, start: int, data: st.DataObject
) -> None:
    notes: list[bytes] = []
    pid = start
    for frame in frames:
        more, pid = omi_audio_notifications(pid, frame, mtu_payload)
        notes += more
    keep = data.draw(st.lists(st.booleans(), min_size=len(notes), max_size=len(notes)))
    received = [n for n, k in zip(notes, keep, strict=True) if k]
    t = AudioPacketTracker(fragment_payload_max=mtu_payload, max_gap=65535 - 64)
    out: list[bytes] = []
    for n in received:
        out += [f.payload for f in t.push(n).frames]
    # every emitted frame is one of the originals, in the original order
    it = iter(frames)
    assert all(any(o == f for f in it) for o in out)
    # flush() hands over a buffered frame whose end was never seen: at most a prefix
    flushed = [f.payload for f in t.flush()]
    assert all(any(f.startswith(p) for f in frames) for p in flushed)
    if all(keep):
        assert out + flushed == frames
        assert t.stats.gaps == 0
        assert t.stats.frames_dropped == 0


@FUZZ
@given(
    st.one_of(st.integers(0, 0xFFFF), st.integers(0xFFF0, 0xFFFF)),
    st.integers(1, 60),
    st.integers(0, 8),
    st.data(),
)
def test_tracker_stale_repeats_within_the_window_are_only_duplicates(
    start: int, count: int, window: int, data: st.DataObject
) -> None:
    # A contiguous stream (often across 65535 -> 0) with, after any packet, a late or
    # repeated copy of one up to `window` ids back - id 0 included: every frame comes
    # out exactly once, and nothing counts as a gap or a reset.
    frames = [bytes((i % 251 + 1,)) * 3 for i in range(count)]
    notes = [
        pkt
        for f, i in zip(frames, range(count), strict=True)
        for pkt in omi_audio_notifications(start + i, f, 100)[0]
    ]
    stream: list[bytes] = []
    for i, note in enumerate(notes):
        stream.append(note)
        if i and data.draw(st.booleans()):
            back = data.draw(st.integers(0, min(i, window)))
            stream.append(notes[i - back])
    t = AudioPacketTracker(fragment_payload_max=100, reorder_window=window)
    out = [f.payload for n in stream for f in t.push(n).frames]
    assert out == frames
    assert t.stats.gaps == t.stats.resets == 0
    assert t.stats.duplicates == len(stream) - len(notes)


@FUZZ
@given(st.integers(0, 8), st.data())
def test_tracker_zero_far_from_the_last_id_is_a_reset(window: int, data: st.DataObject) -> None:
    max_gap = 1024
    last = data.draw(st.integers(window + 1, 0x10000 - max_gap - 2))
    t = AudioPacketTracker(reorder_window=window, max_gap=max_gap)
    t.push(struct.pack("<HB", last, 0) + b"a")
    push = t.push(struct.pack("<HB", 0, 0) + b"b")
    assert push.kind is PacketKind.RESET
    assert [f.discontinuity for f in push.frames] == [True]


# ==================================================================== photos
def _check_photo(pa: PhotoAssembler, stream: list[bytes]) -> list[Photo]:
    photos = []
    for data in stream:
        photo = pa.push(data)
        assert 0 <= pa.buffered_bytes <= pa.max_bytes
        if photo is not None:
            assert complete_jpeg(photo.jpeg) == photo.jpeg
            assert len(photo.jpeg) <= pa.max_bytes
            photos.append(photo)
    return photos


@FUZZ
@given(notifications, st.booleans())
def test_photo_random_bytes(stream: list[bytes], orientation: bool) -> None:
    pa = PhotoAssembler(orientation_byte=orientation, max_bytes=4096)
    _check_photo(pa, stream)
    assert pa.stats.notifications == len(stream)


@FUZZ
@given(
    st.lists(
        st.builds(
            lambda idx, body: struct.pack("<H", idx) + body,
            st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 2, 0xFFFF])),
            st.binary(max_size=220),
        ),
        max_size=80,
    ),
    st.booleans(),
)
def test_photo_adversarial_chunk_indices(stream: list[bytes], orientation: bool) -> None:
    _check_photo(PhotoAssembler(orientation_byte=orientation, max_bytes=2048), stream)


@FUZZ
@given(st.integers(1, 400), st.integers(1, 220))
def test_photo_endless_chunks_without_end_marker_stay_bounded(n: int, size: int) -> None:
    pa = PhotoAssembler(max_bytes=4096)
    stream = [struct.pack("<H", i) + b"\xab" * size for i in range(n)]
    assert _check_photo(pa, stream) == []
    assert pa.buffered_bytes <= 4096


@FUZZ
@given(st.integers(1, 300), st.binary(max_size=200))
def test_photo_repeated_chunk_zero(n: int, body: bytes) -> None:
    pa = PhotoAssembler(orientation_byte=True, max_bytes=4096)
    assert _check_photo(pa, [b"\x00\x00" + body] * n + [b"\xff\xff"]) == []
    assert pa.stats.restarts == (n - 1 if body else 0)


def _damage(stream: list[bytes], times: int, data: st.DataObject) -> list[bytes]:
    """Drop, duplicate, truncate, swap or inject notifications, `times` times."""
    stream = list(stream)
    for _ in range(times):
        if not stream:
            break
        i = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "truncate", "swap", "garbage"]))
        if action == "drop":
            del stream[i]
        elif action == "dup":
            stream.insert(i, stream[i])
        elif action == "truncate":
            stream[i] = stream[i][: data.draw(st.integers(0, max(0, len(stream[i]) - 1)))]
        elif action == "swap" and i + 1 < len(stream):
            stream[i], stream[i + 1] = stream[i + 1], stream[i]
        elif action == "garbage":
            stream.insert(i, data.draw(st.binary(max_size=210)))
    return stream


@FUZZ
@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(0, 3)),
    st.integers(0, 1),
    st.data(),
)
def test_photo_single_fault_emits_only_originals(
    sizes: list[int], orientation: int | None, faults: int, data: st.DataObject
) -> None:
    originals = [make_jpeg(n, seed=i) for i, n in enumerate(sizes)]
    stream: list[bytes] = []
    for jpeg in originals:
        stream += omi_photo_chunks(jpeg, orientation)
    pa = PhotoAssembler(orientation_byte=orientation is not None, max_bytes=8192)
    photos = _check_photo(pa, _damage(stream, faults, data))
    assert all(p.jpeg in originals for p in photos)
    if faults == 0:
        assert [p.jpeg for p in photos] == originals
        assert all(p.orientation == (orientation or 0) for p in photos)


@FUZZ
@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(0, 3)),
    st.integers(2, 8),
    st.data(),
)
def test_photo_many_faults_emit_only_whole_jpegs(
    sizes: list[int], orientation: int | None, faults: int, data: st.DataObject
) -> None:
    # With several losses two photos can splice into one that is still a whole JPEG
    # (the omi layer carries no photo id); the guarantee is structure, not identity.
    stream: list[bytes] = []
    for i, n in enumerate(sizes):
        stream += omi_photo_chunks(make_jpeg(n, seed=i), orientation)
    pa = PhotoAssembler(orientation_byte=orientation is not None, max_bytes=8192)
    _check_photo(pa, _damage(stream, faults, data))


# ============================================================= Frame messages
# Any message layout a profile can give: any prefix, distinct flags, with or without tap.
frame_flags = st.builds(
    lambda prefix, flags, tap: FrameFlags(prefix, *flags[:4], tap=flags[4] if tap else None),
    st.integers(0, 255),
    st.lists(st.integers(0, 255), min_size=5, max_size=5, unique=True),
    st.booleans(),
)


def _check_frame(d: FrameMessageDecoder, stream: list[bytes]) -> list[Photo]:
    photos = []
    for data in stream:
        event = d.push(data)
        assert 0 <= d.buffered_bytes <= d.max_photo_bytes
        if isinstance(event, Photo):
            assert complete_jpeg(event.jpeg) == event.jpeg
            photos.append(event)
        else:
            assert event is None or isinstance(event, FrameAudio | FrameTap)
            assert not isinstance(event, FrameTap) or d.flags.tap == data[1]
    return photos


@FUZZ
@given(notifications)
def test_frame_random_bytes(stream: list[bytes]) -> None:
    _check_frame(FrameMessageDecoder(max_photo_bytes=2048), stream)


@FUZZ
@given(frame_flags, st.data())
def test_frame_adversarial_messages(flags: FrameFlags, data: st.DataObject) -> None:
    own = [flags.audio, flags.audio_final, flags.photo, flags.photo_final]
    if flags.tap is not None:
        own.append(flags.tap)
    stream = data.draw(
        st.lists(
            st.builds(
                lambda prefix, flag, body: bytes((prefix, flag)) + body,
                st.one_of(st.just(flags.data_prefix), st.integers(0, 255)),
                st.one_of(st.sampled_from(own), st.integers(0, 255)),
                st.binary(max_size=250),
            ),
            max_size=80,
        )
    )
    d = FrameMessageDecoder(flags, max_photo_bytes=2048)
    _check_frame(d, stream)
    s = d.stats
    assert s.notifications == len(stream)
    assert s.taps == sum(1 for m in stream if m[0] == flags.data_prefix and m[1] == flags.tap)


@FUZZ
@given(st.lists(notification, max_size=60), st.lists(st.integers(-5, 10), max_size=3),
       st.lists(st.integers(-5, 10), max_size=2))
def test_button_decoder_random_bytes(stream: list[bytes], events: list[int],
                                     talk: list[int]) -> None:
    tap_events = tuple(events) or (1,)
    talk_events = tuple(e for e in talk if e not in tap_events)
    b = ButtonDecoder(tap_events, talk_events)
    got = [b.push(n) for n in stream]
    s = b.stats
    assert s.notifications == len(stream)
    assert s.taps == got.count("tap") and s.talks == got.count("talk")
    assert s.taps + s.talks + s.other_events + s.malformed == len(stream)
    for n, event in zip(stream, got, strict=True):  # a talk is never a tap, and back
        code = int.from_bytes(n[:4], "little", signed=True) if 1 <= len(n) <= 8 else None
        assert (event == "tap") == (code in tap_events)
        assert (event == "talk") == (code in talk_events)


@FUZZ
@given(st.integers(1, 300), st.integers(1, 240))
def test_frame_endless_photo_chunks_stay_bounded(n: int, size: int) -> None:
    d = FrameMessageDecoder(max_photo_bytes=4096)
    assert _check_frame(d, [b"\x01\x07" + b"\x11" * size] * n) == []


@FUZZ
@given(
    st.lists(st.integers(0, 2000), min_size=1, max_size=3),
    st.integers(1, 240),
    frame_flags,
    st.data(),
)
def test_frame_damaged_photo_emits_only_originals(
    sizes: list[int], max_payload: int, flags: FrameFlags, data: st.DataObject
) -> None:
    originals = [make_jpeg(n, seed=i) for i, n in enumerate(sizes)]
    stream: list[bytes] = []
    for jpeg in originals:
        stream += frame_data_messages(flags, "photo", jpeg, max_payload)
    intact = data.draw(st.booleans())
    if not intact and stream:
        del stream[data.draw(st.integers(0, len(stream) - 1))]
    photos = _check_frame(FrameMessageDecoder(flags, max_photo_bytes=8192), stream)
    if intact:
        assert [p.jpeg for p in photos] == originals
    # Otherwise: the Frame layer has no sequence numbers or photo ids, so a lost message
    # can leave a hole or splice two photos; what comes out is still a whole JPEG
    # (checked in _check_frame), which is the guarantee.


# ============================================================ codec decoders
@FUZZ
@given(st.lists(st.binary(max_size=400), max_size=20))
def test_opus_decoder_random_packets_raise_only_opus_error(packets: list[bytes]) -> None:
    dec = OpusDecoder(16_000)
    for p in packets:
        try:
            pcm = dec.decode(p)
        except OpusError:
            continue
        assert len(pcm) <= 16_000 * 120 // 1000 * 2
        assert len(pcm) % 2 == 0
    for p in packets:
        with contextlib.suppress(OpusError):
            dec.decode_fec(p, 320)
    assert len(dec.conceal(320)) == 640


@FUZZ
@given(
    st.sampled_from(
        [
            CodecSpec("opus", 16000, 20),
            CodecSpec("pcm16", 8000),
            CodecSpec("pcm16", 16000),
            CodecSpec("mulaw", 8000),
            CodecSpec("pcm8", 8000),
        ]
    ),
    st.lists(st.tuples(st.binary(max_size=400), st.integers(0, 70000), st.booleans()), max_size=12),
)
def test_stream_decoder_never_raises_and_output_is_bounded(
    spec: CodecSpec, items: list[tuple[bytes, int, bool]]
) -> None:
    dec = StreamDecoder(spec, max_conceal_ms=200)
    # bound per call: the concealment budget, one packet's worth, and resampler slack
    per_payload_ms = 120 if spec.kind == "opus" else 400 * 1000 // spec.rate
    bound = 2 * 16 * (200 + per_payload_ms + 2 * 20) + 2 * 16 * 50
    for payload, lost, disc in items:
        chunk = dec.decode(payload, lost_before=lost, discontinuity=disc)
        if chunk is not None:
            assert chunk.rate == 16_000
            assert len(chunk.pcm) % 2 == 0
            assert len(chunk.pcm) <= bound
    dec.flush()
    dec.close()


@FUZZ
@given(st.binary(max_size=1000))
def test_pcm_and_mulaw_helpers_total(data: bytes) -> None:
    assert len(mulaw_decode(data)) == 2 * len(data)
    assert len(pcm8_to_pcm16(data)) == 2 * len(data)


@FUZZ
@given(st.lists(st.binary(max_size=333), max_size=20))
def test_resampler_any_chunking(parts: list[bytes]) -> None:
    r = Resampler(8000, 16000)
    total = sum(len(r.process(p)) for p in parts) + len(r.flush())
    assert total % 2 == 0
    assert abs(total // 2 - 2 * (sum(map(len, parts)) // 2)) <= 64


# ================================================================= profiles
@SMALL
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_profile_loader_raises_only_profile_error(content: bytes | str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(content)
        try:
            load_profile(path)
        except ProfileError as exc:
            message = str(exc)
        else:
            message = ""
        assert "\n" not in message

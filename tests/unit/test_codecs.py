"""Opus (real libopus), µ-law, PCM helpers, the resampler and StreamDecoder."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from daemon.media.codecs import (
    CodecSpec,
    StreamDecoder,
    array_to_pcm16,
    mulaw_decode,
    mulaw_encode,
    pcm8_to_pcm16,
    pcm16_to_array,
    pcm16_to_pcm8,
    silence,
)
from daemon.media.opus import OpusDecoder, OpusEncoder, OpusError
from daemon.media.resample import Resampler
from daemon.media.types import AudioChunk

pytestmark = pytest.mark.timeout(30)

RATE = 16_000
FRAME = 320  # 20 ms at 16 kHz


def tone(freq: float = 440.0, seconds: float = 1.0, rate: int = RATE, amp: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return array_to_pcm16(amp * 32767 * np.sin(2 * np.pi * freq * t))


def speechlike(seconds: float = 2.0, rate: int = RATE) -> bytes:
    """Harmonic signal with a gliding pitch plus a little noise (exercises SILK/LBRR)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    x = x / np.max(np.abs(x)) * 0.4 * 32767
    x = x + np.random.default_rng(0).normal(0, 300, len(x))
    return array_to_pcm16(x)


def frames_of(pcm: bytes, n: int = FRAME) -> list[bytes]:
    size = n * 2
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


def snr_db(ref: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> float:
    noise = float(np.sum((ref - out) ** 2))
    return 10 * float(np.log10(float(np.sum(ref**2)) / max(noise, 1e-9)))


def best_lag(ref: npt.NDArray[np.float64], out: npt.NDArray[np.float64], max_lag: int) -> int:
    n = len(ref) - max_lag
    return max(range(max_lag), key=lambda lag: float(np.dot(ref[:n], out[lag : lag + n])))


# ========================================================================== Opus
def test_opus_round_trip_440hz_tone() -> None:
    enc, dec = OpusEncoder(RATE, 20), OpusDecoder(RATE)
    src = tone()
    packets = [enc.encode(f) for f in frames_of(src)]
    assert all(0 < len(p) < 200 for p in packets)
    out = b"".join(dec.decode(p) for p in packets)
    assert len(out) == len(src)
    ref = pcm16_to_array(src).astype(np.float64)
    got = pcm16_to_array(out).astype(np.float64)
    lag = best_lag(ref[2000:6000], got[2000:6000], 400)
    a, b = ref[2000 : 14000 - lag], got[2000 + lag : 14000]
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert snr_db(a, b) > 20


def test_opus_24k_packets_decode_at_16k() -> None:
    enc, dec = OpusEncoder(24_000, 20), OpusDecoder(RATE)
    pcm = dec.decode(enc.encode(tone(rate=24_000, seconds=0.02)))
    assert len(pcm) == FRAME * 2


@pytest.mark.parametrize("n", [0, 1, 40, 320, 333, 960, 5000])
def test_plc_returns_exactly_the_requested_samples(n: int) -> None:
    enc, dec = OpusEncoder(RATE, 20), OpusDecoder(RATE)
    for f in frames_of(tone(seconds=0.1)):
        dec.decode(enc.encode(f))
    out = dec.conceal(n)
    assert len(out) == 2 * n
    if n >= FRAME:
        assert np.any(pcm16_to_array(out[: FRAME * 2]) != 0)  # PLC continues the tone


def test_plc_before_any_packet() -> None:
    assert len(OpusDecoder(RATE).conceal(FRAME)) == FRAME * 2


def test_fec_recovers_lost_frames_better_than_plc() -> None:
    enc = OpusEncoder(RATE, 20, bitrate=24_000, fec=True, packet_loss_perc=30)
    packets = [enc.encode(f) for f in frames_of(speechlike())]
    clean = [d for d in map(OpusDecoder(RATE).decode, packets)]
    fec_snr, plc_snr = [], []
    for lost in range(5, 95, 5):
        d_fec, d_plc = OpusDecoder(RATE), OpusDecoder(RATE)
        for p in packets[:lost]:
            d_fec.decode(p)
            d_plc.decode(p)
        recovered = d_fec.decode_fec(packets[lost + 1], FRAME)
        concealed = d_plc.conceal(FRAME)
        assert len(recovered) == len(concealed) == FRAME * 2
        ref = pcm16_to_array(clean[lost]).astype(np.float64)
        fec_snr.append(snr_db(ref, pcm16_to_array(recovered).astype(np.float64)))
        plc_snr.append(snr_db(ref, pcm16_to_array(concealed).astype(np.float64)))
        assert len(d_fec.decode(packets[lost + 1])) == FRAME * 2
    assert np.mean(fec_snr) > np.mean(plc_snr) + 5


def test_corrupt_and_empty_packets_raise_value_error_and_decoder_survives() -> None:
    enc, dec = OpusEncoder(RATE, 20), OpusDecoder(RATE)
    with pytest.raises(OpusError, match="corrupted") as info:
        dec.decode(b"\xff\xff\xff")
    assert isinstance(info.value, ValueError)
    assert info.value.code < 0
    with pytest.raises(OpusError, match="empty"):
        dec.decode(b"")
    with pytest.raises(OpusError, match="too long"):
        dec.decode(b"\x00" * 5000)
    with pytest.raises(OpusError):
        dec.decode_fec(b"")
    assert len(dec.decode(enc.encode(tone(seconds=0.02)))) == FRAME * 2


def test_packet_samples() -> None:
    enc, dec = OpusEncoder(RATE, 40), OpusDecoder(RATE)
    assert dec.packet_samples(enc.encode(tone(seconds=0.04))) == 640
    with pytest.raises(OpusError):
        dec.packet_samples(b"")


def test_encoder_validation() -> None:
    enc = OpusEncoder(RATE, 20)
    assert enc.frame_samples == FRAME
    assert enc.frame_bytes == FRAME * 2
    with pytest.raises(OpusError, match="640 bytes per frame"):
        enc.encode(b"\x00" * 10)
    with pytest.raises(OpusError, match="sample rate"):
        OpusEncoder(44_100)
    with pytest.raises(OpusError, match="frame length"):
        OpusEncoder(RATE, 15)
    with pytest.raises(OpusError, match="sample rate"):
        OpusDecoder(11_025)
    with pytest.raises(OpusError, match="channel"):
        OpusDecoder(RATE, 3)


def test_closed_codecs_raise_cleanly() -> None:
    enc, dec = OpusEncoder(RATE, 20), OpusDecoder(RATE)
    enc.close()
    dec.close()
    dec.close()
    with pytest.raises(OpusError, match="closed"):
        enc.encode(bytes(FRAME * 2))
    with pytest.raises(OpusError, match="closed"):
        dec.decode(b"\x08\x00")


def test_reset_after_discontinuity() -> None:
    enc, dec = OpusEncoder(RATE, 20), OpusDecoder(RATE)
    dec.decode(enc.encode(tone(seconds=0.02)))
    dec.reset()
    assert len(dec.decode(enc.encode(tone(seconds=0.02)))) == FRAME * 2


# ===================================================================== µ-law, PCM
def test_mulaw_known_values() -> None:
    decoded = pcm16_to_array(mulaw_decode(bytes([0xFF, 0x7F, 0x00, 0x80, 0xF0, 0x70])))
    assert decoded.tolist() == [0, 0, -32124, 32124, 120, -120]


def test_mulaw_round_trip_codes() -> None:
    codes = bytes(c for c in range(256) if c != 0x7F)  # 0x7F is "-0", encodes back as 0xFF
    assert mulaw_encode(mulaw_decode(codes)) == codes


def test_mulaw_round_trip_signal_within_quantisation() -> None:
    x = np.linspace(-32768, 32767, 20001).astype(np.int16)
    y = pcm16_to_array(mulaw_decode(mulaw_encode(array_to_pcm16(x)))).astype(np.int32)
    err = np.abs(x.astype(np.int32) - y)
    clipped = np.abs(x.astype(np.int32)) > 32124
    assert np.all(err[~clipped] <= np.maximum(8, np.abs(x[~clipped]).astype(np.int32) // 16 + 4))
    snr = snr_db(x.astype(np.float64), y.astype(np.float64))
    assert snr > 30
    assert mulaw_encode(b"\x00\x00\x01") == b"\xff"  # odd byte ignored


def test_pcm_helpers() -> None:
    assert pcm8_to_pcm16(bytes([0x00, 0x7F, 0x80, 0xFF])) == array_to_pcm16(
        [0, 32512, -32768, -256]
    )
    assert pcm16_to_pcm8(array_to_pcm16([0, 32512, -32768, -256])) == bytes([0, 0x7F, 0x80, 0xFF])
    assert array_to_pcm16([1.6, -70000.0, 70000]) == array_to_pcm16([2, -32768, 32767])
    assert pcm16_to_array(b"\x01\x00\x02").tolist() == [1]
    assert silence(3) == bytes(6)
    assert silence(-1) == b""


def test_codec_spec_validation() -> None:
    assert CodecSpec("opus", 16000).frame_samples == 320
    assert CodecSpec("mulaw", 8000).describe() == "mulaw 8 kHz"
    assert CodecSpec("opus", 16000, 20).describe() == "opus 16 kHz 20 ms"
    with pytest.raises(ValueError, match="unknown codec"):
        CodecSpec("aac", 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opus rate"):
        CodecSpec("opus", 44100)
    with pytest.raises(ValueError, match="rate"):
        CodecSpec("pcm16", 7000)


# ===================================================================== resampler
def test_resampler_identity() -> None:
    r = Resampler(16000, 16000)
    assert r.identity
    assert r.process(b"\x01\x02\x03") == b"\x01\x02"
    assert r.process(b"\x04") == b"\x03\x04"  # odd byte carried, not lost
    assert r.flush() == b""


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 24000), (24000, 16000)])
def test_resampler_length(src: int, dst: int) -> None:
    pcm = tone(rate=src, seconds=1.0)
    r = Resampler(src, dst)
    out = r.process(pcm) + r.flush()
    assert abs(len(out) // 2 - dst) <= 2


def test_resampler_continuity_across_chunk_boundaries() -> None:
    pcm = tone(rate=8000, seconds=2.0, amp=0.25)
    whole_r = Resampler(8000, 16000)
    whole = whole_r.process(pcm) + whole_r.flush()
    rng = np.random.default_rng(7)
    chunked_r = Resampler(8000, 16000)
    parts: list[bytes] = []
    i = 0
    while i < len(pcm):
        n = int(rng.integers(1, 701))  # odd sizes split samples too
        parts.append(chunked_r.process(pcm[i : i + n]))
        i += n
    chunked = b"".join(parts) + chunked_r.flush()
    assert len(chunked) == len(whole)
    a, b = pcm16_to_array(whole).astype(int), pcm16_to_array(chunked).astype(int)
    assert int(np.max(np.abs(a - b))) <= 4
    # and the output is a clean tone: no clicks at chunk edges
    diffs = np.abs(np.diff(b[200:-200]))
    assert int(diffs.max()) < 0.25 * 32767 * 2 * np.pi * 440 / 16000 * 1.2


def test_resampler_flush_starts_a_new_stream() -> None:
    r = Resampler(8000, 16000)
    first = r.process(tone(rate=8000, seconds=0.5)) + r.flush()
    second = r.process(tone(rate=8000, seconds=0.5)) + r.flush()
    assert first == second
    r.process(tone(rate=8000, seconds=0.1))
    r.reset()
    assert r.process(b"") == b""


def test_resampler_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 16000)


# ================================================================= StreamDecoder
def _pcm_len(chunks: list[AudioChunk | None]) -> int:
    return sum(len(c.pcm) for c in chunks if c is not None)


def test_stream_decoder_opus_to_16k_chunks() -> None:
    enc = OpusEncoder(RATE, 20)
    dec = StreamDecoder(CodecSpec("opus", RATE, 20), clock=lambda: 42.0)
    chunks = [dec.decode(enc.encode(f)) for f in frames_of(tone(seconds=0.5))]
    assert all(c is not None and c.rate == RATE and c.captured_at == 42.0 for c in chunks)
    assert _pcm_len(chunks) == 8000 * 2
    assert dec.stats.payloads == 25


def test_stream_decoder_conceals_reported_losses() -> None:
    enc = OpusEncoder(RATE, 20, fec=True, packet_loss_perc=20)
    packets = [enc.encode(f) for f in frames_of(tone(seconds=0.4))]
    dec = StreamDecoder(CodecSpec("opus", RATE, 20))
    out = []
    for i, p in enumerate(packets):
        if i in (5, 6, 7):
            continue
        out.append(dec.decode(p, lost_before=3 if i == 8 else 0))
    assert _pcm_len(out) == len(packets) * FRAME * 2  # timeline kept whole
    assert dec.stats.concealed_frames == 3
    assert dec.stats.fec_frames == 1


def test_stream_decoder_caps_concealment() -> None:
    dec = StreamDecoder(CodecSpec("opus", RATE, 20), max_conceal_ms=100)
    enc = OpusEncoder(RATE, 20)
    dec.decode(enc.encode(bytes(FRAME * 2)))
    chunk = dec.decode(enc.encode(bytes(FRAME * 2)), lost_before=50)
    assert chunk is not None
    assert len(chunk.pcm) == (5 + 1) * FRAME * 2
    assert dec.stats.unconcealed_frames == 45


def test_stream_decoder_corrupt_opus_is_counted_not_raised() -> None:
    dec = StreamDecoder(CodecSpec("opus", RATE, 20))
    chunk = dec.decode(b"\xff\xff\xff")
    assert dec.stats.decode_errors == 1
    assert chunk is not None
    assert len(chunk.pcm) == FRAME * 2  # a concealed frame keeps the timeline


def test_stream_decoder_pcm16_8k_resamples_to_16k() -> None:
    src = tone(rate=8000, seconds=1.0)
    dec = StreamDecoder(CodecSpec("pcm16", 8000))
    chunks = [dec.decode(src[i : i + 161]) for i in range(0, len(src), 161)]  # odd sizes
    chunks.append(dec.flush())
    assert abs(_pcm_len(chunks) // 2 - 16000) <= 2
    assert dec.stats.odd_bytes_dropped == 0


def test_stream_decoder_pcm_gap_filled_with_silence() -> None:
    dec = StreamDecoder(CodecSpec("pcm16", RATE))
    a = dec.decode(b"\x01\x00" * 160)
    b = dec.decode(b"\x01\x00" * 160, lost_before=2)
    assert a is not None and b is not None
    assert len(b.pcm) == 3 * 320
    assert pcm16_to_array(b.pcm)[:320].tolist() == [0] * 320
    assert dec.stats.concealed_frames == 2


def test_stream_decoder_mulaw_and_pcm8() -> None:
    dec = StreamDecoder(CodecSpec("mulaw", RATE))
    chunk = dec.decode(mulaw_encode(tone(seconds=0.02)))
    assert chunk is not None and len(chunk.pcm) == FRAME * 2
    dec8 = StreamDecoder(CodecSpec("pcm8", RATE))
    chunk = dec8.decode(pcm16_to_pcm8(tone(seconds=0.02)))
    assert chunk is not None and len(chunk.pcm) == FRAME * 2


def test_stream_decoder_discontinuity_and_reset() -> None:
    enc = OpusEncoder(RATE, 20)
    dec = StreamDecoder(CodecSpec("opus", RATE, 20))
    dec.decode(enc.encode(tone(seconds=0.02)))
    chunk = dec.decode(enc.encode(tone(seconds=0.02)), lost_before=4, discontinuity=True)
    assert chunk is not None and len(chunk.pcm) == FRAME * 2  # no concealment across a restart
    assert dec.stats.discontinuities == 1
    assert dec.stats.concealed_frames == 0
    dec.reset()
    assert dec.conceal(2) is not None
    dec.close()


def test_stream_decoder_discontinuity_flushes_resampler_tail() -> None:
    dec = StreamDecoder(CodecSpec("pcm16", 8000))
    total = 0
    for _ in range(10):
        c = dec.decode(tone(rate=8000, seconds=0.02))
        total += len(c.pcm) if c else 0
    c = dec.decode(tone(rate=8000, seconds=0.02), discontinuity=True)
    total += len(c.pcm) if c else 0
    tail = dec.flush()
    total += len(tail.pcm) if tail else 0
    assert abs(total // 2 - 11 * 320) <= 4

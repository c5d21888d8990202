"""Wearable audio codecs to the uplink's 16 kHz PCM.

Glasses send Opus, 16-bit PCM, 8-bit PCM or G.711 µ-law at 8 or 16 kHz, chosen by a
codec id the device reports. `StreamDecoder` hides that choice: payloads in, 16 kHz
`AudioChunk`s out, with loss concealment so a lost packet becomes a short, counted,
smoothed hole instead of a click or a shifted timeline.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

from daemon.media.opus import VALID_FRAME_MS, VALID_RATES, OpusDecoder, OpusError
from daemon.media.resample import Resampler
from daemon.media.types import SAMPLE_WIDTH, UPLINK_RATE, AudioChunk

if TYPE_CHECKING:  # numpy is imported where a codec needs it: Opus at 16 kHz never does
    import numpy as np
    import numpy.typing as npt

CodecKind = Literal["pcm8", "pcm16", "mulaw", "opus"]
CODEC_KINDS: Final[tuple[str, ...]] = get_args(CodecKind)
PCM_RATES: Final = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """What one codec id means: sample format, rate, and (Opus) frame length."""

    kind: CodecKind
    rate: int
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if self.kind not in CODEC_KINDS:
            raise ValueError(f"unknown codec {self.kind!r} (known: {', '.join(CODEC_KINDS)})")
        if self.kind == "opus":
            if self.rate not in VALID_RATES:
                raise ValueError(f"opus rate {self.rate} not one of {sorted(VALID_RATES)}")
            if self.frame_ms not in VALID_FRAME_MS:
                raise ValueError(
                    f"opus frame_ms {self.frame_ms} not one of {sorted(VALID_FRAME_MS)}"
                )
        elif self.rate not in PCM_RATES:
            raise ValueError(f"{self.kind} rate {self.rate} not one of {sorted(PCM_RATES)}")
        if not 1 <= self.frame_ms <= 120:
            raise ValueError(f"frame_ms {self.frame_ms} out of range 1..120")

    @property
    def frame_samples(self) -> int:
        """Samples in one frame at the codec's own rate."""
        return self.rate * self.frame_ms // 1000

    def describe(self) -> str:
        """A short label for logs and status (`opus 16 kHz 20 ms`, `mulaw 8 kHz`)."""
        khz = f"{self.rate / 1000:g} kHz"
        return f"opus {khz} {self.frame_ms} ms" if self.kind == "opus" else f"{self.kind} {khz}"


# ---------------------------------------------------------------- G.711 µ-law
_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    import numpy as np

    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    import numpy as np

    x = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    exponent = np.floor(np.log2(np.maximum(mag >> 7, 1))).astype(np.int32)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code = ~(sign | (exponent << 4) | mantissa) & 0xFF
    # Indexed by the int16 value's unsigned bit pattern (x & 0xFFFF).
    table = np.empty(65536, dtype=np.uint8)
    table[x & 0xFFFF] = code.astype(np.uint8)
    return table


# Built on first use, like the numpy they need.
_ulaw_decode_table = functools.cache(_build_ulaw_decode)
_ulaw_encode_table = functools.cache(_build_ulaw_encode)


def mulaw_decode(data: bytes) -> bytes:
    """G.711 µ-law bytes to 16-bit LE PCM (one sample per byte)."""
    import numpy as np

    codes = np.frombuffer(data, dtype=np.uint8)
    return bytes(_ulaw_decode_table()[codes].astype("<i2").tobytes())


def mulaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM to G.711 µ-law; a trailing odd byte is ignored."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<u2")
    return bytes(_ulaw_encode_table()[samples].tobytes())


# ----------------------------------------------------------------- PCM helpers
def pcm16_to_array(pcm: bytes) -> npt.NDArray[np.int16]:
    """View 16-bit LE PCM as int16 samples (a trailing odd byte is ignored)."""
    import numpy as np

    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int16)


def array_to_pcm16(samples: npt.ArrayLike) -> bytes:
    """Samples (any numeric dtype, clipped to int16) to 16-bit LE PCM bytes."""
    import numpy as np

    arr = np.asarray(samples)
    if arr.dtype.kind == "f":
        arr = np.rint(arr)
    return bytes(np.clip(arr, -32768, 32767).astype("<i2").tobytes())


def pcm8_to_pcm16(data: bytes) -> bytes:
    """Signed 8-bit PCM to 16-bit LE PCM (scaled by 256)."""
    import numpy as np

    return bytes((np.frombuffer(data, dtype=np.int8).astype("<i2") << 8).tobytes())


def pcm16_to_pcm8(pcm: bytes) -> bytes:
    """16-bit LE PCM to signed 8-bit PCM (top byte, arithmetic shift)."""
    import numpy as np

    return bytes((pcm16_to_array(pcm) >> 8).astype(np.int8).tobytes())


def silence(n_samples: int) -> bytes:
    """`n_samples` of 16-bit silence (none for a negative count)."""
    return bytes(max(0, n_samples) * SAMPLE_WIDTH)


# -------------------------------------------------------------- stream decoder
@dataclass(slots=True)
class DecoderStats:
    """Plain counters for /metrics."""

    payloads: int = 0
    decode_errors: int = 0  # corrupt packets (replaced by concealment)
    concealed_frames: int = 0  # frames synthesised for losses (PLC or silence)
    fec_frames: int = 0  # lost frames rebuilt from the next packet's FEC data
    unconcealed_frames: int = 0  # losses longer than max_conceal_ms: left as a hole
    discontinuities: int = 0
    odd_bytes_dropped: int = 0


class StreamDecoder:
    """One device audio stream: codec payloads in, `out_rate` PCM `AudioChunk`s out.

    The caller reports losses the packet tracker saw (`lost_before`) and stream restarts
    (`discontinuity`). Losses up to `max_conceal_ms` are filled - Opus with libopus PLC
    (and in-band FEC for the last lost frame when the codec carries it), PCM/µ-law with
    silence - so the timeline stays continuous; longer holes are left out and counted.

    `on_native`, if given, sees every piece of decoded PCM at the codec's own rate just
    before resampling (concealment included): the one place where a PCM device's bytes
    can be compared bit for bit, since the resampler's last bits vary between instances.
    """

    def __init__(
        self,
        spec: CodecSpec,
        out_rate: int = UPLINK_RATE,
        *,
        fec: bool = True,
        max_conceal_ms: int = 200,
        clock: Callable[[], float] = time.monotonic,
        on_native: Callable[[bytes], None] | None = None,
    ) -> None:
        self.spec = spec
        self.on_native = on_native
        self.out_rate = out_rate
        self.stats = DecoderStats()
        self._fec = fec
        self._max_conceal_ms = max(0, max_conceal_ms)
        self._clock = clock
        self._opus = OpusDecoder(spec.rate) if spec.kind == "opus" else None
        self._resampler = Resampler(spec.rate, out_rate)
        self._carry = b""  # odd byte of a PCM16 payload, joined to the next one
        self._frame_samples = spec.frame_samples  # last payload's duration (native rate)

    # ------------------------------------------------------------- internals
    def _native_decode(self, payload: bytes) -> bytes:
        kind = self.spec.kind
        if kind == "opus":
            assert self._opus is not None
            return self._opus.decode(payload)
        if kind == "mulaw":
            return mulaw_decode(payload)
        if kind == "pcm8":
            return pcm8_to_pcm16(payload)
        data = self._carry + payload if self._carry else payload
        if len(data) % 2:
            self._carry, data = data[-1:], data[:-1]
        else:
            self._carry = b""
        return data

    def _conceal_native(self, frames: int, next_payload: bytes | None) -> bytes:
        if frames <= 0:
            return b""
        frame_samples = self._frame_samples
        if self._opus is not None:
            frame_samples = self._opus.last_frame_samples
        budget = self.spec.rate * self._max_conceal_ms // 1000
        allowed = min(frames, budget // frame_samples) if frame_samples > 0 else 0
        self.stats.unconcealed_frames += frames - allowed
        if allowed <= 0:
            return b""
        self.stats.concealed_frames += allowed
        if self._opus is None:
            return silence(allowed * frame_samples)
        parts: list[bytes] = []
        plc_frames = allowed
        use_fec = self._fec and next_payload is not None and allowed == frames
        if use_fec:
            plc_frames -= 1
        try:
            if plc_frames:
                parts.append(self._opus.conceal(plc_frames * frame_samples))
            if use_fec:
                assert next_payload is not None
                try:
                    parts.append(self._opus.decode_fec(next_payload, frame_samples))
                    self.stats.fec_frames += 1
                except OpusError:
                    parts.append(self._opus.conceal(frame_samples))
        except OpusError:  # pragma: no cover - PLC does not fail on a live decoder
            parts.append(silence(frame_samples))
        return b"".join(parts)

    def _chunk(self, native: bytes, captured_at: float | None) -> AudioChunk | None:
        if native and self.on_native is not None:
            self.on_native(native)
        pcm = self._resampler.process(native) if native else b""
        if not pcm:
            return None
        return AudioChunk(pcm, self.out_rate, self._clock() if captured_at is None else captured_at)

    # ---------------------------------------------------------------- public
    def decode(
        self,
        payload: bytes,
        *,
        lost_before: int = 0,
        discontinuity: bool = False,
        captured_at: float | None = None,
    ) -> AudioChunk | None:
        """Decode one codec payload (never raises on bad bytes; see `stats`)."""
        self.stats.payloads += 1
        head = b""
        if discontinuity:
            head = self._restart()
        elif lost_before > 0 and self._carry:
            self.stats.odd_bytes_dropped += len(self._carry)
            self._carry = b""
        native = self._conceal_native(lost_before, payload) if not discontinuity else b""
        try:
            body = self._native_decode(payload)
        except OpusError:
            self.stats.decode_errors += 1
            body = self._conceal_native(1, None)  # keeps the timeline; counted there too
        samples = len(body) // SAMPLE_WIDTH
        if samples and self.spec.kind != "opus":
            self._frame_samples = samples
        chunk = self._chunk(native + body, captured_at)
        if head:
            pcm = head + (chunk.pcm if chunk else b"")
            ts = (
                chunk.captured_at
                if chunk
                else (self._clock() if captured_at is None else captured_at)
            )
            return AudioChunk(pcm, self.out_rate, ts)
        return chunk

    def conceal(self, frames: int, *, captured_at: float | None = None) -> AudioChunk | None:
        """Fill `frames` lost frames now (e.g. the stream stalled) without a next packet."""
        if self._carry:
            self.stats.odd_bytes_dropped += len(self._carry)
            self._carry = b""
        return self._chunk(self._conceal_native(frames, None), captured_at)

    def _restart(self) -> bytes:
        self.stats.discontinuities += 1
        if self._carry:
            self.stats.odd_bytes_dropped += len(self._carry)
        self._carry = b""
        if self._opus is not None:
            self._opus.reset()
        self._frame_samples = self.spec.frame_samples
        return self._resampler.flush()

    def reset(self) -> None:
        """Forget the stream (device reconnected or restarted); buffered audio is dropped."""
        self._carry = b""
        if self._opus is not None:
            self._opus.reset()
        self._resampler.reset()
        self._frame_samples = self.spec.frame_samples

    def flush(self, *, captured_at: float | None = None) -> AudioChunk | None:
        """Return the resampler's buffered tail (end of stream)."""
        self._carry = b""
        pcm = self._resampler.flush()
        if not pcm:
            return None
        return AudioChunk(pcm, self.out_rate, self._clock() if captured_at is None else captured_at)

    def close(self) -> None:
        """Free the Opus decoder now, if there is one; Opus cannot be decoded afterwards."""
        if self._opus is not None:
            self._opus.close()

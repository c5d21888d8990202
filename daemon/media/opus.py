"""Opus over libopus through `opuslib.api`'s ctypes bindings.

Why the low-level functions: opuslib's high-level `Decoder.decode(None, n)` (packet-loss
concealment) raises TypeError and its in-band FEC setter drops the value, so PLC and
FEC are reached here by calling `opus_decode`/`opus_encoder_ctl` directly. Every libopus
error becomes an `OpusError` (a ValueError) so callers can count a corrupt packet and go
on; nothing here raises anything else for bad packet bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any, Final, Literal

import opuslib.api.decoder as _dec
import opuslib.api.encoder as _enc
import opuslib.api.info as _info

from daemon.errors import EdgeAgentError

VALID_RATES: Final = frozenset({8000, 12000, 16000, 24000, 48000})
VALID_FRAME_MS: Final = frozenset({5, 10, 20, 40, 60})  # 2.5 ms is valid but not an int
MAX_PACKET_MS: Final = 120  # the longest duration one Opus packet can carry
MAX_PACKET_BYTES: Final = 1275 * 3 + 7  # RFC 6716 upper bound for one packet
SAMPLE_WIDTH: Final = 2

_APPLICATIONS: Final = {"voip": 2048, "audio": 2049, "restricted_lowdelay": 2051}
_SET_BITRATE: Final = 4002
_SET_COMPLEXITY: Final = 4010
_SET_INBAND_FEC: Final = 4012
_SET_PACKET_LOSS_PERC: Final = 4014
_SET_SIGNAL: Final = 4024
_RESET_STATE: Final = 4028
_SIGNAL_VOICE: Final = 3001
_BAD_ARG: Final = -1

Application = Literal["voip", "audio", "restricted_lowdelay"]


class OpusError(EdgeAgentError, ValueError):
    """A libopus call failed; `code` is the negative libopus error code (0 if ours)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def _strerror(code: int) -> str:
    try:
        raw: Any = _info.strerror(code)
    except Exception:  # pragma: no cover - libopus always answers
        return f"error {code}"
    if isinstance(raw, bytes):
        return raw.decode("ascii", "replace")
    return f"error {code}"


def _check_rate(rate: int, channels: int) -> None:
    if rate not in VALID_RATES:
        raise OpusError(f"opus: unsupported sample rate {rate} (use one of {sorted(VALID_RATES)})")
    if channels not in (1, 2):
        raise OpusError(f"opus: unsupported channel count {channels} (use 1 or 2)")


class OpusDecoder:
    """Stateful decoder: one per stream, fed packets in order, told about losses.

    `decode` handles a received packet, `conceal` synthesises audio for packets that
    never arrived (libopus PLC), `decode_fec` rebuilds the packet *before* `next_packet`
    from its in-band FEC data when the encoder sent any (else libopus falls back to PLC).
    """

    def __init__(self, rate: int = 16_000, channels: int = 1) -> None:
        _check_rate(rate, channels)
        self.rate = rate
        self.channels = channels
        self._max_samples = rate * MAX_PACKET_MS // 1000
        self._buf = (ctypes.c_int16 * (self._max_samples * channels))()
        self._ptr = ctypes.cast(self._buf, ctypes.POINTER(ctypes.c_int16))
        #: samples per channel of the last decoded packet; PLC/FEC use it as the frame size
        self.last_frame_samples = rate // 50
        self._state: Any = None
        try:
            self._state = _dec.create_state(rate, channels)
        except Exception as exc:
            raise OpusError(f"opus: decoder create failed: {exc}") from exc

    # ----------------------------------------------------------------- internals
    def _run(self, data: bytes | None, n_samples: int, fec: bool) -> bytes:
        if self._state is None:
            raise OpusError("opus: decoder is closed")
        length = 0 if data is None else len(data)
        result = int(_dec.libopus_decode(self._state, data, length, self._ptr, n_samples, int(fec)))
        if result < 0:
            raise OpusError(f"opus: decode failed: {_strerror(result)}", result)
        n = result * self.channels
        return ctypes.string_at(self._buf, n * SAMPLE_WIDTH)

    # -------------------------------------------------------------------- public
    def packet_samples(self, packet: bytes) -> int:
        """Samples per channel that `packet` decodes to; OpusError if unparseable."""
        if self._state is None:
            raise OpusError("opus: decoder is closed")
        if not packet:
            raise OpusError("opus: empty packet")
        result = int(_dec.libopus_get_nb_samples(self._state, packet, len(packet)))
        if result < 0:
            raise OpusError(f"opus: bad packet: {_strerror(result)}", result)
        return result

    def decode(self, packet: bytes) -> bytes:
        """Decode one packet to 16-bit PCM; OpusError on an empty or corrupt packet."""
        if not packet:
            raise OpusError("opus: empty packet", _BAD_ARG)
        if len(packet) > MAX_PACKET_BYTES:
            raise OpusError(f"opus: packet of {len(packet)} bytes is too long", _BAD_ARG)
        pcm = self._run(packet, self._max_samples, fec=False)
        samples = len(pcm) // (SAMPLE_WIDTH * self.channels)
        if samples:
            self.last_frame_samples = samples
        return pcm

    def conceal(self, n_samples: int) -> bytes:
        """Exactly `n_samples` (per channel) of concealment audio for lost packets."""
        if n_samples <= 0:
            return b""
        step = self.rate // 400  # PLC works in multiples of 2.5 ms
        out: list[bytes] = []
        remaining = n_samples
        while remaining > 0:
            chunk = min(self.last_frame_samples, remaining)
            chunk = min(-(-chunk // step) * step, self._max_samples)
            pcm = self._run(None, chunk, fec=False)
            if not pcm:  # pragma: no cover - libopus always fills PLC requests
                pcm = bytes(chunk * SAMPLE_WIDTH * self.channels)
            out.append(pcm)
            remaining -= len(pcm) // (SAMPLE_WIDTH * self.channels)
        return b"".join(out)[: n_samples * SAMPLE_WIDTH * self.channels]

    def decode_fec(self, next_packet: bytes, n_samples: int | None = None) -> bytes:
        """Rebuild the lost packet preceding `next_packet` from its in-band FEC data.

        `n_samples` is the lost packet's duration (default: the last frame size). Call
        `decode(next_packet)` afterwards as usual. OpusError if `next_packet` is corrupt.
        """
        if not next_packet:
            raise OpusError("opus: empty packet", _BAD_ARG)
        if len(next_packet) > MAX_PACKET_BYTES:
            raise OpusError(f"opus: packet of {len(next_packet)} bytes is too long", _BAD_ARG)
        n = self.last_frame_samples if n_samples is None else n_samples
        step = self.rate // 400
        n = max(step, min(-(-n // step) * step, self._max_samples))
        return self._run(next_packet, n, fec=True)

    def reset(self) -> None:
        """Forget history (after a stream discontinuity such as a device restart)."""
        if self._state is not None:
            _dec.libopus_ctl(self._state, _RESET_STATE)
        self.last_frame_samples = self.rate // 50

    def close(self) -> None:
        """Free libopus's state now rather than at garbage collection; idempotent."""
        state, self._state = self._state, None
        if state is not None:
            _dec.destroy(state)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


class OpusEncoder:
    """Fixed-frame encoder (the simulator's glasses and the downlink use it)."""

    def __init__(
        self,
        rate: int = 16_000,
        frame_ms: int = 20,
        application: Application = "voip",
        *,
        channels: int = 1,
        bitrate: int | None = None,
        complexity: int | None = None,
        fec: bool = False,
        packet_loss_perc: int = 0,
    ) -> None:
        _check_rate(rate, channels)
        if frame_ms not in VALID_FRAME_MS:
            raise OpusError(f"opus: unsupported frame length {frame_ms} ms")
        if application not in _APPLICATIONS:
            raise OpusError(f"opus: unknown application {application!r}")
        self.rate = rate
        self.channels = channels
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        self.frame_bytes = self.frame_samples * channels * SAMPLE_WIDTH
        self._out = (ctypes.c_char * MAX_PACKET_BYTES)()
        self._state: Any = None
        try:
            self._state = _enc.create_state(rate, channels, _APPLICATIONS[application])
        except Exception as exc:
            raise OpusError(f"opus: encoder create failed: {exc}") from exc
        if application == "voip":
            self._ctl(_SET_SIGNAL, _SIGNAL_VOICE)
        if bitrate is not None:
            self._ctl(_SET_BITRATE, bitrate)
        if complexity is not None:
            self._ctl(_SET_COMPLEXITY, complexity)
        if fec:
            self._ctl(_SET_INBAND_FEC, 1)
        if packet_loss_perc:
            self._ctl(_SET_PACKET_LOSS_PERC, packet_loss_perc)

    def _ctl(self, request: int, value: int) -> None:
        result = int(_enc.libopus_ctl(self._state, request, ctypes.c_int(value)))
        if result < 0:
            raise OpusError(f"opus: encoder ctl {request}={value} failed: {_strerror(result)}")

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly one frame (`frame_bytes` of 16-bit PCM) to one packet."""
        if self._state is None:
            raise OpusError("opus: encoder is closed")
        if len(pcm) != self.frame_bytes:
            raise OpusError(
                f"opus: encode needs {self.frame_bytes} bytes per frame, got {len(pcm)}"
            )
        src = (ctypes.c_int16 * (self.frame_samples * self.channels)).from_buffer_copy(pcm)
        ptr = ctypes.cast(src, ctypes.POINTER(ctypes.c_int16))
        result = int(
            _enc.libopus_encode(self._state, ptr, self.frame_samples, self._out, MAX_PACKET_BYTES)
        )
        if result < 0:
            raise OpusError(f"opus: encode failed: {_strerror(result)}", result)
        return ctypes.string_at(self._out, result)

    def close(self) -> None:
        """Free libopus's state now rather than at garbage collection; idempotent."""
        state, self._state = self._state, None
        if state is not None:
            _enc.destroy(state)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

"""What turns the glasses' notifications into media: the framing and codec decoders.

Why they outlive a connection: their counters (gaps, duplicates, dropped photos,
concealed frames) add up across reconnects, so `status()` and /metrics show the
device's whole history; a new link only resets their state (`new_link`). Which
decoders exist follows the profile: omi packets or the Frame message layer for audio,
omi chunks or Frame messages for photos, a button for taps.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from daemon.media.codecs import CodecSpec, DecoderStats, StreamDecoder
from daemon.peripherals.ble.button import ButtonDecoder
from daemon.peripherals.ble.framing import (
    AudioPacketTracker,
    FrameMessageDecoder,
    PhotoAssembler,
)
from daemon.peripherals.ble.profile import DeviceProfile

__all__ = ["UplinkDecoders", "jpeg_dimensions"]


def jpeg_dimensions(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, (0, 0) if none is found."""
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        if marker in (0xC0, 0xC1, 0xC2) and i + 9 <= len(jpeg):
            height, width = struct.unpack(">HH", jpeg[i + 5 : i + 9])
            return width, height
        if marker == 0xDA:
            break
        i += 2 + ((jpeg[i + 2] << 8) | jpeg[i + 3])
    return 0, 0


def _sum_decoder_stats(stats: list[DecoderStats]) -> dict[str, int]:
    return {f.name: sum(getattr(s, f.name) for s in stats) for f in fields(DecoderStats)}


class UplinkDecoders:
    """The profile's decoders, kept across connections so their counters add up.

    `on_native_pcm` (tests) sees the decoded audio at the device codec's own rate,
    with that rate, before it is resampled to 16 kHz (see `StreamDecoder`).
    """

    def __init__(
        self, profile: DeviceProfile, on_native_pcm: Callable[[bytes, int], None] | None = None
    ) -> None:
        self.tracker = AudioPacketTracker() if profile.audio.framing == "omi" else None
        self.frame_decoder = (
            FrameMessageDecoder(profile.frame_flags, max_photo_bytes=profile.photo.max_bytes)
            if profile.audio.framing == "frame" or profile.photo.framing == "frame"
            else None
        )
        self.photo_assembler = (
            PhotoAssembler(
                orientation_byte=profile.photo.orientation_byte,
                max_bytes=profile.photo.max_bytes,
                chunk_bytes=profile.photo.chunk_bytes,
            )
            if profile.photo.framing == "omi"
            else None
        )
        self.button_decoder = (
            ButtonDecoder(profile.tap.events, profile.tap.talk_events)
            if profile.tap.source == "button" else None
        )
        self._on_native_pcm = on_native_pcm
        self._decoders: dict[int, StreamDecoder] = {}
        self._retired_stats: list[DecoderStats] = []

    def decoder_for(self, codec_id: int, spec: CodecSpec) -> StreamDecoder:
        """The codec id's decoder, reset for a new stream (made on first use)."""
        decoder = self._decoders.get(codec_id)
        if decoder is None:
            hook = self._on_native_pcm
            on_native = None if hook is None else (lambda pcm: hook(pcm, spec.rate))
            decoder = self._decoders[codec_id] = StreamDecoder(spec, on_native=on_native)
        else:
            decoder.reset()
        return decoder

    def new_link(self, mtu: int) -> None:
        """Forget half-received frames and photos; omi fragments are sized by the MTU."""
        if self.tracker is not None:
            self.tracker.reset()
            self.tracker.fragment_payload_max = max(1, mtu - 6)
        if self.frame_decoder is not None:
            self.frame_decoder.reset()
        if self.photo_assembler is not None:
            self.photo_assembler.reset()

    def close(self) -> None:
        """Release the codec decoders; their counters stay in `status()`."""
        for decoder in self._decoders.values():
            decoder.close()
            self._retired_stats.append(decoder.stats)
        self._decoders.clear()

    def status(self) -> dict[str, Any]:
        """Each framing decoder's counters (those the profile uses) and the codecs' sum."""
        out: dict[str, Any] = {}
        if self.tracker is not None:
            out["audio_framing"] = asdict(self.tracker.stats)
        if self.frame_decoder is not None:
            out["frame_framing"] = asdict(self.frame_decoder.stats)
        if self.photo_assembler is not None:
            out["photo_framing"] = asdict(self.photo_assembler.stats)
        if self.button_decoder is not None:
            out["button"] = asdict(self.button_decoder.stats)
        out["decoder"] = _sum_decoder_stats(
            [*self._retired_stats, *(d.stats for d in self._decoders.values())]
        )
        return out

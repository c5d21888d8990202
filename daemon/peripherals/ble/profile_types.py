"""What a device profile holds: the frozen value types the BLE code reads.

Why apart from the file schema (`profile_schema`): the radio, framing and media code
only ever sees these checked, immutable values, built once at load time; how a TOML
file spells them, and every check on it, lives in the schema.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from daemon.errors import EdgeAgentError
from daemon.media.codecs import CodecSpec
from daemon.peripherals.ble.framing import (
    DEFAULT_MAX_PHOTO_BYTES,
    OMI_PHOTO_CHUNK_BYTES,
    FrameFlags,
)

__all__ = [
    "ATT_WRITE_HEADER",
    "BATTERY_LEVEL_UUID",
    "BATTERY_SERVICE_UUID",
    "BLUETOOTH_BASE_UUID_SUFFIX",
    "MAX_ATT_MTU",
    "AudioControl",
    "AudioFraming",
    "AudioSpec",
    "Characteristics",
    "DeviceProfile",
    "Discovery",
    "DownlinkKind",
    "DownlinkSpec",
    "IntervalEncoding",
    "LengthPrefix",
    "PhotoControl",
    "PhotoFraming",
    "PhotoSpec",
    "ProfileError",
    "TapSource",
    "TapSpec",
    "normalize_uuid",
]

BLUETOOTH_BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE_UUID: Final = "0000180f" + BLUETOOTH_BASE_UUID_SUFFIX
BATTERY_LEVEL_UUID: Final = "00002a19" + BLUETOOTH_BASE_UUID_SUFFIX
MAX_ATT_MTU: Final = 517
ATT_WRITE_HEADER: Final = 3  # opcode + handle: a write carries at most MTU - 3 bytes

AudioFraming = Literal["omi", "frame"]
PhotoFraming = Literal["omi", "frame", "none"]
DownlinkKind = Literal["none", "pcm16", "opus"]
IntervalEncoding = Literal["u8", "i8", "u16le"]
LengthPrefix = Literal["none", "u32le"]
TapSource = Literal["none", "button", "frame"]


class ProfileError(EdgeAgentError, ValueError):
    """A device profile is missing, unreadable or invalid (message is one line)."""


def normalize_uuid(value: str) -> str:
    """Lower-case 128-bit form; 16/32-bit short forms ("180F", "0x2A19") get the BT base.

    ValueError if `value` is not a UUID.
    """
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if re.fullmatch(r"[0-9a-f]{4}", text):
        return f"0000{text}{BLUETOOTH_BASE_UUID_SUFFIX}"
    if re.fullmatch(r"[0-9a-f]{8}", text):
        return f"{text}{BLUETOOTH_BASE_UUID_SUFFIX}"
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text) or (
        re.fullmatch(r"[0-9a-f]{32}", text)
    ):
        return str(uuid.UUID(text))
    raise ValueError(f"not a UUID: {value!r}")


@dataclass(frozen=True, slots=True)
class Discovery:
    """How a scan recognises the device: advertised name prefix and service UUID.

    Every list given must match: the omi family shares one service UUID, so only the
    name tells an omi from a nearby omiGlass or OpenGlass.
    """

    name_prefixes: tuple[str, ...] = ()
    service_uuids: tuple[str, ...] = ()

    def matches(self, name: str | None, service_uuids: Iterable[str] = ()) -> bool:
        """Whether an advertisement's name and service UUIDs fit every list given."""
        if self.name_prefixes and not (
            name and any(name.startswith(p) for p in self.name_prefixes)
        ):
            return False
        if not self.service_uuids:
            return True
        wanted = set(self.service_uuids)
        for u in service_uuids:
            try:
                if normalize_uuid(u) in wanted:
                    return True
            except ValueError:
                continue
        return False


@dataclass(frozen=True, slots=True)
class Characteristics:
    """GATT UUIDs (normalised). None = the device has no such characteristic."""

    audio_data: str  # notify: audio (and, for Frame, photo) data
    service: str | None = None
    codec_id: str | None = None  # read: one byte, the codec id
    audio_control: str | None = None  # write: audio start/stop commands
    photo_data: str | None = None  # notify: photo chunks
    photo_control: str | None = None  # write: photo commands
    speaker: str | None = None  # write: downlink audio
    button_service: str | None = None  # service holding `button` (None: search all)
    button: str | None = None  # notify: button events (tap.source = "button")
    battery_service: str = BATTERY_SERVICE_UUID
    battery_level: str = BATTERY_LEVEL_UUID


@dataclass(frozen=True, slots=True)
class AudioControl:
    """Bytes written to `audio_control` to start and stop the microphone stream."""

    start: bytes
    stop: bytes


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """The microphone stream: its notification layout and what each codec id means."""

    framing: AudioFraming
    default_codec: int  # used when the device has no codec characteristic or it fails
    codecs: tuple[tuple[int, CodecSpec], ...]  # codec id -> codec, sorted by id
    control: AudioControl | None = None

    def codec(self, codec_id: int) -> CodecSpec | None:
        """The codec a device-reported id stands for; None if the profile lacks it."""
        for cid, spec in self.codecs:
            if cid == codec_id:
                return spec
        return None

    @property
    def codec_map(self) -> dict[int, CodecSpec]:
        """Codec id -> codec, for lookups and display."""
        return dict(self.codecs)


@dataclass(frozen=True, slots=True)
class PhotoControl:
    """Command bytes for the photo control characteristic."""

    one_shot: bytes
    stop: bytes
    interval_prefix: bytes = b""
    interval_encoding: IntervalEncoding = "u8"
    interval_min_s: int = 1
    interval_max_s: int = 255

    def interval(self, seconds: int) -> bytes:
        """Command for a photo every `seconds` (clamped to the device's range)."""
        s = min(max(int(seconds), self.interval_min_s), self.interval_max_s)
        if self.interval_encoding == "u16le":
            value = s.to_bytes(2, "little")
        else:
            value = (s & 0xFF).to_bytes(1, "little")
        return self.interval_prefix + value


@dataclass(frozen=True, slots=True)
class PhotoSpec:
    """The camera: how photo chunks are framed and the commands that ask for them."""

    framing: PhotoFraming = "none"
    orientation_byte: bool = False
    max_bytes: int = DEFAULT_MAX_PHOTO_BYTES
    control: PhotoControl | None = None
    chunk_bytes: int = OMI_PHOTO_CHUNK_BYTES  # omi: bytes after the index in full chunks


@dataclass(frozen=True, slots=True)
class DownlinkSpec:
    """How the model's voice is written to the device speaker (kind "none": no speaker)."""

    kind: DownlinkKind = "none"
    rate: int = 0
    frame_ms: int = 20  # opus only
    chunk_bytes: int = 0  # max bytes per write; 0 = as many as the MTU allows
    length_prefix: LengthPrefix = "none"  # written before each utterance


@dataclass(frozen=True, slots=True)
class TapSpec:
    """Where a deliberate tap on the device comes from (source "none": it cannot tap)."""

    source: TapSource = "none"
    events: tuple[int, ...] = ()  # button: event codes that are a tap
    # button: event codes that are the talk gesture (push-to-talk), never a tap
    talk_events: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One wearable model as the daemon sees it, checked when its file was loaded."""

    name: str  # file stem
    display_name: str
    source: Path
    discovery: Discovery
    characteristics: Characteristics
    audio: AudioSpec
    photo: PhotoSpec
    downlink: DownlinkSpec
    min_mtu: int = 23  # the device sends nothing useful below this
    max_mtu: int | None = None
    bonding_required: bool = False
    frame_flags: FrameFlags | None = None  # set when any framing is "frame"
    tap: TapSpec = TapSpec()

    @property
    def can_talk(self) -> bool:
        """Whether the device has a talk gesture (push-to-talk) apart from its tap."""
        if self.tap.source == "button":
            return bool(self.tap.talk_events)
        return self.tap.source == "frame" and self.frame_flags is not None \
            and self.frame_flags.talk is not None

    @property
    def has_camera(self) -> bool:
        """Photos on request: the device has photo commands."""
        return self.photo.control is not None

    def matches_advertisement(self, name: str | None, service_uuids: Iterable[str] = ()) -> bool:
        """Whether a scan result is this model (see `Discovery.matches`)."""
        return self.discovery.matches(name, service_uuids)

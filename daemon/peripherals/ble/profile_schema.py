"""The device profile file (schema 1) as pydantic models, and their checks.

Why pydantic: the daemon's configuration is validated the same way, so a profile
mistake reads like a configuration mistake - one line, `key: reason`, made by
`daemon.config.describe_error` - and a new key is one typed field, not a hand-written
reader. Each value type below checks what TOML can hold and words its error as
device_profiles/README.md shows; rules that span keys run once a table's values are
valid, and rules that span tables once the whole file is. `ProfileFile.to_profile()`
builds the frozen `DeviceProfile` the BLE code reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Self, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.config import describe_error
from daemon.media.codecs import CODEC_KINDS, CodecKind, CodecSpec
from daemon.media.types import SAMPLE_WIDTH
from daemon.peripherals.ble.button import OMI_BUTTON_SINGLE_TAP
from daemon.peripherals.ble.framing import (
    DEFAULT_MAX_PHOTO_BYTES,
    OMI_PHOTO_CHUNK_BYTES,
    FrameFlags,
)
from daemon.peripherals.ble.profile_types import (
    ATT_WRITE_HEADER,
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    MAX_ATT_MTU,
    AudioControl,
    AudioFraming,
    AudioSpec,
    Characteristics,
    DeviceProfile,
    Discovery,
    DownlinkKind,
    DownlinkSpec,
    IntervalEncoding,
    LengthPrefix,
    PhotoControl,
    PhotoFraming,
    PhotoSpec,
    ProfileError,
    TapSource,
    TapSpec,
    normalize_uuid,
)

__all__ = ["ProfileFile", "parse_profile"]

INTERVAL_RANGES: Final = {"u8": (0, 0xFF), "i8": (-128, 127), "u16le": (0, 0xFFFF)}
_CODEC_ID: Final = re.compile(r"\d{1,3}")


# ==================================================================== value types
# Each check takes what TOML parsed and returns the value, or raises ValueError with
# the reason; pydantic puts the key in front.
def _type_name(value: Any) -> str:
    return type(value).__name__


def _integer(lo: int | None = None, hi: int | None = None) -> PlainValidator:
    """An integer, lo..hi when given; a TOML boolean is not one."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if lo is not None and hi is not None and not lo <= value <= hi:
            raise ValueError(f"{value} out of range {lo}..{hi}")
        return value

    return PlainValidator(check)


def _integers(lo: int, hi: int) -> PlainValidator:
    """A list of integers lo..hi, as a tuple."""

    def check(value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value
        ):
            raise ValueError(f"expected a list of integers {lo}..{hi}")
        return tuple(int(v) for v in value)

    return PlainValidator(check)


def _check_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_type_name(value)}")
    return value


def _check_boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_type_name(value)}")
    return value


def _check_uuid(value: Any) -> str:
    text = _check_string(value)
    try:
        return normalize_uuid(text)
    except ValueError:
        raise ValueError(f"bad UUID {text!r}") from None


def _check_strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _check_bytes(value: Any) -> bytes:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFF for v in value
    ):
        raise ValueError("expected a list of byte values 0..255, e.g. [0x01, 0xFF]")
    return bytes(value)


def _choice(choices: tuple[str, ...]) -> PlainValidator:
    """One of `choices` (the values of a Literal)."""

    def check(value: Any) -> str:
        text = _check_string(value)
        if text not in choices:
            raise ValueError(f"unknown value {text!r} (expected one of: {', '.join(choices)})")
        return text

    return PlainValidator(check)


def _plain(check: Callable[[Any], Any]) -> PlainValidator:
    return PlainValidator(check)


Str = Annotated[str, _plain(_check_string)]
Bool = Annotated[bool, _plain(_check_boolean)]
Uuid = Annotated[str, _plain(_check_uuid)]
OptionalUuid = Annotated[str | None, _plain(_check_uuid)]
Strings = Annotated[tuple[str, ...], _plain(_check_strings)]
Bytes = Annotated[bytes, _plain(_check_bytes)]
Byte = Annotated[int, _integer(0, 0xFF)]
Mtu = Annotated[int, _integer(23, MAX_ATT_MTU)]
FrameMs = Annotated[int, _integer(1, 120)]


# ======================================================================== tables
def _is_table(annotation: Any) -> bool:
    return get_origin(annotation) is dict or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    )


class _Table(BaseModel):
    """A TOML table: unknown keys are errors, and a missing required key is named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _a_table(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("expected a table")
        for name, field in cls.model_fields.items():
            key = field.alias or name
            if field.is_required() and key not in data:
                what = "table" if _is_table(field.annotation) else "key"
                raise ValueError(f"{key}: missing required {what}")
        return data


class DiscoveryTable(_Table):
    """`[discovery]`: at least one list; every list given must match a scan result."""

    name_prefixes: Strings = ()
    service_uuids: Strings = ()

    @model_validator(mode="after")
    def _usable(self) -> Self:
        for i, text in enumerate(self.service_uuids):  # checked here to name the index
            try:
                normalize_uuid(text)
            except ValueError:
                raise ValueError(f"service_uuids[{i}]: bad UUID {text!r}") from None
        if not self.name_prefixes and not self.service_uuids:
            raise ValueError("name_prefixes: give name_prefixes and/or service_uuids")
        return self

    def to_value(self) -> Discovery:
        return Discovery(self.name_prefixes, tuple(map(normalize_uuid, self.service_uuids)))


class CharacteristicsTable(_Table):
    """`[characteristics]`: GATT UUIDs in any accepted spelling, stored normalised."""

    audio_data: Uuid
    service: OptionalUuid = None
    codec_id: OptionalUuid = None
    audio_control: OptionalUuid = None
    photo_data: OptionalUuid = None
    photo_control: OptionalUuid = None
    speaker: OptionalUuid = None
    button_service: OptionalUuid = None
    button: OptionalUuid = None
    battery_service: Uuid = BATTERY_SERVICE_UUID
    battery_level: Uuid = BATTERY_LEVEL_UUID

    def to_value(self) -> Characteristics:
        return Characteristics(**self.model_dump())


class CodecTable(_Table):
    """One `[audio.codecs]` entry: what a codec id means."""

    codec: Annotated[CodecKind, _choice(CODEC_KINDS)]
    rate: Annotated[int, _integer(1, 192_000)]
    frame_ms: FrameMs = 20

    @model_validator(mode="after")
    def _playable(self) -> Self:
        if self.codec != "opus" and "frame_ms" in self.model_fields_set:
            raise ValueError("frame_ms: only opus codecs take frame_ms")
        try:
            self.to_value()
        except ValueError as exc:
            raise ValueError(f"{'rate' if 'rate' in str(exc) else 'frame_ms'}: {exc}") from None
        return self

    def to_value(self) -> CodecSpec:
        return CodecSpec(self.codec, self.rate, self.frame_ms)


class AudioControlTable(_Table):
    """`[audio.control]`: bytes that start and stop the microphone."""

    start: Bytes
    stop: Bytes

    def to_value(self) -> AudioControl:
        return AudioControl(self.start, self.stop)


class AudioTable(_Table):
    """`[audio]`: the microphone's framing, codecs and optional start/stop commands."""

    framing: Annotated[AudioFraming, _choice(get_args(AudioFraming))]
    codecs: dict[str, CodecTable]
    default_codec: Annotated[int, _integer(0, 255)]
    control: AudioControlTable | None = None

    @field_validator("codecs", mode="before")
    @classmethod
    def _codec_ids(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a table")
        for raw_id in value:
            if not _CODEC_ID.fullmatch(raw_id) or int(raw_id) > 255:
                raise ValueError(f"{raw_id}: codec ids are integers 0..255")
        if not value:
            raise ValueError("at least one codec is required")
        return value

    @model_validator(mode="after")
    def _default_known(self) -> Self:
        if self.default_codec not in {int(raw_id) for raw_id in self.codecs}:
            raise ValueError(
                f"default_codec: codec id {self.default_codec} is not in audio.codecs"
            )
        return self

    def to_value(self) -> AudioSpec:
        codecs = sorted(
            ((int(raw_id), entry.to_value()) for raw_id, entry in self.codecs.items()),
            key=lambda c: c[0],
        )
        control = self.control.to_value() if self.control is not None else None
        return AudioSpec(self.framing, self.default_codec, tuple(codecs), control)


class PhotoControlTable(_Table):
    """`[photo.control]`: one-shot, stop, and an interval in the device's encoding."""

    one_shot: Bytes
    stop: Bytes
    interval_prefix: Bytes = b""
    interval_encoding: Annotated[IntervalEncoding, _choice(get_args(IntervalEncoding))] = "u8"
    interval_min_s: Annotated[int | None, _integer()] = None  # default: by the encoding
    interval_max_s: Annotated[int | None, _integer()] = None

    @model_validator(mode="after")
    def _encodable(self) -> Self:
        lo, hi = INTERVAL_RANGES[self.interval_encoding]
        for key, value in (
            ("interval_min_s", self.interval_min_s),
            ("interval_max_s", self.interval_max_s),
        ):
            if value is not None and not lo <= value <= hi:
                raise ValueError(f"{key}: {value} out of range {lo}..{hi}")
        imin, imax = self.interval_bounds()
        if imax < imin or imin < 1:
            raise ValueError(f"interval_max_s: bad interval range {imin}..{imax} s")
        return self

    def interval_bounds(self) -> tuple[int, int]:
        """The interval range in seconds, each end defaulting to what the encoding holds."""
        lo, hi = INTERVAL_RANGES[self.interval_encoding]
        imin = max(1, lo) if self.interval_min_s is None else self.interval_min_s
        return imin, hi if self.interval_max_s is None else self.interval_max_s

    def to_value(self) -> PhotoControl:
        imin, imax = self.interval_bounds()
        return PhotoControl(
            self.one_shot, self.stop, self.interval_prefix, self.interval_encoding, imin, imax
        )


class PhotoTable(_Table):
    """`[photo]`: how photo chunks are framed, their bounds, and the camera commands."""

    framing: Annotated[PhotoFraming, _choice(get_args(PhotoFraming))]
    orientation_byte: Bool = False
    max_bytes: Annotated[int, _integer(1024, 16 * 2**20)] = DEFAULT_MAX_PHOTO_BYTES
    chunk_bytes: Annotated[int, _integer(0, 512)] = OMI_PHOTO_CHUNK_BYTES
    control: PhotoControlTable | None = None

    @model_validator(mode="after")
    def _fits_framing(self) -> Self:
        if self.orientation_byte and self.framing != "omi":
            raise ValueError("orientation_byte: only omi photo framing has an orientation byte")
        if self.framing != "omi" and "chunk_bytes" in self.model_fields_set:
            raise ValueError("chunk_bytes: only omi photo framing has fixed-size chunks")
        if self.framing == "none" and self.control is not None:
            raise ValueError("control: photo commands need a photo framing other than none")
        return self

    def to_value(self) -> PhotoSpec:
        control = self.control.to_value() if self.control is not None else None
        return PhotoSpec(
            self.framing, self.orientation_byte, self.max_bytes, control, self.chunk_bytes
        )


class DownlinkTable(_Table):
    """`[downlink]`: what the speaker characteristic takes (kind "none": nothing else)."""

    kind: Annotated[DownlinkKind, _choice(get_args(DownlinkKind))]
    rate: Annotated[int | None, _integer(8000, 48000)] = None  # required unless "none"
    frame_ms: FrameMs = 20
    chunk_bytes: Annotated[int, _integer(0, 65535)] = 0
    length_prefix: Annotated[LengthPrefix, _choice(get_args(LengthPrefix))] = "none"

    @model_validator(mode="after")
    def _writable(self) -> Self:
        if self.kind == "none":  # a speaker-less table takes no other key
            for key in type(self).model_fields:
                if key != "kind" and key in self.model_fields_set:
                    raise ValueError(f"{key}: unknown key")
            return self
        if self.rate is None:
            raise ValueError("rate: missing required key")
        try:
            CodecSpec("opus" if self.kind == "opus" else "pcm16", self.rate, self.frame_ms)
        except ValueError as exc:
            raise ValueError(f"rate: {exc}") from None
        return self  # chunk_bytes: checked with the file (after the speaker it needs)

    def to_value(self) -> DownlinkSpec:
        if self.kind == "none" or self.rate is None:
            return DownlinkSpec()
        return DownlinkSpec(
            self.kind, self.rate, self.frame_ms, self.chunk_bytes, self.length_prefix
        )


class TapTable(_Table):
    """`[tap]`: where a deliberate tap comes from; button event codes that count."""

    source: Annotated[TapSource, _choice(get_args(TapSource))]
    events: Annotated[tuple[int, ...] | None, _integers(-(2**31), 2**31 - 1)] = None
    talk_events: Annotated[tuple[int, ...], _integers(-(2**31), 2**31 - 1)] = ()

    @model_validator(mode="after")
    def _events_fit_source(self) -> Self:
        if self.source == "button":
            if self.events == ():
                raise ValueError("events: give at least one event code")
            # one gesture with two meanings would let "talk" confirm an unlock
            both = set(self.to_value().events) & set(self.talk_events)
            if both:
                codes = ", ".join(map(str, sorted(both)))
                raise ValueError(f"talk_events: {codes} also in events; the talk gesture "
                                 "must differ from the tap")
        elif self.events is not None:
            raise ValueError('events: only tap.source = "button" has event codes')
        elif self.talk_events:
            raise ValueError('talk_events: only tap.source = "button" has event codes')
        return self

    def to_value(self) -> TapSpec:
        if self.source != "button":
            return TapSpec(self.source)
        events = (OMI_BUTTON_SINGLE_TAP,) if self.events is None else self.events
        return TapSpec(self.source, events, self.talk_events)


class FrameProtocolTable(_Table):
    """`[frame_protocol]`: the Frame message layer's prefix and flag bytes."""

    data_prefix: Byte
    audio: Byte
    audio_final: Byte
    photo: Byte
    photo_final: Byte
    tap: Annotated[int | None, _integer(0, 0xFF)] = None
    talk: Annotated[int | None, _integer(0, 0xFF)] = None

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        try:
            self.to_value()
        except ValueError as exc:
            raise ValueError(f"audio: {exc}") from None
        return self

    def to_value(self) -> FrameFlags:
        return FrameFlags(**self.model_dump())


# ===================================================================== the file
class ProfileFile(_Table):
    """A whole profile file; the tables' own checks ran before `_consistent`."""

    schema_version: Annotated[int, _integer(1, 1)] = Field(1, alias="schema")
    display_name: Str
    min_mtu: Mtu = 23
    max_mtu: Annotated[int | None, _integer(23, MAX_ATT_MTU)] = None
    bonding_required: Bool = False
    discovery: DiscoveryTable
    characteristics: CharacteristicsTable
    audio: AudioTable
    photo: PhotoTable | None = None
    downlink: DownlinkTable | None = None
    tap: TapTable | None = None
    frame_protocol: FrameProtocolTable | None = None

    @field_validator("display_name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Rules that span tables, in the order the tables come."""
        for rule in (_mtu_range, _audio_needs, _photo_needs, _downlink_needs, _tap_needs):
            rule(self)
        _frame_protocol_fits(self)
        return self

    @property
    def uses_frame(self) -> bool:
        """Whether any stream goes through the Frame message layer."""
        return self.audio.framing == "frame" or (
            self.photo is not None and self.photo.framing == "frame"
        )

    def to_profile(self, file: Path) -> DeviceProfile:
        """The checked values, named after the file they came from."""
        return DeviceProfile(
            name=file.stem,
            display_name=self.display_name,
            source=file,
            discovery=self.discovery.to_value(),
            characteristics=self.characteristics.to_value(),
            audio=self.audio.to_value(),
            photo=self.photo.to_value() if self.photo is not None else PhotoSpec(),
            downlink=self.downlink.to_value() if self.downlink is not None else DownlinkSpec(),
            min_mtu=self.min_mtu,
            max_mtu=self.max_mtu,
            bonding_required=self.bonding_required,
            frame_flags=(
                self.frame_protocol.to_value() if self.frame_protocol is not None else None
            ),
            tap=self.tap.to_value() if self.tap is not None else TapSpec(),
        )


# Each rule raises ValueError("key: reason"), the key from the top of the file.
def _mtu_range(f: ProfileFile) -> None:
    if f.max_mtu is not None and f.max_mtu < f.min_mtu:
        raise ValueError(f"max_mtu: {f.max_mtu} is below min_mtu {f.min_mtu}")


def _audio_needs(f: ProfileFile) -> None:
    if f.audio.control is not None and f.characteristics.audio_control is None:
        raise ValueError("characteristics.audio_control: required by audio.control")


def _photo_needs(f: ProfileFile) -> None:
    photo, ch = f.photo, f.characteristics
    if photo is None:
        return
    if photo.framing != "none" and ch.photo_data is None:
        raise ValueError(
            f"characteristics.photo_data: required by photo.framing = {photo.framing!r}"
        )
    if photo.control is not None and ch.photo_control is None:
        raise ValueError("characteristics.photo_control: required by photo.control")


def _downlink_needs(f: ProfileFile) -> None:
    dl = f.downlink
    if dl is None or dl.kind == "none":
        return
    if f.characteristics.speaker is None:
        raise ValueError(f"characteristics.speaker: required by downlink.kind = {dl.kind!r}")
    chunk = dl.chunk_bytes
    if chunk and dl.kind != "pcm16":
        raise ValueError("downlink.chunk_bytes: only pcm16 downlinks are written in chunks")
    if chunk % SAMPLE_WIDTH:
        raise ValueError(f"downlink.chunk_bytes: {chunk} is not a whole number of samples")
    largest = f.max_mtu or MAX_ATT_MTU
    att_max = largest - ATT_WRITE_HEADER
    if chunk > att_max:
        raise ValueError(
            f"downlink.chunk_bytes: {chunk} does not fit one write at the largest "
            f"MTU {largest} (at most {att_max} bytes)"
        )


def _tap_needs(f: ProfileFile) -> None:
    tap = f.tap
    if tap is None:
        return
    if tap.source == "button" and f.characteristics.button is None:
        raise ValueError('characteristics.button: required by tap.source = "button"')
    if tap.source == "frame" and f.audio.framing != "frame":
        raise ValueError('tap.source: a "frame" tap needs audio.framing = "frame"')


def _frame_protocol_fits(f: ProfileFile) -> None:
    flags = f.frame_protocol
    if flags is None:
        if f.uses_frame:
            raise ValueError("frame_protocol: missing required table")
        return
    if not f.uses_frame:
        raise ValueError('frame_protocol: only used with framing = "frame"')
    frame_tap = f.tap is not None and f.tap.source == "frame"
    if frame_tap and flags.tap is None:
        raise ValueError('frame_protocol.tap: required by tap.source = "frame"')
    if not frame_tap and flags.tap is not None:
        raise ValueError('frame_protocol.tap: only used with tap.source = "frame"')
    if not frame_tap and flags.talk is not None:
        raise ValueError('frame_protocol.talk: only used with tap.source = "frame"')


def parse_profile(data: Mapping[str, Any], file: Path) -> DeviceProfile:
    """Check a parsed TOML document; ProfileError names the file and the key."""
    try:
        return ProfileFile.model_validate(data).to_profile(file)
    except ValidationError as exc:
        raise ProfileError(f"{file}: {describe_error(exc)}") from None

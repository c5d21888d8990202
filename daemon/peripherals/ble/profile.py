"""Device profiles: what one wearable model looks like on the air, loaded from TOML.

Why data, not code: omi, omiGlass, OpenGlass and Frame differ only in UUIDs, codec ids,
framing and a few command bytes; a new wearable should be a new file in
`device_profiles/`, reviewed like configuration. Everything is checked at load time so
a typo fails with one line naming the file and the key, never later over the air.
The schema is documented in device_profiles/README.md.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from daemon.media.codecs import CODEC_KINDS, CodecSpec
from daemon.media.types import SAMPLE_WIDTH
from daemon.peripherals.ble.framing import (
    DEFAULT_MAX_PHOTO_BYTES,
    OMI_BUTTON_SINGLE_TAP,
    OMI_PHOTO_CHUNK_BYTES,
    FrameFlags,
)

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

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INTERVAL_RANGES: Final = {"u8": (0, 0xFF), "i8": (-128, 127), "u16le": (0, 0xFFFF)}


class ProfileError(ValueError):
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


# ============================================================== schema dataclasses
@dataclass(frozen=True, slots=True)
class Discovery:
    """How a scan recognises the device: advertised name prefix and service UUID.

    Every list given must match: the omi family shares one service UUID, so only the
    name tells an omi from a nearby omiGlass or OpenGlass.
    """

    name_prefixes: tuple[str, ...] = ()
    service_uuids: tuple[str, ...] = ()

    def matches(self, name: str | None, service_uuids: Iterable[str] = ()) -> bool:
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
    framing: AudioFraming
    default_codec: int  # used when the device has no codec characteristic or it fails
    codecs: tuple[tuple[int, CodecSpec], ...]  # codec id -> codec, sorted by id
    control: AudioControl | None = None

    def codec(self, codec_id: int) -> CodecSpec | None:
        for cid, spec in self.codecs:
            if cid == codec_id:
                return spec
        return None

    @property
    def codec_map(self) -> dict[int, CodecSpec]:
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


@dataclass(frozen=True, slots=True)
class DeviceProfile:
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
    def has_camera(self) -> bool:
        """Photos on request: the device has photo commands."""
        return self.photo.control is not None

    def matches_advertisement(self, name: str | None, service_uuids: Iterable[str] = ()) -> bool:
        return self.discovery.matches(name, service_uuids)


# ========================================================================= loading
_MISSING: Final = object()


class _Table:
    """One TOML table being read: typed getters, key paths for errors, unknown keys."""

    def __init__(self, data: Mapping[str, Any], prefix: str, file: Path) -> None:
        self.data = data
        self.prefix = prefix
        self.file = file
        self.used: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str) -> ProfileError:
        return ProfileError(f"{self.file}: {self.key(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: object) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "missing required key")
        return default

    def string(self, key: str, default: object = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        return value

    def integer(self, key: str, default: object = _MISSING, lo: int = 0, hi: int = 2**31) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} out of range {lo}..{hi}")
        return value

    def boolean(self, key: str, default: object = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {type(value).__name__}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: object = _MISSING) -> Any:
        value = self.string(key, default)
        if value is not default and value not in choices:
            raise self.error(
                key, f"unknown value {value!r} (expected one of: {', '.join(choices)})"
            )
        return value

    def uuid(self, key: str, default: object = _MISSING) -> Any:
        value = self.string(key, default)
        if value is default or value is None:
            return value
        try:
            return normalize_uuid(value)
        except ValueError:
            raise self.error(key, f"bad UUID {value!r}") from None

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "expected a list of strings")
        return tuple(value)

    def uuids(self, key: str) -> tuple[str, ...]:
        out = []
        for i, text in enumerate(self.strings(key)):
            try:
                out.append(normalize_uuid(text))
            except ValueError:
                raise self.error(f"{key}[{i}]", f"bad UUID {text!r}") from None
        return tuple(out)

    def integers(self, key: str, default: tuple[int, ...], lo: int, hi: int) -> tuple[int, ...]:
        if key not in self.data:
            self.used.add(key)
            return default
        value = self._get(key, default)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value
        ):
            raise self.error(key, f"expected a list of integers {lo}..{hi}")
        return tuple(int(v) for v in value)

    def byte_string(self, key: str, default: object = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFF for v in value
        ):
            raise self.error(key, "expected a list of byte values 0..255, e.g. [0x01, 0xFF]")
        return bytes(value)

    def table(self, key: str, required: bool = False) -> _Table | None:
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing required table")
            return None
        if not isinstance(value, dict):
            raise self.error(key, "expected a table")
        return _Table(value, self.key(key), self.file)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(key, "unknown key")


def _read_codecs(audio: _Table) -> tuple[tuple[int, CodecSpec], ...]:
    table = audio.table("codecs", required=True)
    assert table is not None
    codecs: list[tuple[int, CodecSpec]] = []
    for raw_id in table.data:
        if not re.fullmatch(r"\d{1,3}", raw_id) or int(raw_id) > 255:
            raise table.error(raw_id, "codec ids are integers 0..255")
        entry = table.table(raw_id, required=True)
        assert entry is not None
        kind = entry.choice("codec", CODEC_KINDS)
        rate = entry.integer("rate", lo=1, hi=192_000)
        frame_ms = entry.integer("frame_ms", 20, lo=1, hi=120)
        if kind != "opus" and entry.has("frame_ms"):
            raise entry.error("frame_ms", "only opus codecs take frame_ms")
        entry.finish()
        try:
            spec = CodecSpec(kind, rate, frame_ms)
        except ValueError as exc:
            raise entry.error("rate" if "rate" in str(exc) else "frame_ms", str(exc)) from None
        codecs.append((int(raw_id), spec))
    table.finish()
    if not codecs:
        raise audio.error("codecs", "at least one codec is required")
    return tuple(sorted(codecs, key=lambda c: c[0]))


def _parse(data: Mapping[str, Any], file: Path) -> DeviceProfile:
    root = _Table(data, "", file)
    root.integer("schema", 1, lo=1, hi=1)
    display_name = root.string("display_name")
    if not display_name.strip():
        raise root.error("display_name", "must not be empty")
    min_mtu = root.integer("min_mtu", 23, lo=23, hi=517)
    max_mtu = root.integer("max_mtu", None, lo=23, hi=517)
    if max_mtu is not None and max_mtu < min_mtu:
        raise root.error("max_mtu", f"{max_mtu} is below min_mtu {min_mtu}")
    bonding = root.boolean("bonding_required", False)

    # discovery
    disc_t = root.table("discovery", required=True)
    assert disc_t is not None
    discovery = Discovery(disc_t.strings("name_prefixes"), disc_t.uuids("service_uuids"))
    disc_t.finish()
    if not discovery.name_prefixes and not discovery.service_uuids:
        raise disc_t.error("name_prefixes", "give name_prefixes and/or service_uuids")

    # characteristics
    ch_t = root.table("characteristics", required=True)
    assert ch_t is not None
    chars = Characteristics(
        audio_data=ch_t.uuid("audio_data"),
        service=ch_t.uuid("service", None),
        codec_id=ch_t.uuid("codec_id", None),
        audio_control=ch_t.uuid("audio_control", None),
        photo_data=ch_t.uuid("photo_data", None),
        photo_control=ch_t.uuid("photo_control", None),
        speaker=ch_t.uuid("speaker", None),
        button_service=ch_t.uuid("button_service", None),
        button=ch_t.uuid("button", None),
        battery_service=ch_t.uuid("battery_service", BATTERY_SERVICE_UUID),
        battery_level=ch_t.uuid("battery_level", BATTERY_LEVEL_UUID),
    )
    ch_t.finish()

    # audio
    au_t = root.table("audio", required=True)
    assert au_t is not None
    audio_framing = au_t.choice("framing", get_args(AudioFraming))
    codecs = _read_codecs(au_t)
    default_codec = au_t.integer("default_codec", lo=0, hi=255)
    if default_codec not in dict(codecs):
        raise au_t.error("default_codec", f"codec id {default_codec} is not in audio.codecs")
    audio_control = None
    ac_t = au_t.table("control")
    if ac_t is not None:
        audio_control = AudioControl(ac_t.byte_string("start"), ac_t.byte_string("stop"))
        ac_t.finish()
        if chars.audio_control is None:
            raise ch_t.error("audio_control", "required by audio.control")
    au_t.finish()
    audio = AudioSpec(audio_framing, default_codec, codecs, audio_control)

    # photo
    photo = PhotoSpec()
    ph_t = root.table("photo")
    if ph_t is not None:
        framing = ph_t.choice("framing", get_args(PhotoFraming))
        orientation = ph_t.boolean("orientation_byte", False)
        if orientation and framing != "omi":
            raise ph_t.error("orientation_byte", "only omi photo framing has an orientation byte")
        max_bytes = ph_t.integer("max_bytes", DEFAULT_MAX_PHOTO_BYTES, lo=1024, hi=16 * 2**20)
        chunk_bytes = ph_t.integer("chunk_bytes", OMI_PHOTO_CHUNK_BYTES, lo=0, hi=512)
        if framing != "omi" and ph_t.has("chunk_bytes"):
            raise ph_t.error("chunk_bytes", "only omi photo framing has fixed-size chunks")
        control = None
        pc_t = ph_t.table("control")
        if pc_t is not None:
            encoding = pc_t.choice("interval_encoding", get_args(IntervalEncoding), "u8")
            lo, hi = _INTERVAL_RANGES[encoding]
            imin = pc_t.integer("interval_min_s", max(1, lo), lo=lo, hi=hi)
            imax = pc_t.integer("interval_max_s", hi, lo=lo, hi=hi)
            if imax < imin or imin < 1:
                raise pc_t.error("interval_max_s", f"bad interval range {imin}..{imax} s")
            control = PhotoControl(
                one_shot=pc_t.byte_string("one_shot"),
                stop=pc_t.byte_string("stop"),
                interval_prefix=pc_t.byte_string("interval_prefix", b""),
                interval_encoding=encoding,
                interval_min_s=imin,
                interval_max_s=imax,
            )
            pc_t.finish()
        ph_t.finish()
        if framing == "none" and control is not None:
            raise ph_t.error("control", "photo commands need a photo framing other than none")
        if framing != "none" and chars.photo_data is None:
            raise ch_t.error("photo_data", f"required by photo.framing = {framing!r}")
        if control is not None and chars.photo_control is None:
            raise ch_t.error("photo_control", "required by photo.control")
        photo = PhotoSpec(framing, orientation, max_bytes, control, chunk_bytes)

    # downlink
    downlink = DownlinkSpec()
    dl_t = root.table("downlink")
    if dl_t is not None:
        kind = dl_t.choice("kind", get_args(DownlinkKind))
        if kind == "none":
            dl_t.finish()
        else:
            rate = dl_t.integer("rate", lo=8000, hi=48000)
            frame_ms = dl_t.integer("frame_ms", 20, lo=1, hi=120)
            chunk = dl_t.integer("chunk_bytes", 0, lo=0, hi=65535)
            prefix = dl_t.choice("length_prefix", get_args(LengthPrefix), "none")
            dl_t.finish()
            try:
                CodecSpec("opus" if kind == "opus" else "pcm16", rate, frame_ms)
            except ValueError as exc:
                raise dl_t.error("rate", str(exc)) from None
            if chars.speaker is None:
                raise ch_t.error("speaker", f"required by downlink.kind = {kind!r}")
            if chunk and kind != "pcm16":
                raise dl_t.error("chunk_bytes", "only pcm16 downlinks are written in chunks")
            if chunk % SAMPLE_WIDTH:
                raise dl_t.error("chunk_bytes", f"{chunk} is not a whole number of samples")
            att_max = (max_mtu or MAX_ATT_MTU) - ATT_WRITE_HEADER
            if chunk > att_max:
                raise dl_t.error(
                    "chunk_bytes",
                    f"{chunk} does not fit one write at the largest MTU "
                    f"{max_mtu or MAX_ATT_MTU} (at most {att_max} bytes)",
                )
            downlink = DownlinkSpec(kind, rate, frame_ms, chunk, prefix)

    # tap (optional)
    tap = TapSpec()
    tap_t = root.table("tap")
    if tap_t is not None:
        source = tap_t.choice("source", get_args(TapSource))
        events: tuple[int, ...] = ()
        if source == "button":
            events = tap_t.integers("events", (OMI_BUTTON_SINGLE_TAP,), lo=-(2**31), hi=2**31 - 1)
            if not events:
                raise tap_t.error("events", "give at least one event code")
            if chars.button is None:
                raise ch_t.error("button", 'required by tap.source = "button"')
        elif tap_t.has("events"):
            raise tap_t.error("events", 'only tap.source = "button" has event codes')
        if source == "frame" and audio.framing != "frame":
            raise tap_t.error("source", 'a "frame" tap needs audio.framing = "frame"')
        tap_t.finish()
        tap = TapSpec(source, events)

    # frame message layer
    flags = None
    uses_frame = audio.framing == "frame" or photo.framing == "frame"
    fp_t = root.table("frame_protocol", required=uses_frame)
    if fp_t is not None:
        if not uses_frame:
            raise root.error("frame_protocol", 'only used with framing = "frame"')
        try:
            flags = FrameFlags(
                data_prefix=fp_t.integer("data_prefix", lo=0, hi=255),
                audio=fp_t.integer("audio", lo=0, hi=255),
                audio_final=fp_t.integer("audio_final", lo=0, hi=255),
                photo=fp_t.integer("photo", lo=0, hi=255),
                photo_final=fp_t.integer("photo_final", lo=0, hi=255),
                tap=fp_t.integer("tap", None, lo=0, hi=255),
            )
        except ValueError as exc:
            if isinstance(exc, ProfileError):
                raise
            raise fp_t.error("audio", str(exc)) from None
        fp_t.finish()
        if tap.source == "frame" and flags.tap is None:
            raise fp_t.error("tap", 'required by tap.source = "frame"')
        if tap.source != "frame" and flags.tap is not None:
            raise fp_t.error("tap", 'only used with tap.source = "frame"')
    root.finish()

    return DeviceProfile(
        name=file.stem,
        display_name=display_name,
        source=file,
        discovery=discovery,
        characteristics=chars,
        audio=audio,
        photo=photo,
        downlink=downlink,
        min_mtu=min_mtu,
        max_mtu=max_mtu,
        bonding_required=bonding,
        frame_flags=flags,
        tap=tap,
    )


def default_profile_dir() -> Path:
    """The repository's device_profiles/ (or an installed share/edge-agent copy)."""
    here = Path(__file__).resolve().parents[3] / "device_profiles"
    installed = Path(sys.prefix) / "share" / "edge-agent" / "device_profiles"
    if here.is_dir() or not installed.is_dir():
        return here
    return installed


def list_profiles(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Names (file stems) of the profiles in `directory` (default: device_profiles/)."""
    folder = Path(directory) if directory is not None else default_profile_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml") if p.is_file())


def load_profile(
    name_or_path: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None
) -> DeviceProfile:
    """Load and validate a profile by name (a file in `directory`) or by path.

    Raises ProfileError with one line naming the file and the offending key.
    """
    text = os.fspath(name_or_path)
    is_path = (
        not isinstance(name_or_path, str) or os.sep in text or "/" in text or text.endswith(".toml")
    )
    if is_path:
        file = Path(text)
    else:
        if not _NAME_RE.match(text):
            raise ProfileError(f"bad device profile name {text!r}")
        folder = Path(directory) if directory is not None else default_profile_dir()
        file = folder / f"{text}.toml"
        if not file.is_file():
            known = ", ".join(list_profiles(folder)) or "none"
            raise ProfileError(f"unknown device profile {text!r} in {folder} (available: {known})")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{file}: invalid TOML: {exc}") from None
    return _parse(data, file)


def load_all(directory: str | os.PathLike[str] | None = None) -> dict[str, DeviceProfile]:
    """Every profile in `directory`, validated (the first bad one raises)."""
    folder = Path(directory) if directory is not None else default_profile_dir()
    return {name: load_profile(folder / f"{name}.toml") for name in list_profiles(folder)}

"""Device profiles: what one wearable model looks like on the air, loaded from TOML.

Why data, not code: omi, omiGlass, OpenGlass and Frame differ only in UUIDs, codec ids,
framing and a few command bytes; a new wearable should be a new file in
`device_profiles/`, reviewed like configuration. Everything is checked at load time so
a typo fails with one line naming the file and the key, never later over the air.
This module finds and reads the file; `profile_schema` checks it (the schema is
documented in device_profiles/README.md) and `profile_types` holds what it becomes.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Final

from daemon.peripherals.ble.profile_schema import parse_profile
from daemon.peripherals.ble.profile_types import (
    ATT_WRITE_HEADER,
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    BLUETOOTH_BASE_UUID_SUFFIX,
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
    "default_profile_dir",
    "list_profiles",
    "load_all",
    "load_profile",
    "normalize_uuid",
]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    return parse_profile(data, file)


def load_all(directory: str | os.PathLike[str] | None = None) -> dict[str, DeviceProfile]:
    """Every profile in `directory`, validated (the first bad one raises)."""
    folder = Path(directory) if directory is not None else default_profile_dir()
    return {name: load_profile(folder / f"{name}.toml") for name in list_profiles(folder)}

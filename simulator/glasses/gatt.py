"""The virtual glasses' GATT services and advertisement, built from a device profile.

Why from the profile: any wearable in device_profiles/ can be served - its service
and characteristics with the properties the daemon expects, the codec id it reports,
a battery service and a button - so a new profile is testable without new code.
A bonded profile's characteristics require an encrypted link, as the firmware's do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from bumble import gatt
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device

from daemon.peripherals.ble.button import omi_button_notification
from daemon.peripherals.ble.profile import BLUETOOTH_BASE_UUID_SUFFIX, DeviceProfile

__all__ = ["BATTERY_KEY", "advertising_data", "build_services", "bumble_uuid", "default_address"]

BATTERY_KEY = "battery"  # the battery level characteristic's key in the services map

Characteristics = dict[str, gatt.Characteristic[bytes]]
WriteHandler = Callable[[str, Connection, bytes], None]

_PROPS = gatt.Characteristic.Properties
_PERMS = gatt.Characteristic.Permissions
_WRITES = _PROPS.WRITE | _PROPS.WRITE_WITHOUT_RESPONSE


def bumble_uuid(text: str) -> UUID:
    """Profile UUID (lower-case 128-bit) as a Bumble UUID; SIG ones in 16-bit form."""
    if text.endswith(BLUETOOTH_BASE_UUID_SUFFIX) and text.startswith("0000"):
        return UUID.from_16_bits(int(text[4:8], 16))
    return UUID(text)


def default_address(profile: str, name: str) -> str:
    """A stable static random address per (profile, name), so a restart keeps it."""
    digest = bytearray(hashlib.sha256(f"{profile}/{name}".encode()).digest()[:6])
    digest[0] |= 0xC0  # static random: two top bits set (MSB first in the string)
    return ":".join(f"{b:02X}" for b in digest)


def advertising_data(name: str, service: str | None) -> bytes:
    """Name and service UUID in at most 31 bytes (flags dropped, name shortened if not)."""
    uuid_part: list[tuple[int, bytes]] = []
    if service is not None:
        u = bumble_uuid(service)
        kind = (
            AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS
            if len(u.to_bytes()) == 2
            else AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS
        )
        uuid_part = [(kind, u.to_bytes())]
    flags = [(AdvertisingData.FLAGS, bytes([0x06]))]
    encoded = name.encode()
    for structures in (
        flags + uuid_part + [(AdvertisingData.COMPLETE_LOCAL_NAME, encoded)],
        [*uuid_part, (AdvertisingData.COMPLETE_LOCAL_NAME, encoded)],
    ):
        data = bytes(AdvertisingData(structures))
        if len(data) <= 31:
            return data
    room = max(0, 31 - len(bytes(AdvertisingData(uuid_part))) - 2)
    return bytes(
        AdvertisingData([*uuid_part, (AdvertisingData.SHORTENED_LOCAL_NAME, encoded[:room])])
    )


def _wanted(profile: DeviceProfile, speaker: bool) -> dict[str, int]:
    """UUID -> properties of the profile's own characteristics (shared UUIDs merged)."""
    p, ch = profile, profile.characteristics
    wanted: dict[str, int] = {}
    for uuid, flags in (
        (ch.audio_data, _PROPS.NOTIFY),
        (ch.photo_data if p.photo.framing != "none" else None, _PROPS.NOTIFY),
        (ch.codec_id, _PROPS.READ),
        (ch.audio_control if p.audio.control else None, _WRITES),
        (ch.photo_control if p.photo.control else None, _WRITES),
        (ch.speaker if speaker else None, _WRITES),
    ):
        if uuid is not None:
            wanted[uuid] = wanted.get(uuid, 0) | flags
    return wanted


def _permissions(secure: bool) -> tuple[Any, Any]:
    """Read and write permissions; a bonded profile's need an encrypted link."""
    none = _PERMS(0)
    read = _PERMS.READABLE | (_PERMS.READ_REQUIRES_ENCRYPTION if secure else none)
    write = _PERMS.WRITEABLE | (_PERMS.WRITE_REQUIRES_ENCRYPTION if secure else none)
    return read, write


def _button_char(profile: DeviceProfile) -> gatt.Characteristic[bytes]:
    """omi's button: read gives the last event (none yet: 0), notify sends events."""
    ch = profile.characteristics
    read, _ = _permissions(profile.bonding_required)
    assert ch.button is not None
    return gatt.Characteristic(
        bumble_uuid(ch.button), _PROPS.READ | _PROPS.NOTIFY, read, omi_button_notification(0)
    )


def build_services(
    device: Device,
    profile: DeviceProfile,
    *,
    codec_id: int,
    speaker: bool,
    battery: Callable[[], int] | None,
    on_write: WriteHandler,
) -> Characteristics:
    """Add the profile's services to `device`; returns its characteristics by UUID.

    `speaker` False serves no speaker characteristic even if the profile has one (a
    production omi); `battery` reads the level (None: no battery service); `on_write`
    gets every write with the characteristic's UUID. The battery level is under
    `BATTERY_KEY`.
    """
    p, ch = profile, profile.characteristics
    read_perm, write_perm = _permissions(p.bonding_required)
    chars: Characteristics = {}
    for uuid, flags in _wanted(p, speaker).items():
        perm = (read_perm if flags & (_PROPS.READ | _PROPS.NOTIFY) else _PERMS(0)) | (
            write_perm if flags & _WRITES else _PERMS(0)
        )
        value: Any = b""
        if uuid == ch.codec_id:
            value = bytes([codec_id])
        elif flags & _PROPS.WRITE:
            value = gatt.CharacteristicValue(write=lambda c, v, u=uuid: on_write(u, c, v))
        chars[uuid] = gatt.Characteristic(bumble_uuid(uuid), _PROPS(flags), perm, value)
    own = list(chars.values())
    service_uuid = ch.service or (
        p.discovery.service_uuids[0] if p.discovery.service_uuids else ch.audio_data
    )
    button = _button_char(p) if p.tap.source == "button" and ch.button is not None else None
    if button is not None and ch.button is not None:
        chars[ch.button] = button
        if ch.button_service is None:
            own.append(button)
    device.add_service(gatt.Service(bumble_uuid(service_uuid), own))
    if button is not None and ch.button_service is not None:
        device.add_service(gatt.Service(bumble_uuid(ch.button_service), [button]))
    if battery is not None:
        reader: Any = gatt.CharacteristicValue(read=lambda _c: bytes([battery()]))
        level: gatt.Characteristic[bytes] = gatt.Characteristic(
            bumble_uuid(ch.battery_level), _PROPS.READ | _PROPS.NOTIFY, _PERMS.READABLE, reader
        )
        chars[BATTERY_KEY] = level
        device.add_service(gatt.Service(bumble_uuid(ch.battery_service), [level]))
    return chars


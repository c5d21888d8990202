"""Devices declared in the config file (`[[mqtt.devices]]`), for brokers without discovery.

Each table has `component`, `name`, optional `id` and `area`, and otherwise the
Home Assistant discovery keys of that component (full or abbreviated). The daemon
checks them when it starts (`check_declared_devices`): a bad one is a configuration
error (exit 2, one line naming the key), like any other bad setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.config import ConfigError
from daemon.home.components import NAMES
from daemon.home.device import Device
from daemon.home.discovery import DiscoveryError, parse_entity
from daemon.home.text import ID_RE


def parse_declared_devices(
    entries: Sequence[Any], *, key: str = "mqtt.devices"
) -> tuple[list[Device], list[DiscoveryError]]:
    """The devices of the config file's tables, and one error per bad one."""
    devices: list[Device] = []
    errors: list[DiscoveryError] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        parsed = _parse_one(entry, f"{key}[{i}]", seen)
        if isinstance(parsed, DiscoveryError):
            errors.append(parsed)
            continue
        seen.add(parsed.id)
        devices.append(parsed)
    return devices, errors


def check_declared_devices(entries: Sequence[Any], *, key: str = "mqtt.devices") -> None:
    """Raise ConfigError naming the first bad table (the daemon does not start then)."""
    _devices, errors = parse_declared_devices(entries, key=key)
    if errors:
        raise ConfigError(str(errors[0]))


def _parse_one(entry: Any, where: str, seen: set[str]) -> Device | DiscoveryError:
    if not isinstance(entry, Mapping):
        return DiscoveryError(where, "must be a table")
    body = dict(entry)
    component = body.pop("component", None)
    if component not in NAMES:
        return DiscoveryError(
            f"{where}.component", f"must be one of {', '.join(NAMES)}, got {component!r}"
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return DiscoveryError(f"{where}.name", "a non-empty name is required")
    dev_id = body.pop("id", None)
    if dev_id is None:
        dev_id = _slug(name)
    if not isinstance(dev_id, str) or not ID_RE.match(dev_id):
        return DiscoveryError(f"{where}.id", "must be 1-128 of A-Z a-z 0-9 _ . : -")
    if dev_id in seen:
        return DiscoveryError(f"{where}.id", f"duplicate device id {dev_id!r}")
    area = body.pop("area", None)
    if area is not None and not isinstance(area, str):
        return DiscoveryError(f"{where}.area", "must be a string")
    if area:
        body["suggested_area"] = area
    parsed = parse_entity(component, body, object_id=_slug(dev_id), where=where)
    if isinstance(parsed, DiscoveryError):
        return parsed
    return Device(dev_id, parsed, "config")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_") or "device"

"""Typed reading of one expanded discovery config, with errors that name the key.

Every component parser reads its config through a `ConfigReader`: a wrong value
raises `Invalid` with a message naming the key (the whole entity is then rejected
as a `DiscoveryError`), while a feature it cannot offer is left out with a note for
the log (`notes`) and, where the model should know, a `caveat`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.errors import EdgeAgentError
from daemon.home.templates import (
    CommandTemplate,
    ValueTemplate,
    parse_command_template,
    parse_value_template,
)
from daemon.home.text import (
    MAX_CHOICES,
    MAX_TEXT_CHARS,
    MAX_VALUE_CHARS,
    clean_text,
    is_clean,
    shown,
)

TOPIC_BASE = "~"
_MAX_TOPIC_BYTES = 1024  # real topics are far shorter; the config is kept in memory
# MQTT says topics SHOULD NOT hold these; a command topic with one is refused.
_TOPIC_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Invalid(EdgeAgentError, ValueError):
    """A config value is wrong (the parser turns it into a DiscoveryError)."""


class ConfigReader:
    """Typed access to an expanded config with messages that name the key."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.notes: list[str] = []
        self.caveat = ""  # for the model: what is not offered and why

    def has(self, key: str) -> bool:
        """The key is there and not null."""
        return self.data.get(key) is not None

    def topic(self, key: str, *, required: bool = False) -> str | None:
        """A topic to publish or subscribe to exactly (`check_topic`)."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise Invalid(f"{key} is required")
            return None
        return check_topic(value, key)

    def required_topic(self, key: str) -> str:
        """A topic the component cannot work without."""
        topic = self.topic(key, required=True)
        assert topic is not None  # topic() raised otherwise
        return topic

    def string(self, key: str, default: str | None = None) -> str | None:
        """A string (a number is taken as its text)."""
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Invalid(f"{key} must be a string")
        return str(value)

    def text(self, key: str, default: str | None = None) -> str | None:
        """A payload, template or id: used as it is, so refused when absurdly long."""
        text = self.string(key, default)
        if text is not None and len(text) > MAX_VALUE_CHARS:
            raise Invalid(f"{key} is longer than {MAX_VALUE_CHARS} characters")
        return text

    def label(self, key: str) -> str | None:
        """Text the model reads (a name, a device class, a unit): cut to one clean line."""
        text = self.string(key)
        if text is None:
            return None
        return clean_text(text) or None

    def payload(self, key: str, default: str) -> str:
        """A payload or state word; null means the default."""
        value = self.text(key, default)
        return default if value is None else value

    def optional_payload(self, key: str, default: str | None) -> str | None:
        """A payload that null switches off (the action is then not offered)."""
        if key in self.data and self.data[key] is None:
            return None
        return self.text(key, default)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        """A whole number in `lo`..`hi`."""
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{key} must be an integer")
        if isinstance(value, float) and not value.is_integer():
            raise Invalid(f"{key} must be an integer")
        number = int(value)
        if not lo <= number <= hi:
            raise Invalid(f"{key} must be in {lo}..{hi}, got {number}")
        return number

    def number(self, key: str, default: float) -> float:
        """A finite number."""
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{key} must be a number")
        if not math.isfinite(value):
            raise Invalid(f"{key} must be a finite number")
        return float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        """true or false (nothing else: "yes" is an error, not a guess)."""
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise Invalid(f"{key} must be true or false")
        return value

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        """Choices the model names and the device receives as they are: an unclean or
        overlong one cannot be cleaned without changing the payload, so it is left out."""
        value = self.data.get(key)
        if value is None:
            return tuple(default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"{key} must be a list of strings")
        usable = [v for v in dict.fromkeys(value) if v and is_clean(v)]
        if len(usable) < len(set(value)):
            self.notes.append(f"{key}: entries with control characters, empty or longer "
                              f"than {MAX_TEXT_CHARS} characters are left out")
        if len(usable) > MAX_CHOICES:
            self.notes.append(f"{key}: only the first {MAX_CHOICES} are offered")
        return tuple(usable[:MAX_CHOICES])

    def value_template(self, key: str) -> ValueTemplate | None:
        """A value template; one we do not understand passes the payload raw (noted)."""
        src = self.text(key)
        if src is None:
            return None
        tpl = parse_value_template(src)
        if tpl.raw:
            self.notes.append(f"{key} {shown(src)} is not understood; the raw payload is used")
        return tpl

    def command_template(
        self, key: str, variables: Sequence[str] = ("value",)
    ) -> tuple[bool, CommandTemplate | None]:
        """(usable, template): unusable when a template exists that we cannot render."""
        src = self.text(key)
        if src is None:
            return True, None
        tpl = parse_command_template(src, variables)
        if tpl is None:
            self.notes.append(f"{key} {shown(src)} is not supported; that feature is not offered")
            return False, None
        return True, tpl


def check_topic(value: Any, key: str = "topic") -> str:
    """A topic we may publish to or subscribe to exactly: no wildcards, no control
    characters, at most 1024 bytes."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"{key} must be a non-empty string")
    if "+" in value or "#" in value:
        raise Invalid(f"{key} must not contain MQTT wildcards, got {shown(value)}")
    if _TOPIC_CONTROL.search(value) or len(value.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise Invalid(f"{key} is not a valid MQTT topic (control characters or too long)")
    if value.startswith(TOPIC_BASE) or value.endswith(TOPIC_BASE):
        raise Invalid(f"{key} uses '~' but the config has no '~' base topic")
    return value



"""Device text as data: one clean, bounded line, whatever a device announced.

Every string a device announces (names, areas, device classes, units, reported
states) may reach the model, a log line or the user's ears. It is never text to
obey, so it is made one plain line and cut to a known length here, in one place.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# A device id, discovered (`unique_id`) or declared (`id`): safe in an enum, a log line
# and a sentence, whatever the device announced.
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_TEXT_CHARS = 64  # a name, area, device class, unit, choice: what the model reads
MAX_STATE_CHARS = 255  # a reported text state (Home Assistant's own limit)
MAX_CHOICES = 32  # preset modes, climate modes, colour modes: more are left out
MAX_VALUE_CHARS = 4096  # any other config string (payloads, templates)


def _unprintable(ch: str) -> bool:
    """Control, format (bidi overrides, zero-width), surrogate, private or line/paragraph
    separators: anything that could hide text or start a new line in a description."""
    cat = unicodedata.category(ch)
    return cat[0] == "C" or cat in ("Zl", "Zp")


def clean_text(value: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Device text as one plain line: unprintables become spaces, runs of white space
    one space, and at most `limit` characters (an ellipsis marks a cut)."""
    head = value[: limit * 4 + 8]  # enough to fill `limit` after cleaning; never the rest
    if not head.isprintable():
        head = "".join(" " if _unprintable(ch) else ch for ch in head)
    text = " ".join(head.split())
    if len(text) > limit or len(value) > len(head):
        text = text[: limit - 1].rstrip() + "…"
    return text


def is_clean(value: str, limit: int = MAX_TEXT_CHARS) -> bool:
    """True when `clean_text` would leave the string as it is (a usable choice)."""
    return len(value) <= limit and value.isprintable() and " ".join(value.split()) == value


def shown(value: Any) -> str:
    """A config value quoted for an error message or a note: short and one line."""
    return repr(clean_text(value if isinstance(value, str) else str(value), MAX_TEXT_CHARS))

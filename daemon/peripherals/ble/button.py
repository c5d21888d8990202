"""The omi family's button characteristic: taps (confirmations) and the talk gesture.

Pure, and never raising on bad input, like framing.py: a notification is one event
code; which codes confirm and which toggle push-to-talk come from the profile, and
the two sets may not overlap (a gesture with both meanings could talk an unlock
through).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Literal

OMI_BUTTON_SINGLE_TAP: Final = 1
OMI_BUTTON_DOUBLE_TAP: Final = 2
ButtonEvent = Literal["tap", "talk"]


@dataclass(slots=True)
class ButtonStats:
    """Button notification counters (cumulative)."""
    notifications: int = 0
    taps: int = 0
    talks: int = 0  # the talk gesture (push-to-talk): never a confirmation
    other_events: int = 0  # release and the like: neither
    malformed: int = 0


class ButtonDecoder:
    """Button characteristic notifications to taps.

    omi firmware notifies ``int32[2]`` little-endian, the first the event code (1 single
    tap, 2 double tap, 3 long tap, 4 press, 5 release, 6 triple tap), the second 0; the
    first 1..4 bytes are read as a signed little-endian integer, so a shorter form is
    accepted too. Only codes in `tap_events` count as a tap, only codes in `talk_events`
    as the talk gesture (the two must not overlap); more than 8 bytes, or none, is
    malformed.
    """

    def __init__(self, tap_events: tuple[int, ...] = (OMI_BUTTON_SINGLE_TAP,),
                 talk_events: tuple[int, ...] = ()) -> None:
        self.tap_events = frozenset(tap_events)
        self.talk_events = frozenset(talk_events)
        if self.tap_events & self.talk_events:
            raise ValueError("a button event cannot be both a tap and the talk gesture")
        self.stats = ButtonStats()

    def push(self, notification: bytes) -> ButtonEvent | None:
        """"tap", "talk", or None for anything else (counted)."""
        self.stats.notifications += 1
        if not 1 <= len(notification) <= 8:
            self.stats.malformed += 1
            return None
        event = int.from_bytes(notification[:4], "little", signed=True)
        if event in self.tap_events:
            self.stats.taps += 1
            return "tap"
        if event in self.talk_events:
            self.stats.talks += 1
            return "talk"
        self.stats.other_events += 1
        return None


def omi_button_notification(event: int) -> bytes:
    """What omi firmware notifies for a button `event` (simulator and tests)."""
    return struct.pack("<ii", event, 0)

"""The user's microphone and camera switches, kept in the state directory: a restart never
turns the microphone or the camera back on. The Agent owns them; the daemon's start reads
them too, to switch the camera off before the glasses connect (daemon/app.py)."""

from __future__ import annotations

import logging

from daemon.ops.state import StateStore

__all__ = ["SWITCHES", "saved_switches"]

log = logging.getLogger(__name__)

SWITCHES = "switches"  # the state record of the microphone and camera switches


def saved_switches(state: StateStore | None) -> tuple[bool, bool]:
    """(microphone muted, camera enabled) as last saved; (False, True) when never saved.

    A record that exists but cannot be read (a power cut mid-write on a worn card)
    reads as muted and off: the user may have switched them off, and a restart must
    never turn a microphone or a camera back on. The user switches them on again.
    """
    if state is None:
        return False, True
    saved, damaged = state.load_status(SWITCHES)
    if damaged is not None:
        if damaged.fresh:
            log.error("%s: the microphone stays muted and the camera off until switched on",
                      damaged.describe())
        return True, False
    return (bool(saved and saved.get("microphone_muted") is True),
            not (saved and saved.get("camera_enabled") is False))

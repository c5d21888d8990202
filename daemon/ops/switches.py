"""The user's microphone and camera switches, kept in the state directory: a restart never
turns the microphone or the camera back on. The Agent owns them; the daemon's start reads
them too, to switch the camera off before the glasses connect (daemon/app.py)."""

from __future__ import annotations

from daemon.ops.state import StateStore

__all__ = ["SWITCHES", "saved_switches"]

SWITCHES = "switches"  # the state record of the microphone and camera switches


def saved_switches(state: StateStore | None) -> tuple[bool, bool]:
    """(microphone muted, camera enabled) as last saved; (False, True) when never saved."""
    saved = state.load(SWITCHES) if state is not None else None
    return (bool(saved and saved.get("microphone_muted") is True),
            not (saved and saved.get("camera_enabled") is False))

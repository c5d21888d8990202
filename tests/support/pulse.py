"""The virtual sound card and its room (`simulator.soundcard.pulse`), for the tests:
a machine without PulseAudio skips the test (scripts/bootstrap installs it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.soundcard import pulse as _pulse
from simulator.soundcard.pulse import EchoHarness, SoundCardUnavailable, VirtualSoundCard

__all__ = ["EchoHarness", "VirtualSoundCard", "virtual_sound_card"]


@contextlib.contextmanager
def virtual_sound_card(root: Path) -> Iterator[VirtualSoundCard]:
    """`simulator.soundcard.pulse.virtual_sound_card`, or a skip where it cannot run."""
    try:
        cm = _pulse.virtual_sound_card(root)
        card = cm.__enter__()
    except SoundCardUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield card
    finally:
        cm.__exit__(None, None, None)

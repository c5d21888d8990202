"""Virtual glasses: a Bumble GATT peripheral that behaves like the wearable in a profile.

Run it with ``edge-agent sim glasses`` (`main`, also ``python -m simulator.glasses``)
or in process with `VirtualGlasses`. The package, by what each part does:

- device.py      `VirtualGlasses`: power, advertising, one central, the writes it takes
- gatt.py        services, advertisement and address built from the device profile
- connection.py  one connection's state, and the notify path every part shares
- microphone.py  the WAV streamed as the profile's codec and framing (+ its faults)
- camera.py      photo commands in, photo chunks out
- jpeg.py        the synthetic baseline JPEG the camera sends by default
- speaker.py     what arrives on the speaker characteristic, checked and recorded
- faults.py      what to break (`Faults`) and the clock that breaks it on time
- report.py      the counters (`GlassesStats`) and the event callback
- cli.py         ``edge-agent sim glasses``
"""

from __future__ import annotations

from simulator.glasses.cli import main
from simulator.glasses.device import ADV_INTERVAL_MS, VirtualGlasses
from simulator.glasses.faults import Faults
from simulator.glasses.gatt import default_address
from simulator.glasses.jpeg import synthetic_jpeg
from simulator.glasses.report import GlassesStats
from simulator.glasses.speaker import MAX_RECORD_SECONDS

__all__ = [
    "ADV_INTERVAL_MS",
    "MAX_RECORD_SECONDS",
    "Faults",
    "GlassesStats",
    "VirtualGlasses",
    "default_address",
    "main",
    "synthetic_jpeg",
]

"""Where media comes from and where replies go; `make_peripheral` picks by config."""

from __future__ import annotations

from daemon.peripherals.base import PeripheralUnavailable
from daemon.peripherals.factory import make_peripheral

__all__ = ["PeripheralUnavailable", "make_peripheral"]

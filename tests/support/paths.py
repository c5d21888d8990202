"""Where things are, from the tests' point of view."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root (it holds `daemon/`, `simulator/`, `tests/`, README.md)."""

"""Where things are, from the tests' point of view."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root (it holds `daemon/`, `simulator/`, `tests/`, README.md)."""


def snapshot_source(dest: Path) -> None:
    """This checkout's files (tracked and new), without .git: what an install copies,
    frozen (pip builds in the tree it is given, so never in the checkout itself)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)

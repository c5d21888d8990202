"""The one test CA: a throwaway trustme authority, written where a test needs its PEM."""

from __future__ import annotations

from pathlib import Path

import trustme


def write_ca_pem(path: Path) -> Path:
    """A fresh CA's certificate as PEM at `path` (a file a `ca_file` setting can name)."""
    path.write_bytes(trustme.CA().cert_pem.bytes())
    return path

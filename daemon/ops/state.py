"""The daemon's state directory: small JSON records that must survive a restart.

Where: `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `ops.state_dir`.
With neither, state lives in memory only and `persistent` is False, so a caller
can say so (a log line, a `doctor` warning) instead of pretending.

Each record is one file `<name>.json`, written atomically (a temporary file in the
same directory, fsync, rename) with mode 0600, so a power cut leaves the old or
the new record, never half of one. A record that cannot be read or parsed is
treated as absent and reported once; it never stops the daemon. Never a secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_RECORD_BYTES = 64 * 1024  # a state record is small; anything bigger is not ours


def state_dir_from(configured: Path | str | None, environ: Mapping[str, str]) -> Path | None:
    """`$STATE_DIRECTORY` (its first entry) beats `ops.state_dir`; None when neither is set."""
    from_systemd = environ.get("STATE_DIRECTORY", "").split(":")[0].strip()
    if from_systemd:
        return Path(from_systemd)
    if configured:
        return Path(configured)
    return None


class StateStore:
    """Named JSON records in one directory, or in memory when there is no directory."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, dict[str, Any]] = {}
        self.errors = 0  # reads and writes that failed (each logged)

    @property
    def persistent(self) -> bool:
        """Whether records survive a restart (there is a directory)."""
        return self.directory is not None

    def path(self, name: str) -> Path | None:
        """The file of record `name`, or None in memory; ValueError for a name that is not safe."""
        if not _NAME.match(name):
            raise ValueError(f"bad state record name {name!r}")
        return None if self.directory is None else self.directory / f"{name}.json"

    def load(self, name: str) -> dict[str, Any] | None:
        """The record, or None when absent or unreadable (logged, counted)."""
        path = self.path(name)
        if path is None:
            record = self._memory.get(name)
            return None if record is None else dict(record)
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.errors += 1
            log.warning("state %s: cannot read %s (%s)", name, path, exc.strerror or exc)
            return None
        if len(raw) > MAX_RECORD_BYTES:
            self.errors += 1
            log.warning("state %s: %s is larger than %d bytes; ignored", name, path,
                        MAX_RECORD_BYTES)
            return None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            self.errors += 1
            log.warning("state %s: %s is not valid JSON; ignored", name, path)
            return None
        if not isinstance(data, dict):
            self.errors += 1
            log.warning("state %s: %s is not a JSON object; ignored", name, path)
            return None
        return data

    def save(self, name: str, record: Mapping[str, Any]) -> bool:
        """Write the record atomically; False (logged, counted) if it could not be."""
        text = json.dumps(dict(record), sort_keys=True, separators=(",", ":"))
        path = self.path(name)
        if path is None:
            self._memory[name] = json.loads(text)
            return True
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            with contextlib.suppress(OSError):  # the rename itself survives a power cut
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            self.errors += 1
            log.warning("state %s: cannot write %s (%s)", name, path, exc.strerror or exc)
            return False
        return True

    def delete(self, name: str) -> bool:
        """Remove the record; True if there was one."""
        path = self.path(name)
        if path is None:
            return self._memory.pop(name, None) is not None
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def writable(self) -> tuple[bool, str]:
        """(ok, why) for `doctor`: can records be written here?"""
        if self.directory is None:
            return False, "no state directory ($STATE_DIRECTORY or ops.state_dir): memory only"
        probe = self.directory / ".write-probe"
        try:  # quietly: the caller says what it means (doctor's line, exit 2 at start)
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe.write_bytes(b"{}")
            probe.unlink()
        except OSError as exc:
            return False, (f"{self.directory} is not writable "
                           f"({exc.strerror or type(exc).__name__})")
        return True, str(self.directory)

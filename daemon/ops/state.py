"""The daemon's state directory: small JSON records that must survive a restart.

Where: `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `ops.state_dir`.
With neither, state lives in memory only and `persistent` is False, so a caller
can say so (a log line, a `doctor` warning) instead of pretending.

Each record is one file `<name>.json`, written atomically (a temporary file in the
same directory, fsync, rename) with mode 0600, so a power cut leaves the old or
the new record, never half of one. Never a secret.

A record that exists but cannot be used (unreadable, not JSON, not an object, too
big: a truncated or zeroed file on a failing SD card) is never mistaken for an absent
one: `load_status` says it is damaged, and the file is kept aside as `<name>.corrupt`
(evidence, and a mark that survives a restart until a good record replaces it or
someone deletes it). Callers that guard something fail closed on it (admission,
the pinned glasses, the sensitivity memory); it never stops the daemon. A directory
that group or others may write is used (refusing would break existing installs) but
warned about once: anyone who can write there can plant a record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_RECORD_BYTES = 64 * 1024  # a state record is small; anything bigger is not ours
ASIDE_SUFFIX = ".corrupt"  # a damaged record, kept for whoever looks into it
_warned_dirs: set[str] = set()  # loose directories already warned about in this process


@dataclass(frozen=True, slots=True)
class Damaged:
    """A record that exists but cannot be used: why, and where the damaged file is now."""

    name: str
    why: str
    kept: Path | None  # `<name>.corrupt`, or None if it could not be moved aside
    fresh: bool = True  # found now; False: only the one kept aside by an earlier start

    def describe(self) -> str:
        """One clause for a log line or `doctor`."""
        where = f"kept as {self.kept}" if self.kept is not None else "it could not be moved aside"
        if not self.fresh:
            return f"state record {self.name} was found damaged earlier ({where})"
        return f"state record {self.name} is damaged ({self.why}; {where})"


def loose_mode(directory: Path) -> str:
    """"group", "others" or "group and others" when they may write `directory`; "" when
    only its owner may (or it cannot be read: the writer's check says why)."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return ""
    who = [w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    return " and ".join(who)


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
        self.damaged: dict[str, Damaged] = {}  # records found damaged in this run
        self.loose = ""  # who besides the owner may write the directory (warned once)
        self._dir_checked = False

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
        """The record, or None when absent or damaged (a damaged one is logged, counted
        and kept aside). Callers that must fail closed use `load_status`."""
        record, damaged = self.load_status(name)
        if damaged is not None and damaged.fresh:
            log.warning("%s; ignored", damaged.describe())
        return record

    def load_status(self, name: str) -> tuple[dict[str, Any] | None, Damaged | None]:
        """(the record or None, why it is damaged or None); the caller logs the damage.

        Damaged: the file exists but cannot be used (it is moved to `<name>.corrupt`,
        counted), or it is absent while an earlier damaged one is still kept aside.
        """
        path = self.path(name)
        if path is None:
            record = self._memory.get(name)
            return (None if record is None else dict(record)), None
        self._check_dir()
        data: Any = None
        why = ""
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            kept = self.kept_aside(name)
            return None, (None if kept is None else Damaged(name, "", kept, fresh=False))
        except NotADirectoryError as exc:  # no directory, so no record (saves fail too)
            self.errors += 1
            log.warning("state %s: cannot read %s (%s)", name, path, exc.strerror or exc)
            return None, None
        except OSError as exc:  # it is there (a permission, an I/O error): damaged
            why = f"cannot be read: {exc.strerror or type(exc).__name__}"
        else:
            why, data = _parse(raw)
        if not why:
            return data, None
        damaged = Damaged(name, why, self._set_aside(path))
        self.errors += 1
        self.damaged[name] = damaged
        return None, damaged

    def kept_aside(self, name: str) -> Path | None:
        """The damaged copy of record `name` kept aside, if there is one."""
        path = self.path(name)
        if path is None:
            return None
        aside = path.with_suffix(ASIDE_SUFFIX)
        return aside if aside.exists() else None

    def _set_aside(self, path: Path) -> Path | None:
        """Move a damaged record out of the way (never overwritten by the next save)."""
        aside = path.with_suffix(ASIDE_SUFFIX)
        try:
            os.replace(path, aside)
        except OSError as exc:
            log.warning("state: cannot move %s aside (%s)", path, exc.strerror or exc)
            return None
        return aside

    def _check_dir(self) -> None:
        """Warn once per directory that group or others may write (see `loose_mode`)."""
        directory = self.directory
        if directory is None or self._dir_checked or not directory.is_dir():
            return
        self._dir_checked = True
        self.loose = loose_mode(directory)
        if self.loose and str(directory) not in _warned_dirs:
            _warned_dirs.add(str(directory))
            log.warning("state directory %s may be written by %s: anyone who can write "
                        "there can plant records (an accepted lock, a pinned device); "
                        "used anyway; chmod 700 it", directory, self.loose)

    def status(self) -> dict[str, int]:
        """For /metrics: failed reads and writes, damaged records, a loose directory."""
        return {"errors": self.errors, "damaged_records": len(self.damaged),
                "loose_directory": int(bool(self.loose))}

    def save(self, name: str, record: Mapping[str, Any]) -> bool:
        """Write the record atomically; False (logged, counted) if it could not be."""
        text = json.dumps(dict(record), sort_keys=True, separators=(",", ":"))
        path = self.path(name)
        if path is None:
            self._memory[name] = json.loads(text)
            return True
        self._check_dir()
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
        """Remove the record and a damaged copy kept aside; True if there was either.
        OSError if one exists but cannot be removed."""
        path = self.path(name)
        if path is None:
            return self._memory.pop(name, None) is not None
        removed = False
        for victim in (path, path.with_suffix(ASIDE_SUFFIX)):
            try:
                victim.unlink()
            except FileNotFoundError:
                continue
            removed = True
        return removed

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


def _parse(raw: bytes) -> tuple[str, Any]:
    """("", the record) or (why it is not one, None)."""
    if len(raw) > MAX_RECORD_BYTES:
        return f"larger than {MAX_RECORD_BYTES} bytes", None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return "not valid JSON", None
    if not isinstance(data, dict):
        return "not a JSON object", None
    return "", data

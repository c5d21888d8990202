"""The Live session kept across restarts: its newest resumption handle, in the state directory.

A handle stays valid for two hours after its session ends (FACTS), and the
session ends at the latest when the daemon does, which is after the handle was
issued: so a handle younger than `live.resume_max_age` (default 2 h) after its
issue is safely within that, whatever ended the daemon (watchdog, upgrade,
power cut). On start the link resumes with it; a handle that is too old, was
stored for another endpoint or model, or cannot be read is not tried, and one
the server refuses gives way to a fresh session. Each start is counted once in
edge_live_start_sessions_total{reason}: resumed, refused, expired, changed,
corrupt or none.

The record `live_session` (`live_session.json`, written atomically through
StateStore, mode 0600) holds::

    {"version": 1, "handle": "<opaque, from the server>", "issued_at": <Unix time>,
     "endpoint": "<16 hex digits: a hash of base_url, api_version and model>",
     "open_calls": [{"id": "<call id>", "name": "<tool name>"}, ...]}

Never the key, and not the base URL itself (a URL may carry a password).
`open_calls` are the calls the model waited on when it was written; a process
that dies with calls open cannot answer them, so the next one, once resumed,
answers each with an error saying the outcome is unknown (a call that waits
for ever would wedge the resumed conversation; running it again could repeat
a device command). A record the loader would refuse loses everything in it
(the handle too), so a record never holds more than MAX_OPEN_CALLS calls (the
first opened), a call with an empty id, or more than fits in the state
store's MAX_RECORD_BYTES; a call left out is counted
(edge_live_session_calls_left_out_total), and a record that still would not
load is not written (counted as a failed write).

When it is written: each time the server issues a new resumable handle, each
time a tool call opens, and a deletion when the session is given up (refused,
1007). Handles come at most at a few resumable points of a turn and not at all
while nobody speaks, so even a busy day of talk is a few thousand writes of
about 200 bytes; an SD card's wear is dominated by the system journal, not
this. Bursts (a server that sent a handle with every message) are still
coalesced: at most one write per `live.resume_save_interval` (1 s), the newest
handle winning, so a kill loses at most that much newness (an older handle of
the same session still resumes it). A new tool call and a deletion are written
at once. The write (fsync on an SD card can take 100 ms) runs off the event
loop, and a clean stop writes what is still due.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.config import LiveSettings
from daemon.errors import EdgeAgentError
from daemon.ops.metrics import Metrics
from daemon.ops.state import MAX_RECORD_BYTES, StateStore

log = logging.getLogger("daemon.live.link")  # the link's parts log under its name

RECORD = "live_session"
VERSION = 1
MAX_HANDLE_CHARS = 4096
MAX_OPEN_CALLS = 64
FUTURE_SLACK = 300.0  # a record "issued" this far ahead of the clock is still tried

@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session a previous process left: its handle, when issued, its open calls."""

    handle: str
    issued_at: float  # Unix time
    open_calls: tuple[tuple[str, str], ...] = ()  # (call id, tool name)

    def record(self, endpoint: str) -> dict[str, Any]:
        """The JSON record (no secret in it)."""
        return {
            "version": VERSION,
            "handle": self.handle,
            "issued_at": round(self.issued_at, 3),
            "endpoint": endpoint,
            "open_calls": [{"id": i, "name": n} for i, n in self.open_calls],
        }


class RecordError(EdgeAgentError, ValueError):
    """A stored record that cannot be used, and why (the metric reason is `reason`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def endpoint_id(settings: LiveSettings) -> str:
    """Which endpoint and model a handle belongs to, without writing the URL down."""
    text = f"{settings.base_url.rstrip('/')}|{settings.api_version}|{settings.model}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse(record: Mapping[str, Any], endpoint: str, now: float, max_age: float) -> StoredSession:
    """The session in a record, or RecordError (corrupt, changed, expired)."""
    if record.get("version") != VERSION:
        raise RecordError("corrupt", f"version {record.get('version')!r} is not {VERSION}")
    handle = record.get("handle")
    if not isinstance(handle, str) or not 0 < len(handle) <= MAX_HANDLE_CHARS:
        raise RecordError("corrupt", "no usable handle")
    issued = record.get("issued_at")
    if isinstance(issued, bool) or not isinstance(issued, int | float) or not math.isfinite(issued):
        raise RecordError("corrupt", "no usable issue time")
    calls = record.get("open_calls", [])
    if not isinstance(calls, list) or len(calls) > MAX_OPEN_CALLS:
        raise RecordError("corrupt", "open_calls is not a short list")
    open_calls = []
    for call in calls:
        if not (isinstance(call, dict) and isinstance(call.get("id"), str)
                and isinstance(call.get("name"), str) and call["id"]):
            raise RecordError("corrupt", "an open call without an id and a name")
        open_calls.append((call["id"], call["name"]))
    if record.get("endpoint") != endpoint:
        raise RecordError("changed", "stored for another endpoint or model")
    age = now - float(issued)
    if age > max_age:
        raise RecordError("expired", f"issued {age / 3600:.1f} h ago (live.resume_max_age "
                                     f"{max_age / 3600:.1f} h)")
    return StoredSession(handle, float(issued), tuple(open_calls))


class SessionKeeper:
    """Keeps the session's newest handle in the state directory (see the module's notes)."""

    def __init__(
        self,
        store: StateStore | None,
        settings: LiveSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """No state directory, or live.resume_max_age 0: nothing is read or written."""
        keep = store is not None and store.persistent and settings.resume_max_age > 0
        self._store = store if keep else None
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self._endpoint = endpoint_id(settings)
        self._left_out: set[str] = set()  # open calls the newest record does not list
        self._left_out_total = 0
        self._current: StoredSession | None = None
        self._pending: dict[str, Any] | None = None  # the next write (None: remove)
        self._version = 0  # of the newest pending record
        self._written = 0  # of the newest record on disk
        self._lock = threading.Lock()  # a writer thread and a flush at stop
        self._dirty = asyncio.Event()
        self._urgent = asyncio.Event()
        self._last_write = -math.inf

    # -- start ------------------------------------------------------------------------
    def load(self) -> StoredSession | None:
        """The stored session to resume, or None (then this start is counted here)."""
        stored, reason, why = self._read()
        if stored is None:
            self._metrics.live_start_sessions.labels(reason).inc()
            level = logging.WARNING if reason == "corrupt" else logging.INFO
            log.log(level, "%s; starting a new Live session", why)
            return None
        age = self._clock() - stored.issued_at
        if age < -FUTURE_SLACK:
            log.warning("the stored Live session was issued %.0f s in the future by this "
                        "clock; trying it anyway (the server decides)", -age)
        log.info("resuming the Live session stored %.0f s ago (%d tool call(s) left open)",
                 max(age, 0.0), len(stored.open_calls))
        self._current = stored
        return stored

    def _read(self) -> tuple[StoredSession | None, str, str]:
        """(the stored session, or None with the metric reason and a line saying why)."""
        if self._store is None:
            return None, "none", "nothing stored (no state directory, or live.resume_max_age 0)"
        errors = self._store.errors
        record = self._store.load(RECORD)
        if record is None:
            if self._store.errors > errors:
                return None, "corrupt", "the stored Live session cannot be read"
            return None, "none", "no stored Live session"
        try:
            return parse(record, self._endpoint, self._clock(), self._s.resume_max_age), "", ""
        except RecordError as exc:
            return None, exc.reason, f"the stored Live session is not used ({exc})"

    def started(self, reason: str) -> None:
        """The stored session was resumed, or refused: count this start."""
        self._metrics.live_start_sessions.labels(reason).inc()

    # -- while running ------------------------------------------------------------------
    def issued(self, handle: str, open_calls: Mapping[str, str]) -> None:
        """The server issued a new resumable handle: store it (coalesced)."""
        now = self._clock()
        self._current = StoredSession(handle, now, self._fitting(handle, now, open_calls))
        self._queue(self._current.record(self._endpoint), urgent=self._s.resume_save_interval <= 0)

    def calls_changed(self, open_calls: Mapping[str, str]) -> None:
        """A tool call opened: store it with the current handle, now."""
        if self._current is None:
            return
        handle, issued_at = self._current.handle, self._current.issued_at
        self._current = StoredSession(handle, issued_at,
                                      self._fitting(handle, issued_at, open_calls))
        self._queue(self._current.record(self._endpoint), urgent=True)

    def _fitting(self, handle: str, issued_at: float,
                 open_calls: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The open calls the record can list and still load (the first opened win); the
        others are counted (once each time they are left out) and logged seldom."""
        bare = StoredSession(handle, issued_at).record(self._endpoint)
        room = MAX_RECORD_BYTES - _size(bare)
        kept: list[tuple[str, str]] = []
        left: set[str] = set()
        for call_id, name in open_calls.items():
            if len(kept) < MAX_OPEN_CALLS and call_id:
                cost = _size({"id": call_id, "name": name}) + 1  # and a comma
                if cost <= room:
                    kept.append((call_id, name))
                    room -= cost
                    continue
            left.add(call_id)
        new = left - self._left_out
        self._left_out = left
        if new:
            self._metrics.live_session_calls_left_out.inc(len(new))
            before, self._left_out_total = self._left_out_total, self._left_out_total + len(new)
            if self._left_out_total.bit_length() > before.bit_length():  # 1st, 2nd, 4th...
                log.warning("%d open tool call(s) not in the stored Live session (at most %d "
                            "fit); a restart could not answer them (%d so far)",
                            len(left), MAX_OPEN_CALLS, self._left_out_total)
        return tuple(sorted(kept))  # by id, as before: a record does not change with order

    def forget(self) -> None:
        """The session is given up: remove the record, now."""
        if self._current is None and self._written == 0 and self._version == 0:
            return
        self._current = None
        self._queue(None, urgent=True)

    def _queue(self, record: dict[str, Any] | None, *, urgent: bool) -> None:
        if self._store is None:
            return
        self._pending = record
        self._version += 1
        self._dirty.set()
        if urgent:
            self._urgent.set()

    async def run(self) -> None:
        """Write what is due, off the event loop, until cancelled; then what is left."""
        if self._store is None:
            return
        try:
            while True:
                await self._dirty.wait()
                delay = self._last_write + self._s.resume_save_interval - time.monotonic()
                if delay > 0 and not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._urgent.wait()
                self._dirty.clear()
                self._urgent.clear()
                self._last_write = time.monotonic()
                await asyncio.to_thread(self._write, self._version, self._pending)
        finally:
            self.flush()

    def flush(self) -> None:
        """Write what is still due, here and now (a clean stop); a write still under way
        in the worker thread is waited for first (the lock), so the record is final
        when this returns."""
        if self._store is not None:
            self._write(self._version, self._pending)

    def _write(self, version: int, record: dict[str, Any] | None) -> None:
        """One write (in a worker thread, or at stop); an older one never wins, and a
        failure is counted and logged, never raised (the conversation goes on)."""
        assert self._store is not None
        with self._lock:
            if version <= self._written:
                return  # nothing new (or only older than what is on disk)
            self._written = version
            try:
                if record is not None and (why := self._unloadable(record)):
                    result = "failed"  # the one on disk (older, but loadable) stays
                    log.error("the Live session record is not stored: its loader would "
                              "refuse it (%s)", why)
                elif record is None:
                    self._store.delete(RECORD)
                    result = "deleted"
                else:
                    result = "written" if self._store.save(RECORD, record) else "failed"
            except Exception as exc:  # delete's OSError, or a bug: the record is stale
                result = "failed"
                log.warning("cannot update the stored Live session (%s: %s)",
                            type(exc).__name__, exc)
            self._metrics.live_session_writes.labels(result).inc()

    def _unloadable(self, record: dict[str, Any]) -> str:
        """Why `load` would refuse this record ("" if it would take it): a last check,
        since a refused record loses the handle and every open call with it."""
        if (size := _size(record)) > MAX_RECORD_BYTES:
            return f"{size} bytes, more than {MAX_RECORD_BYTES}"
        try:
            parse(record, self._endpoint, record.get("issued_at", 0), math.inf)
        except RecordError as exc:
            return str(exc)
        return ""


def _size(value: Any) -> int:
    """Bytes of `value` as StateStore.save writes it (compact, ASCII-escaped JSON)."""
    return len(json.dumps(value, separators=(",", ":")))

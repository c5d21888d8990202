"""The task database: each task's id, state and result, kept across restarts (SQLite).

Every change is one statement in autocommit (WAL, `synchronous=NORMAL`), so a
kill at any moment leaves either the old row or the new one: a committed change
is in the WAL when the statement returns. Only a power cut or a kernel crash can
roll back the last moments (FULL would fsync each change: 1-12 ms on the answer
path of start_task, measured in bench/task_start.py's run). A result waits with
`delivery = 'pending'` until the Live link has written it to a socket; only then
it is marked `delivered`, so after a restart every pending result is spoken
once (daemon.tasks.manager says why the one window left, between the socket write
and this mark, is left on the side of saying it again).

A finished task's interaction is deleted on the service later (daemon.tasks.cleanup):
`delete_at` says when, `service` whether it is still `kept` there, `deleted`, or
left after failed deletes (`gave_up`).

Results waiting to be said are bounded too: `prune` gives up the oldest beyond
`KEEP_UNDELIVERED` (`delivery = 'expired'`, returned so the manager counts them).
The manager refuses new tasks well before that (daemon.tasks.manager.MAX_UNDELIVERED),
so an expiry means something else kept the conversation from ever being quiet.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DB_NAME = "tasks.sqlite3"
ACTIVE = ("starting", "running")
KEEP_UNDELIVERED = 50  # results waiting to be said, at most (the oldest are given up)
TERMINAL = ("completed", "failed", "cancelled", "timed_out")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    prompt TEXT NOT NULL,
    interaction_id TEXT,
    previous_interaction_id TEXT,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    deadline REAL NOT NULL,
    finished_at REAL,
    polls INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    delivery TEXT NOT NULL DEFAULT 'none',
    has_image INTEGER NOT NULL DEFAULT 0,
    delete_at REAL,
    service TEXT NOT NULL DEFAULT 'kept',
    delete_attempts INTEGER NOT NULL DEFAULT 0
)
"""
# Columns added after the first release of the table: (name, definition).
_ADDED = (("delete_at", "REAL"), ("service", "TEXT NOT NULL DEFAULT 'kept'"),
          ("delete_attempts", "INTEGER NOT NULL DEFAULT 0"))


@dataclass(frozen=True)
class TaskRow:
    """One task as stored."""

    id: int
    name: str
    prompt: str
    interaction_id: str | None
    previous_interaction_id: str | None
    state: str
    created_at: float
    deadline: float
    finished_at: float | None
    polls: int
    result: dict[str, Any] | None
    error: str | None
    delivery: str
    has_image: bool
    service: str = "kept"
    delete_attempts: int = 0

    @property
    def active(self) -> bool:
        """Still starting or running."""
        return self.state in ACTIVE

    def view(self, now: float) -> dict[str, Any]:
        """What the model and Home Assistant are told about it."""
        out: dict[str, Any] = {"task": self.name, "id": self.id, "state": self.state,
                               "age_s": round(max(0.0, now - self.created_at), 1)}
        if self.result is not None:
            out["summary"] = self.result.get("spoken_summary", "")
            out["key_points"] = self.result.get("key_points", [])
            out["sources"] = self.result.get("sources", [])
        if self.error:
            out["error"] = self.error
        if self.previous_interaction_id:
            out["follow_up"] = True
        return out


@dataclass(frozen=True)
class Pruned:
    """What one `prune` did: rows forgotten, and results given up unsaid (oldest first)."""

    deleted: int
    expired: list[TaskRow]


class TaskStore:
    """The SQLite file in the state directory (or memory when there is none)."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / DB_NAME if directory is not None else None
        try:
            if directory is not None:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = self._open()
        except (OSError, sqlite3.Error) as exc:
            log.warning("cannot open the task database %s (%s): tasks are kept in memory "
                        "only and do not survive a restart", self.path, exc)
            self.path = None
            self._db = self._open()
        self._db.row_factory = sqlite3.Row
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(tasks)")}
        for name, definition in _ADDED:
            if name not in have:  # a database from before the column
                self._db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {definition}")

    def _open(self) -> sqlite3.Connection:
        if self.path is not None:
            # The user's spoken prompts: readable by the daemon's user only, whatever the
            # umask (SQLite gives its -wal and -shm files the database's mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            for path in (self.path, *(self.path.with_name(self.path.name + s)
                                      for s in ("-wal", "-shm"))):
                if path.exists():
                    os.chmod(path, 0o600)
        return sqlite3.connect(str(self.path) if self.path else ":memory:",
                               isolation_level=None, check_same_thread=False)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def add(self, name: str, prompt: str, *, now: float, deadline: float,
            previous_interaction_id: str | None = None, has_image: bool = False) -> TaskRow:
        """A new task in state `starting` (before the service has heard of it)."""
        cur = self._db.execute(
            "INSERT INTO tasks (name, prompt, previous_interaction_id, state, created_at, "
            "deadline, has_image) VALUES (?, ?, ?, 'starting', ?, ?, ?)",
            (name, prompt, previous_interaction_id, now, deadline, int(has_image)))
        row = self.get(int(cur.lastrowid or 0))
        assert row is not None
        return row

    def started(self, task_id: int, interaction_id: str) -> None:
        """The service accepted it: now it is polled."""
        self._db.execute("UPDATE tasks SET state = 'running', interaction_id = ? "
                         "WHERE id = ? AND state = 'starting'", (interaction_id, task_id))

    def polled(self, task_id: int) -> None:
        """One more poll (shown in task_status; counts requests per task)."""
        self._db.execute("UPDATE tasks SET polls = polls + 1 WHERE id = ?", (task_id,))

    def finish(self, task_id: int, state: str, *, now: float, deliver: bool,
               result: dict[str, Any] | None = None, error: str | None = None) -> bool:
        """End an active task, in one statement; False if it had already ended."""
        if state not in TERMINAL:
            raise ValueError(f"not a terminal state: {state}")
        cur = self._db.execute(
            "UPDATE tasks SET state = ?, finished_at = ?, result = ?, error = ?, delivery = ? "
            "WHERE id = ? AND state IN ('starting', 'running')",
            (state, now, json.dumps(result) if result is not None else None, error,
             "pending" if deliver else "none", task_id))
        return cur.rowcount == 1

    def delivered(self, task_id: int) -> bool:
        """Its result reached the conversation; False if it was not pending."""
        cur = self._db.execute("UPDATE tasks SET delivery = 'delivered' "
                               "WHERE id = ? AND delivery = 'pending'", (task_id,))
        return cur.rowcount == 1

    def schedule_delete(self, task_id: int, at: float) -> bool:
        """Delete its interaction on the service at `at`; False if there is none to."""
        cur = self._db.execute("UPDATE tasks SET delete_at = ? WHERE id = ? AND "
                               "interaction_id IS NOT NULL AND service = 'kept'", (at, task_id))
        return cur.rowcount == 1

    def due_deletes(self, now: float) -> list[TaskRow]:
        """Tasks whose interaction is due to be deleted on the service, oldest due first."""
        rows = self._db.execute(
            "SELECT * FROM tasks WHERE service = 'kept' AND delete_at IS NOT NULL AND "
            "delete_at <= ? ORDER BY delete_at, id", (now,)).fetchall()
        return [_row(r) for r in rows]

    def next_delete_at(self) -> float | None:
        """When the next deletion is due (None: none is scheduled)."""
        row = self._db.execute("SELECT MIN(delete_at) AS t FROM tasks WHERE service = 'kept' "
                               "AND delete_at IS NOT NULL").fetchone()
        return float(row["t"]) if row["t"] is not None else None

    def delete_done(self, task_id: int, outcome: str) -> None:
        """The deletion ended: `deleted` (or already gone), or `gave_up`."""
        self._db.execute("UPDATE tasks SET service = ?, delete_at = NULL WHERE id = ?",
                         (outcome, task_id))

    def delete_failed(self, task_id: int, retry_at: float) -> int:
        """One more failed delete, tried again at `retry_at`; the failures so far."""
        self._db.execute("UPDATE tasks SET delete_attempts = delete_attempts + 1, "
                         "delete_at = ? WHERE id = ?", (retry_at, task_id))
        row = self._db.execute("SELECT delete_attempts FROM tasks WHERE id = ?",
                               (task_id,)).fetchone()
        return int(row["delete_attempts"]) if row is not None else 0

    def get(self, task_id: int) -> TaskRow | None:
        """One task by id."""
        row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _row(row) if row is not None else None

    def find(self, ref: str) -> TaskRow | None:
        """A task by id or by name (the newest of that name; case-insensitive)."""
        ref = ref.strip()
        if ref.isdigit():
            return self.get(int(ref))
        row = self._db.execute("SELECT * FROM tasks WHERE lower(name) = lower(?) "
                               "ORDER BY id DESC LIMIT 1", (ref,)).fetchone()
        return _row(row) if row is not None else None

    def active(self) -> list[TaskRow]:
        """Tasks still starting or running, oldest first."""
        return self._select("state IN ('starting', 'running')")

    def pending_delivery(self) -> list[TaskRow]:
        """Finished tasks whose result has not yet reached the conversation, oldest first."""
        return self._select("delivery = 'pending'", order="finished_at, id")

    def recent(self, limit: int = 10) -> list[TaskRow]:
        """The newest tasks, newest first."""
        rows = self._db.execute("SELECT * FROM tasks ORDER BY id DESC LIMIT ?",
                                (limit,)).fetchall()
        return [_row(r) for r in rows]

    def pending_count(self) -> int:
        """How many finished tasks' results wait to reach the conversation."""
        row = self._db.execute("SELECT COUNT(*) AS n FROM tasks "
                               "WHERE delivery = 'pending'").fetchone()
        return int(row["n"])

    def prune(self, keep: int, keep_undelivered: int = KEEP_UNDELIVERED) -> Pruned:
        """Forget all but the newest `keep` finished tasks that wait for nothing (not a
        result still to be said, nor an interaction still to be deleted on the service),
        then give up all but the newest `keep_undelivered` results still to be said.

        A result given up here is forgotten by a later prune, once its interaction's
        delete (scheduled by the manager) is done.
        """
        cur = self._db.execute(
            "DELETE FROM tasks WHERE state NOT IN ('starting', 'running') "
            "AND delivery != 'pending' "
            "AND NOT (service = 'kept' AND delete_at IS NOT NULL) AND id NOT IN "
            "(SELECT id FROM tasks ORDER BY id DESC LIMIT ?)", (keep,))
        deleted = cur.rowcount
        rows = self._db.execute(
            "SELECT * FROM tasks WHERE delivery = 'pending' "
            "ORDER BY finished_at DESC, id DESC LIMIT -1 OFFSET ?",
            (max(0, keep_undelivered),)).fetchall()
        expired = [_row(r) for r in reversed(rows)]
        for row in expired:
            self._db.execute("UPDATE tasks SET delivery = 'expired' "
                             "WHERE id = ? AND delivery = 'pending'", (row.id,))
        return Pruned(deleted, expired)

    def _select(self, where: str, order: str = "id") -> list[TaskRow]:
        rows = self._db.execute(f"SELECT * FROM tasks WHERE {where} ORDER BY {order}").fetchall()
        return [_row(r) for r in rows]


def _row(r: sqlite3.Row) -> TaskRow:
    return TaskRow(
        id=int(r["id"]), name=r["name"], prompt=r["prompt"],
        interaction_id=r["interaction_id"], previous_interaction_id=r["previous_interaction_id"],
        state=r["state"], created_at=float(r["created_at"]), deadline=float(r["deadline"]),
        finished_at=r["finished_at"], polls=int(r["polls"]),
        result=json.loads(r["result"]) if r["result"] else None, error=r["error"],
        delivery=r["delivery"], has_image=bool(r["has_image"]), service=r["service"],
        delete_attempts=int(r["delete_attempts"]),
    )

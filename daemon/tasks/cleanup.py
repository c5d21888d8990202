"""Deleting finished tasks' interactions on the service (`interactions.delete_delivered`).

The service keeps every interaction (its input, a photo, the whole research)
until it is deleted. Once a task's result has reached the conversation, or the
user cancelled it, or it timed out, its interaction is deleted: a completed one
only after `follow_up_window`, because a follow-up continues it there by
`previous_interaction_id`. When the deletion is due lives in the task database,
so a restart does not forget it. A failed delete is counted and tried again with
backoff, at most `DELETE_ATTEMPTS` times, then given up (counted, logged once):
never retried forever. A 404 means it is already gone, which is what was wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from daemon.config import InteractionsSettings
from daemon.tasks.client import InteractionsClient, Rejected, Transient
from daemon.tasks.metrics import TaskMetrics
from daemon.tasks.store import TaskRow, TaskStore

log = logging.getLogger(__name__)

DELETE_ATTEMPTS = 5
MAX_WAIT = 3600.0  # re-read the database at least this often


class ServiceCleanup:
    """Schedules and runs the deletes (one loop, in the manager's TaskGroup)."""

    def __init__(self, settings: InteractionsSettings, store: TaskStore,
                 client: InteractionsClient, metrics: TaskMetrics,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.metrics = metrics
        self._clock = clock
        self._wake = asyncio.Event()

    def ended(self, row: TaskRow) -> None:
        """Its result was delivered, or it ended with nothing to say: schedule the delete."""
        if not self.settings.delete_delivered or row.interaction_id is None:
            return
        keep = self.settings.follow_up_window if row.state == "completed" else 0.0
        if self.store.schedule_delete(row.id, self._clock() + keep):
            self._wake.set()

    async def run(self) -> None:
        """Delete what is due, then sleep until the next is (or a new one is scheduled)."""
        while True:
            self._wake.clear()
            for row in self.store.due_deletes(self._clock()):
                await self._delete(row)
            due = self.store.next_delete_at()
            wait = MAX_WAIT if due is None else min(MAX_WAIT, max(0.0, due - self._clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _delete(self, row: TaskRow) -> None:
        assert row.interaction_id is not None
        try:
            await self.client.delete(row.interaction_id)
        except Rejected as exc:
            if exc.status == 404:  # already gone: that is what was wanted
                self.metrics.requests.labels("delete", "gone").inc()
                self.store.delete_done(row.id, "deleted")
                return
            self.metrics.requests.labels("delete", "rejected").inc()
            self._give_up(row, str(exc))
            return
        except Transient as exc:
            self.metrics.requests.labels("delete", "transient").inc()
            retry = min(self.settings.poll_max,
                        self.settings.poll_initial * 2 ** row.delete_attempts)
            attempts = self.store.delete_failed(row.id, self._clock() + retry)
            if attempts >= DELETE_ATTEMPTS:
                self._give_up(row, f"{attempts} attempts, the last: {exc}")
            else:
                self.metrics.retries.labels("delete").inc()
            return
        self.metrics.requests.labels("delete", "ok").inc()
        self.store.delete_done(row.id, "deleted")
        log.info("task %d (%s): its interaction was deleted on the service", row.id, row.name)

    def _give_up(self, row: TaskRow, why: str) -> None:
        self.metrics.deletes_given_up.inc()
        self.store.delete_done(row.id, "gave_up")
        log.warning("task %d (%s): its interaction stays on the service: delete failed (%s)",
                    row.id, row.name, why)

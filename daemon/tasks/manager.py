"""The background tasks: start without blocking, poll with backoff, deliver each result once.

One TaskGroup holds a poller per running task and the one deliverer. A start
answers at once (the row is written, the create call runs in the group). A
poller waits by `PollSchedule`, retries transient errors, and ends its task
exactly once in the database: completed (a validated result), failed,
cancelled (by the user: nothing is said) or timed out. The deliverer waits
for a quiet moment in the conversation (`Conversation.quiet_for`), hands the
text to the Live link, and marks it delivered once it is on a socket.

Once across restarts: a result is marked delivered only after the link wrote
it, so a kill before that speaks it after the restart. The one window left is
between the socket write and the database commit (microseconds): a kill there
gives it again after the restart. That is chosen, not overlooked: a "delivering"
mark before the write would close it the other way (at most once, a result lost
to a kill), and for a spoken research summary the repeat is the better side.
The daemon's death also ends the Live socket the text went out on, so the
model's spoken answer to it had nowhere to play: the user who "hears it twice"
has, in practice, not heard it once. A lost summary, by contrast, is silence
about a task the user is waiting for. A kill while a task was `starting` (the
service may or may not have created it) ends it as failed, said once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from daemon.config import InteractionsSettings
from daemon.errors import EdgeAgentError
from daemon.tasks.cleanup import ServiceCleanup
from daemon.tasks.client import FAILED, InteractionsClient, Rejected, Snapshot, Transient
from daemon.tasks.metrics import TaskMetrics
from daemon.tasks.result import ResultInvalid, parse_result
from daemon.tasks.schedule import PollSchedule
from daemon.tasks.store import TaskRow, TaskStore

log = logging.getLogger(__name__)

CREATE_ATTEMPTS = 3
QUIET_CHECK_SECONDS = 0.2
MAX_NAME = 40
# Results still to be said at which a new start is refused: generous for a household,
# and short of store.KEEP_UNDELIVERED by more than `max_concurrent` can add after it.
MAX_UNDELIVERED = 20


class TaskRefused(EdgeAgentError):
    """A start, follow-up or cancel that cannot be done; the model hears why."""


class Conversation(Protocol):
    """The live conversation, as the tasks see it (the Agent)."""

    def quiet_for(self) -> float:
        """Seconds since the user or the model last spoke; 0 while either does."""
        ...

    def say(self, text: str) -> Awaitable[None]:
        """Put text into the conversation for the model to say; done once it is sent."""
        ...


class TaskManager:
    """Starts, polls, cancels and delivers background tasks (see the module)."""

    def __init__(self, settings: InteractionsSettings, store: TaskStore,
                 client: InteractionsClient, metrics: TaskMetrics,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.metrics = metrics
        self.conversation: Conversation | None = None
        self._clock = clock
        self._tg: asyncio.TaskGroup | None = None
        self._pollers: dict[int, asyncio.Task[None]] = {}
        self._ready = asyncio.Event()  # a result waits for delivery
        self.changed: list[Callable[[], None]] = []  # told when a task changes
        self.cleanup = ServiceCleanup(settings, store, client, metrics, clock=clock)
        self._ha = self._ha_now()
        self._sync_active()

    # -- run -------------------------------------------------------------------
    async def run(self) -> None:
        """Resume what the last run left, then poll and deliver until cancelled."""
        self._recover()
        self.client.prepare()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for row in self.store.active():
                    self.metrics.resumed.inc()
                    log.info("task %d (%s) resumed after a restart", row.id, row.name)
                    self._spawn(row, image=None)
                tg.create_task(self._deliver_loop(), name="task-delivery")
                tg.create_task(self.cleanup.run(), name="task-cleanup")
        finally:
            self._tg = None

    def _recover(self) -> None:
        """A task left `starting` by a kill may or may not exist on the service: failed."""
        for row in self.store.active():
            if row.state == "starting":
                self._end(row, "failed", error="the daemon stopped while the task was "
                          "starting; it was not started", deliver=True)
        if self.store.pending_delivery():
            self._ready.set()

    # -- the tools' side ---------------------------------------------------------
    def start(self, prompt: str, name: str, *, image: bytes | None = None,
              previous: TaskRow | None = None) -> dict[str, Any]:
        """Start a task now (never waits for the network); TaskRefused if it cannot."""
        if self._tg is None:
            self.metrics.refused.labels("not_running").inc()
            raise TaskRefused("background tasks are not running")
        if len(self.store.active()) >= self.settings.max_concurrent:
            self.metrics.refused.labels("limit").inc()
            raise TaskRefused(f"{self.settings.max_concurrent} tasks are already running; "
                              "cancel one or wait")
        if (waiting := self.store.pending_count()) >= MAX_UNDELIVERED:
            self.metrics.refused.labels("undelivered").inc()
            raise TaskRefused(f"{waiting} finished tasks' results have not been said yet "
                              "(each is said in a quiet moment of the conversation); start "
                              "a new task once the user has heard them")
        now = self._clock()
        row = self.store.add(
            clean_name(name) or clean_name(prompt) or "task", prompt, now=now,
            deadline=now + self.settings.max_task_seconds, has_image=image is not None,
            previous_interaction_id=previous.interaction_id if previous else None)
        self.metrics.started.inc()
        self._spawn(row, image=image)
        self._sync_active()
        self._notify()
        log.info("task %d (%s) started%s", row.id, row.name, " with a photo" if image else "")
        return {"status": "started", "task": row.name, "id": row.id}

    def follow_up(self, ref: str, question: str) -> dict[str, Any]:
        """Continue a completed task with a new question (the service keeps the context)."""
        row = self.find(ref)
        if row.state != "completed" or not row.interaction_id:
            raise TaskRefused(f"task {row.name!r} is {row.state}; only a completed task "
                              "can be followed up")
        if row.service != "kept":
            raise TaskRefused(f"task {row.name!r} is no longer kept on the service "
                              "(interactions.follow_up_window); start a new task instead")
        return self.start(question, f"{row.name} (follow-up)", previous=row)

    def find(self, ref: str) -> TaskRow:
        """A task by name or id; TaskRefused naming the known ones if there is none."""
        row = self.store.find(ref)
        if row is None:
            names = ", ".join(r.name for r in self.store.recent(5)) or "none"
            raise TaskRefused(f"no task {ref!r}; recent tasks: {names}")
        return row

    def view(self, ref: str) -> dict[str, Any]:
        """One task as the model and Home Assistant see it."""
        return self.find(ref).view(self._clock())

    def views(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest tasks, newest first."""
        now = self._clock()
        return [r.view(now) for r in self.store.recent(limit)]

    def ha_status(self) -> dict[str, Any]:
        """The newest task's name and state, and its result's summary (or its error),
        for the Home Assistant entities (the whole result is in task_status). Read
        several times a second: kept in memory, refreshed when a task changes."""
        return dict(self._ha)

    def _ha_now(self) -> dict[str, str]:
        newest = self.store.recent(1)
        if not newest:
            return {"background_task": "none", "background_task_result": ""}
        row = newest[0]
        result = row.result.get("spoken_summary", "") if row.result else (row.error or "")
        return {"background_task": f"{row.name}: {row.state}",
                "background_task_result": str(result)}

    async def cancel(self, ref: str) -> dict[str, Any]:
        """Stop a task here and on the service; the user asked, so nothing is said later."""
        row = self.find(ref)
        if not row.active:
            return {"task": row.name, "state": row.state, "note": "it had already ended"}
        poller = self._pollers.pop(row.id, None)
        if poller is not None:
            poller.cancel()
        if not self._end(row, "cancelled", deliver=False):
            now_row = self.find(str(row.id))
            return {"task": row.name, "state": now_row.state, "note": "it had just ended"}
        if row.interaction_id:
            try:
                await self.client.cancel(row.interaction_id)
                self.metrics.requests.labels("cancel", "ok").inc()
            except (Transient, Rejected) as exc:  # it may have just ended there: fine
                self.metrics.requests.labels("cancel", "error").inc()
                log.info("task %d: cancel on the service: %s", row.id, exc)
            ended = self.store.get(row.id)
            if ended is not None:
                self.cleanup.ended(ended)
        return {"task": row.name, "state": "cancelled"}

    # -- polling -----------------------------------------------------------------
    def _spawn(self, row: TaskRow, image: bytes | None) -> None:
        assert self._tg is not None
        task = self._tg.create_task(self._follow(row, image), name=f"task-{row.id}")
        self._pollers[row.id] = task
        task.add_done_callback(functools.partial(self._poller_done, row.id))

    def _poller_done(self, task_id: int, task: asyncio.Task[None]) -> None:
        if self._pollers.get(task_id) is task:
            del self._pollers[task_id]

    async def _follow(self, row: TaskRow, image: bytes | None) -> None:
        """One task from create (if not yet) to its end."""
        try:
            iid = row.interaction_id
            if iid is None:
                iid = await self._create(row, image)
                if iid is None:
                    return
            await self._poll(row, iid)
        except Exception:  # a bug in one task must not end the others
            log.exception("task %d failed unexpectedly", row.id)
            self._end(row, "failed", error="internal error", deliver=True)

    async def _create(self, row: TaskRow, image: bytes | None) -> str | None:
        schedule = PollSchedule(self.settings.poll_initial, self.settings.poll_max)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                snap = await self.client.create(
                    row.prompt, image=image, previous_interaction_id=row.previous_interaction_id)
            except Transient as exc:
                self.metrics.requests.labels("create", "transient").inc()
                if attempt + 1 == CREATE_ATTEMPTS:
                    self._end(row, "failed", error=f"could not start it ({exc})", deliver=True)
                    return None
                self.metrics.retries.labels("create").inc()
                schedule.failed()
                await asyncio.sleep(schedule.next_delay(row.deadline - self._clock()))
                continue
            except Rejected as exc:
                self.metrics.requests.labels("create", "rejected").inc()
                self._end(row, "failed", error=f"the service refused it ({exc})", deliver=True)
                return None
            self.metrics.requests.labels("create", "ok").inc()
            self.store.started(row.id, snap.id)
            self._notify()
            return snap.id
        return None  # pragma: no cover - the loop returns

    async def _poll(self, row: TaskRow, iid: str) -> None:
        schedule = PollSchedule(self.settings.poll_initial, self.settings.poll_max)
        while True:
            left = row.deadline - self._clock()
            if left <= 0:
                await self._time_out(row, iid)
                return
            await asyncio.sleep(schedule.next_delay(left))
            try:
                snap = await self.client.get(iid)
            except Transient:
                self.metrics.requests.labels("get", "transient").inc()
                self.metrics.retries.labels("get").inc()
                schedule.failed()
                continue
            except Rejected as exc:
                self.metrics.requests.labels("get", "rejected").inc()
                self._end(row, "failed", error=f"the service lost it ({exc})", deliver=True)
                return
            self.metrics.requests.labels("get", "ok").inc()
            self.store.polled(row.id)
            if self._settle(row, snap):
                return
            schedule.polled()

    def _settle(self, row: TaskRow, snap: Snapshot) -> bool:
        """End the task if the snapshot says it ended; True if it did."""
        if snap.status == "completed":
            try:
                result, clipped = parse_result(snap.text)
            except ResultInvalid as exc:
                self.metrics.invalid_results.inc()
                self._end(row, "failed", error=str(exc), deliver=True)
                return True
            if clipped:
                self.metrics.clipped.inc()
            self._end(row, "completed", result=result.model_dump(), deliver=True)
            return True
        if snap.status in FAILED:
            why = snap.error or f"the service says {snap.status}"
            self._end(row, "failed", error=why, deliver=True)
            return True
        return False

    async def _time_out(self, row: TaskRow, iid: str) -> None:
        minutes = self.settings.max_task_seconds / 60
        self._end(row, "timed_out", error=f"it took longer than {minutes:.0f} minutes",
                  deliver=True)
        try:
            await self.client.cancel(iid)
            self.metrics.requests.labels("cancel", "ok").inc()
        except (Transient, Rejected):
            self.metrics.requests.labels("cancel", "error").inc()

    def _end(self, row: TaskRow, state: str, *, deliver: bool,
             result: dict[str, Any] | None = None, error: str | None = None) -> bool:
        ended = self.store.finish(row.id, state, now=self._clock(), deliver=deliver,
                                  result=result, error=error)
        if ended:
            self.metrics.finished.labels(state).inc()
            log.info("task %d (%s) %s%s", row.id, row.name, state, f": {error}" if error else "")
            if deliver:
                self._ready.set()
            self._prune()
            self._sync_active()
            self._notify()
        return ended

    def _prune(self) -> None:
        """Forget old tasks; a result given up unsaid is counted, and its interaction
        deleted on the service as for one that was said."""
        pruned = self.store.prune(self.settings.keep_finished)
        for row in pruned.expired:
            self.metrics.undelivered_expired.inc()
            self.cleanup.ended(row)
        if pruned.expired:  # at most once per task ended
            log.warning("%d task results were never said and are given up (the oldest: %s)",
                        len(pruned.expired), pruned.expired[0].name)

    # -- delivery ----------------------------------------------------------------
    async def _deliver_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            for row in self.store.pending_delivery():
                await self._deliver(row)

    async def _deliver(self, row: TaskRow) -> None:
        conversation = await self._quiet_moment()
        now_row = self.store.get(row.id)
        if now_row is None or now_row.delivery != "pending":  # given up while we waited
            return
        await conversation.say(delivery_text(row))
        if self.store.delivered(row.id):
            self.metrics.delivered.inc()
            if row.finished_at is not None:
                self.metrics.delivery_wait.observe(max(0.0, self._clock() - row.finished_at))
            log.info("task %d (%s): result put into the conversation", row.id, row.name)
            self.cleanup.ended(row)
            self._sync_active()
            self._notify()

    async def _quiet_moment(self) -> Conversation:
        """Wait until neither the user nor the model has spoken for `deliver_quiet`."""
        while True:
            conversation = self.conversation
            quiet = conversation.quiet_for() if conversation is not None else 0.0
            if conversation is not None and quiet >= self.settings.deliver_quiet:
                return conversation
            await asyncio.sleep(max(QUIET_CHECK_SECONDS, self.settings.deliver_quiet - quiet))

    def _sync_active(self) -> None:
        self.metrics.active.set(len(self.store.active()))
        self.metrics.undelivered.set(self.store.pending_count())

    def _notify(self) -> None:
        self._ha = self._ha_now()
        for callback in self.changed:
            callback()


def delivery_text(row: TaskRow) -> str:
    """What the model is given to say when a task ends (a user-role text turn)."""
    if row.state == "completed" and row.result is not None:
        summary = str(row.result.get("spoken_summary", "")).strip()
        return (f'[The background task "{row.name}" has finished.] Tell the user now, '
                f"briefly and in your own words: {summary}")
    return (f'[The background task "{row.name}" did not finish: {row.error or row.state}.] '
            "Tell the user briefly.")


def clean_name(text: str) -> str:
    """A short task name: printable, one line, at most MAX_NAME characters."""
    words = re.sub(r"[^\w .,'()-]+", " ", text).split()
    name = ""
    for word in words:
        if len(name) + len(word) + 1 > MAX_NAME:
            break
        name = f"{name} {word}".strip()
    return name or text.strip()[:MAX_NAME]

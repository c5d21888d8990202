"""Background tasks' pure parts: the poll schedule, the result's checks, the task
database's once-only transitions, names, the delivered text and `[interactions]`.

The manager with the real SDK against the fake Interactions service, the Live tools
and the restarts: tests/integration/test_background_tasks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from daemon.config import (
    ConfigError,
    InteractionsSettings,
    LiveSettings,
    MqttSettings,
    load_settings,
)
from daemon.home.own_device import OwnDevice
from daemon.ops.metrics import Metrics
from daemon.tasks.client import Endpoint, InteractionsClient
from daemon.tasks.manager import (
    MAX_UNDELIVERED,
    TaskManager,
    TaskRefused,
    clean_name,
    delivery_text,
)
from daemon.tasks.metrics import TaskMetrics
from daemon.tasks.result import MAX_SUMMARY_WORDS, ResultInvalid, parse_result
from daemon.tasks.schedule import PollSchedule
from daemon.tasks.store import KEEP_UNDELIVERED, TaskStore


def test_poll_delays_rise_to_the_cap_and_never_pass_the_deadline() -> None:
    s = PollSchedule(2.0, 60.0)
    delays = []
    for _ in range(15):
        delays.append(s.next_delay(1e9))
        s.polled()
    assert delays[0] == 2.0
    assert delays == sorted(delays)
    assert delays[-1] == 60.0
    assert s.next_delay(5.0) == 5.0
    assert s.next_delay(-1.0) == 0.0
    with pytest.raises(ValueError, match="initial"):
        PollSchedule(5.0, 1.0)


def test_failed_polls_back_off_faster() -> None:
    ok, bad = PollSchedule(1.0, 60.0), PollSchedule(1.0, 60.0)
    ok.polled()
    bad.failed()
    assert bad.next_delay(1e9) > ok.next_delay(1e9)
    assert bad.errors == 1


def _answer(summary: str = "Air-to-water heat pumps suit it.") -> str:
    return json.dumps({"spoken_summary": summary, "key_points": ["insulate first"],
                       "sources": [{"title": "Guide", "url": "https://example.org"}]})


def test_result_is_validated_and_a_long_summary_cut() -> None:
    result, clipped = parse_result(_answer())
    assert not clipped and result.sources[0].title == "Guide"
    long, clipped = parse_result(_answer("word " * 100))
    assert clipped
    assert len(long.spoken_summary.split()) == MAX_SUMMARY_WORDS


@pytest.mark.parametrize("text", ["not json", "[]", json.dumps({"key_points": []}),
                                  json.dumps({"spoken_summary": ""}),
                                  json.dumps({"spoken_summary": "x", "sources": [{}]})])
def test_results_that_do_not_fit_are_refused(text: str) -> None:
    with pytest.raises(ResultInvalid):
        parse_result(text)


def test_store_ends_a_task_once_and_delivers_once(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    row = store.add("heat pumps", "research heat pumps", now=1.0, deadline=100.0)
    assert row.state == "starting" and row.active
    store.started(row.id, "v1_a")
    assert store.finish(row.id, "completed", now=2.0, deliver=True,
                        result={"spoken_summary": "s"})
    assert not store.finish(row.id, "failed", now=3.0, deliver=True)  # already ended
    assert [r.id for r in store.pending_delivery()] == [row.id]
    assert store.delivered(row.id)
    assert not store.delivered(row.id)
    store.close()
    again = TaskStore(tmp_path)  # what a restart reads
    saved = again.get(row.id)
    assert saved is not None
    assert (saved.state, saved.delivery, saved.interaction_id) == ("completed", "delivered",
                                                                   "v1_a")
    assert again.pending_delivery() == []
    assert again.find("HEAT PUMPS") == saved and again.find(str(row.id)) == saved
    with pytest.raises(ValueError, match="terminal"):
        again.finish(row.id, "running", now=1.0, deliver=False)


def test_store_prunes_only_finished_delivered_tasks() -> None:
    store = TaskStore(None)
    rows = [store.add(f"t{i}", "p", now=i, deadline=1e9) for i in range(5)]
    for r in rows[:3]:
        store.finish(r.id, "completed", now=9.0, deliver=r.id == rows[0].id)
    assert store.prune(keep=1).deleted == 2  # the pending one and the running ones stay
    assert {r.id for r in store.recent(10)} == {rows[0].id, rows[3].id, rows[4].id}


def test_names_are_short_and_the_delivered_text_carries_the_summary() -> None:
    assert clean_name("Research the best heat pump for a 1930s house, please!!") == \
        "Research the best heat pump for a 1930s"
    store = TaskStore(None)
    row = store.add("heat pump", "p", now=0.0, deadline=1.0)
    store.finish(row.id, "completed", now=1.0, deliver=True, result={"spoken_summary": "Go."})
    done = store.get(row.id)
    assert done is not None and "Go." in delivery_text(done) and "heat pump" in delivery_text(done)
    bad = store.add("x", "p", now=0.0, deadline=1.0)
    store.finish(bad.id, "failed", now=1.0, deliver=True, error="the agent gave up")
    failed = store.get(bad.id)
    assert failed is not None and "the agent gave up" in delivery_text(failed)


def test_interactions_config_defaults_to_the_live_endpoint() -> None:
    s = load_settings(environ={"EDGE_AGENT_LIVE__BASE_URL": "https://127.0.0.1:9/",
                               "EDGE_AGENT_INTERACTIONS__ENABLED": "true"})
    assert s.interactions.enabled
    ep = Endpoint.of(s.interactions, s.live)
    assert (ep.base_url, ep.api_version, ep.ca_file) == ("https://127.0.0.1:9", "v1beta", None)
    own = load_settings(environ={"EDGE_AGENT_INTERACTIONS__BASE_URL": "https://x",
                                 "EDGE_AGENT_INTERACTIONS__API_VERSION": "v1alpha"})
    assert Endpoint.of(own.interactions, LiveSettings()).base_url == "https://x"
    assert Endpoint.of(own.interactions, LiveSettings()).api_version == "v1alpha"


@pytest.mark.parametrize(("key", "value", "named"), [
    ("AGENT", "", "interactions.agent"),
    ("POLL_MAX", "1", "interactions.poll_max"),
    ("MAX_CONCURRENT", "0", "interactions.max_concurrent"),
])
def test_bad_interactions_config_names_the_key(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={f"EDGE_AGENT_INTERACTIONS__{key}": value})


def _manager(store: TaskStore) -> TaskManager:
    s = InteractionsSettings(enabled=True)
    client = InteractionsClient(s, Endpoint.of(s, LiveSettings()), SecretStr("k"))
    return TaskManager(s, store, client, TaskMetrics(CollectorRegistry()))


def test_a_start_before_the_manager_runs_is_refused_and_counted() -> None:
    manager = _manager(TaskStore(None))
    with pytest.raises(TaskRefused, match="not running"):
        manager.start("research heat pumps", "heat pumps")
    assert manager.metrics.refused.labels("not_running")._value.get() == 1  # noqa: SLF001
    with pytest.raises(TaskRefused, match="no task 'x'; recent tasks: none"):
        manager.view("x")


def test_home_assistant_sees_the_newest_task_and_its_summary() -> None:
    store = TaskStore(None)
    assert _manager(store).ha_status() == {"background_task": "none",
                                           "background_task_result": ""}
    row = store.add("heat pumps", "p", now=0.0, deadline=1.0)
    store.finish(row.id, "completed", now=1.0, deliver=True, result={"spoken_summary": "Go."})
    manager = _manager(store)
    assert manager.ha_status() == {"background_task": "heat pumps: completed",
                                   "background_task_result": "Go."}
    own = OwnDevice(MqttSettings(), Metrics(), availability_topic="a", held=lambda: "",
                    status_provider=manager.ha_status)
    assert {"background_task", "background_task_result"} <= {e.object_id for e in own.entities}
    plain = OwnDevice(MqttSettings(), Metrics(), availability_topic="a", held=lambda: "",
                      status_provider=dict)
    assert "background_task" not in {e.object_id for e in plain.entities}


def test_a_task_left_starting_by_a_kill_fails_once_and_is_said(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.add("heat pumps", "p", now=0.0, deadline=1e12)  # killed before the create answered
    manager = _manager(TaskStore(tmp_path))
    manager._recover()  # noqa: SLF001 - what run() does first, without its network side
    (row,) = manager.store.recent(1)
    assert (row.state, row.delivery) == ("failed", "pending")
    assert row.error is not None and "not started" in row.error
    assert manager.metrics.finished.labels("failed")._value.get() == 1  # noqa: SLF001


def test_deletes_are_scheduled_due_once_and_a_pending_one_is_not_pruned() -> None:
    store = TaskStore(None)
    a = store.add("a", "p", now=0, deadline=100)
    b = store.add("b", "p", now=0, deadline=100)
    assert not store.schedule_delete(a.id, 5.0)  # no interaction on the service yet
    store.started(a.id, "v1_a")
    store.started(b.id, "v1_b")
    for row in (a, b):
        store.finish(row.id, "completed", now=1, deliver=True, result={"spoken_summary": "s"})
        store.delivered(row.id)
    assert store.schedule_delete(a.id, 10.0) and store.schedule_delete(b.id, 20.0)
    assert store.next_delete_at() == 10.0
    assert [r.id for r in store.due_deletes(15.0)] == [a.id]
    assert store.delete_failed(a.id, 16.0) == 1 and store.next_delete_at() == 16.0
    store.delete_done(a.id, "deleted")
    assert not store.schedule_delete(a.id, 30.0)  # deleted once, never again
    assert store.next_delete_at() == 20.0
    store.prune(0)  # b's delete is still due: kept, or it would stay on the service
    assert [r.id for r in store.recent()] == [b.id]
    kept = store.get(b.id)
    assert kept is not None and kept.service == "kept"


def test_a_database_from_before_the_delete_columns_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "tasks.sqlite3")
    old.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
                "prompt TEXT NOT NULL, interaction_id TEXT, previous_interaction_id TEXT, "
                "state TEXT NOT NULL, created_at REAL NOT NULL, deadline REAL NOT NULL, "
                "finished_at REAL, polls INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT, "
                "delivery TEXT NOT NULL DEFAULT 'none', has_image INTEGER NOT NULL DEFAULT 0)")
    old.execute("INSERT INTO tasks (name, prompt, interaction_id, state, created_at, deadline) "
                "VALUES ('old', 'p', 'v1_old', 'running', 0, 100)")
    old.commit()
    old.close()
    store = TaskStore(tmp_path)
    (row,) = store.active()
    assert (row.name, row.service, row.delete_attempts) == ("old", "kept", 0)
    store.close()


def test_a_follow_up_of_a_task_deleted_on_the_service_is_refused() -> None:
    manager = _manager(TaskStore(None))
    row = manager.store.add("heat pumps", "p", now=0, deadline=100)
    manager.store.started(row.id, "v1_x")
    manager.store.finish(row.id, "completed", now=1, deliver=False, result={"spoken_summary": "s"})
    manager.store.schedule_delete(row.id, 0)
    manager.store.delete_done(row.id, "deleted")
    with pytest.raises(TaskRefused, match="no longer kept on the service"):
        manager.follow_up("heat pumps", "and the cost?")


@pytest.mark.parametrize("existing", [False, True], ids=["new", "from-an-older-release"])
def test_the_task_database_is_the_daemons_alone_whatever_the_umask(
    tmp_path: Path, existing: bool
) -> None:
    # It holds the user's spoken prompts; outside systemd (UMask=0077) the umask is 022.
    import os
    import stat

    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        if existing:
            (state / "tasks.sqlite3").touch(mode=0o644)
        store = TaskStore(state)
        store.add("what did the doctor say about my blood test", "doctor", now=0.0,
                  deadline=100.0)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert "tasks.sqlite3-wal" in modes
    assert modes == dict.fromkeys(modes, 0o600)


def _unsaid(store: TaskStore, n: int, *, started: bool = False) -> list[int]:
    """`n` finished tasks whose results wait to be said (as a never-quiet day leaves them)."""
    ids = []
    for i in range(n):
        row = store.add(f"t{i}", "p" * 2000, now=float(i), deadline=1e9)
        if started:
            store.started(row.id, f"v1_{i}")
        store.finish(row.id, "failed", now=float(i), deliver=True, error="the service says no")
        ids.append(row.id)
    return ids


def test_results_never_said_are_bounded_the_oldest_given_up_first() -> None:
    store = TaskStore(None)
    ids = _unsaid(store, 500)
    pruned = store.prune(keep=50)
    assert pruned.deleted == 0  # all were waiting
    assert [r.id for r in pruned.expired] == ids[:-KEEP_UNDELIVERED]
    assert store.pending_count() == KEEP_UNDELIVERED
    assert [r.id for r in store.pending_delivery()] == ids[-KEEP_UNDELIVERED:]
    given_up = store.get(ids[0])
    assert given_up is not None and given_up.delivery == "expired"
    again = store.prune(keep=50)  # given up: now forgotten like a delivered one
    assert (again.deleted, again.expired) == (500 - KEEP_UNDELIVERED, [])
    assert len(store.recent(10_000)) == KEEP_UNDELIVERED


def test_a_result_given_up_unsaid_is_counted_and_deleted_on_the_service() -> None:
    manager = _manager(TaskStore(None))
    ids = _unsaid(manager.store, KEEP_UNDELIVERED, started=True)
    assert manager.metrics.undelivered_expired._value.get() == 0  # noqa: SLF001
    newest = manager.store.add("newest", "p", now=100.0, deadline=1e9)
    manager._end(newest, "failed", deliver=True, error="x")  # noqa: SLF001 - a poller's end
    assert manager.metrics.undelivered_expired._value.get() == 1  # noqa: SLF001
    assert manager.metrics.undelivered._value.get() == KEEP_UNDELIVERED  # noqa: SLF001
    oldest = manager.store.get(ids[0])
    assert oldest is not None and oldest.delivery == "expired"
    assert manager.store.next_delete_at() is not None  # its interaction is deleted later
    assert ids[0] not in {r.id for r in manager.store.pending_delivery()}


async def test_a_start_with_too_many_results_unsaid_is_refused_and_counted() -> None:
    import asyncio

    manager = _manager(TaskStore(None))
    _unsaid(manager.store, MAX_UNDELIVERED)
    async with asyncio.TaskGroup() as tg:
        manager._tg = tg  # noqa: SLF001 - running, without the network side of run()
        with pytest.raises(TaskRefused, match=f"{MAX_UNDELIVERED} finished tasks' results "
                                              "have not been said yet"):
            manager.start("research heat pumps", "heat pumps")
    assert manager.metrics.refused.labels("undelivered")._value.get() == 1  # noqa: SLF001
    assert manager.store.recent(1)[0].name == f"t{MAX_UNDELIVERED - 1}"  # nothing added

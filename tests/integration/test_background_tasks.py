"""Background tasks end to end (issue 8): the real daemon (`edge-agent run`, file
peripheral) talks to the fake Live server and the fake Interactions service on the
same TLS port through the real google-genai SDK.

A start_task call from the Live model is answered "started" at once; the task is
polled, completes (or fails, or is cancelled) and its spoken summary is put into
the conversation once, at a quiet moment; a SIGKILL mid-task or between the result
and its delivery still speaks it exactly once after the restart; a follow-up
continues the finished task with previous_interaction_id.

The pure parts: tests/unit/test_tasks.py and tests/unit/test_fake_interactions.py.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.tasks.cleanup import DELETE_ATTEMPTS
from daemon.tasks.manager import MAX_UNDELIVERED
from daemon.tasks.result import RESULT_SCHEMA
from daemon.tasks.store import TaskStore
from simulator.interactions import FakeInteractions, Outcome, TaskScript
from simulator.live_server import FakeLiveServer
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn
from tests.support.live import KEY
from tests.support.tasks import Daemon, Fakes
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

NAME = "heat pump research"
START = ToolCallSpec(name="start_task", args={
    "request": "research the best heat pump for a 1930s house", "name": NAME})


def _turn(user: str, reply: str, *calls: ToolCallSpec) -> Turn:
    return Turn(user=user, reply=reply, audio=ReplyAudio(duration_ms=200), tool_calls=calls)


def scenario(*turns: Turn) -> Scenario:
    """The scripted turns, then plain replies (a delivered result is a turn too)."""
    rest = tuple(_turn("", f"reply {i}") for i in range(10))
    return Scenario(turns=(*turns, *rest))


@pytest.fixture
async def fakes(request: pytest.FixtureRequest) -> AsyncIterator[Fakes]:
    tasks = FakeInteractions(api_key=KEY)
    async with FakeLiveServer(api_key=KEY, scenario=scenario(*request.param),
                              http_router=tasks) as live:
        yield Fakes(live, tasks)
    assert not live.internal_errors
    assert all(r.status != 500 for r in tasks.requests), tasks.requests


def with_turns(*turns: Turn) -> pytest.MarkDecorator:
    """The Live model's script for one test (the `fakes` fixture serves it)."""
    return pytest.mark.parametrize("fakes", [turns], indirect=True, ids=["script"])


def speech_then(*gaps: float) -> list[tuple[bool, float]]:
    """An utterance (0.5 s) before each gap of silence."""
    out: list[tuple[bool, float]] = [(False, 0.3)]
    for gap in gaps:
        out += [(True, 0.5), (False, gap)]
    return out


def rows(tmp_path: Path) -> list[dict[str, Any]]:
    """The task database as the daemon left it."""
    db = sqlite3.connect(tmp_path / "state" / "tasks.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM tasks ORDER BY id")]
    finally:
        db.close()


@with_turns(_turn("research heat pumps", "ok, {result}", START),
                      _turn("", "Here is what the research found."))
async def test_a_task_started_by_the_model_is_polled_completed_and_spoken_once(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.tasks.queue(TaskScript(duration_s=1.0))
    async with Daemon(fakes, tmp_path, speech_then(4.0)):
        await fakes.live.wait_until(lambda: len(fakes.client_texts()) >= 1, timeout=60)
        await fakes.live.wait_until(lambda: len(fakes.live.turns) >= 2
                                    and fakes.live.turns[1].turn_complete_at is not None,
                                    timeout=30)
    (answer,) = fakes.answers("start_task")
    assert "started" in json.dumps(answer) and NAME in json.dumps(answer)
    (interaction,) = fakes.tasks.interactions.values()
    body = interaction.body
    assert body["agent"] == "deep-research-pro-preview-12-2025" and body["background"] is True
    assert body["response_format"]["schema"] == RESULT_SCHEMA
    assert fakes.tasks.count("GET") >= 2  # polled while it ran
    (text,) = fakes.client_texts()
    summary = json.loads(interaction.answer_text or "")["spoken_summary"]
    assert summary in text and NAME in text
    assert fakes.live.turns[1].utterance_reason == "client_content"
    (row,) = rows(tmp_path)
    assert (row["state"], row["delivery"]) == ("completed", "delivered")
    assert json.loads(row["result"])["key_points"]  # the whole result is kept


@with_turns(_turn("research heat pumps", "ok, {result}", START),
                      _turn("stop that research", "stopped: {result}",
                            ToolCallSpec(name="cancel_task", args={"task": NAME})))
async def test_stop_that_research_cancels_it_here_and_on_the_service(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.tasks.queue(TaskScript(duration_s=None))  # runs until cancelled
    async with Daemon(fakes, tmp_path, speech_then(2.5, 3.0)):
        await fakes.live.wait_until(lambda: len(fakes.answers("cancel_task")) == 1, timeout=60)
        await fakes.tasks.wait_until(lambda: fakes.tasks.count("POST", "/cancel") == 1)
        await fakes.tasks.wait_until(lambda: fakes.tasks.count("DELETE") == 1)
    (interaction,) = fakes.tasks.deleted.values()  # cancelled there, then deleted
    assert interaction.status == "cancelled"
    assert "cancelled" in json.dumps(fakes.answers("cancel_task")[0])
    assert fakes.client_texts() == []  # the user asked: nothing is said later
    (row,) = rows(tmp_path)
    assert (row["state"], row["delivery"], row["service"]) == ("cancelled", "none", "deleted")


@with_turns(_turn("research heat pumps", "ok, {result}", START),
                      _turn("", "Sorry, that did not work."))
async def test_a_failed_task_is_reported_once_after_transient_errors_are_retried(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.tasks.queue(TaskScript(duration_s=0.5, outcome=Outcome.FAIL, transient_errors=2))
    async with Daemon(fakes, tmp_path, speech_then(4.0)):
        await fakes.live.wait_until(lambda: len(fakes.client_texts()) >= 1, timeout=60)
        await fakes.live.wait_until(lambda: len(fakes.live.turns) >= 2
                                    and fakes.live.turns[1].turn_complete_at is not None,
                                    timeout=30)
    assert [r.status for r in fakes.tasks.requests if r.method == "GET"][:2] == [503, 503]
    (text,) = fakes.client_texts()
    assert "did not finish" in text and "could not complete" in text
    (row,) = rows(tmp_path)
    assert (row["state"], row["delivery"]) == ("failed", "delivered")


@with_turns(_turn("research heat pumps", "ok, {result}", START),
                      _turn("", "Here is what the research found."))
@pytest.mark.parametrize("step", ["while_running", "before_delivery"])
async def test_a_kill_mid_task_still_speaks_the_result_once_after_restart(
    fakes: Fakes, tmp_path: Path, step: str
) -> None:
    fakes.tasks.queue(TaskScript(duration_s=None))
    # The first daemon never finds a quiet moment long enough: a result waits undelivered.
    first = Daemon(fakes, tmp_path, speech_then(1.0), "first",
                   EDGE_AGENT_INTERACTIONS__DELIVER_QUIET="60")
    async with first:
        await fakes.tasks.wait_until(lambda: fakes.tasks.count("GET") >= 1, within=60)
        (iid,) = fakes.tasks.interactions
        if step == "before_delivery":
            await fakes.tasks.finish(iid)
            await eventually(lambda: rows(tmp_path)[0]["state"] == "completed", 30)
            assert rows(tmp_path)[0]["delivery"] == "pending"
        await first.stop(signal.SIGKILL)
    assert fakes.client_texts() == []
    if step == "while_running":
        assert rows(tmp_path)[0]["state"] == "running"
        await fakes.tasks.finish(iid)
    async with Daemon(fakes, tmp_path, speech_then(), "second"):
        await fakes.live.wait_until(lambda: len(fakes.client_texts()) >= 1, timeout=60)
        await fakes.live.wait_until(
            lambda: any(t.utterance_reason == "client_content" and t.turn_complete_at
                        for t in fakes.live.turns), timeout=30)
    (text,) = fakes.client_texts()
    assert NAME in text
    (row,) = rows(tmp_path)
    assert (row["state"], row["delivery"]) == ("completed", "delivered")
    assert len(fakes.tasks.interactions) == 1  # resumed, not started again


@with_turns(
    _turn("research heat pumps", "ok, {result}", START),
    _turn("", "Here is what the research found."),
    _turn("and what does it cost", "asking: {result}",
          ToolCallSpec(name="follow_up_task",
                       args={"task": NAME, "question": "and what does it cost to run?"})),
    _turn("", "Here is the follow-up."))
async def test_a_follow_up_continues_the_finished_task_on_the_service(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.tasks.queue(TaskScript(duration_s=0.3), TaskScript(duration_s=0.3))
    async with Daemon(fakes, tmp_path, speech_then(7.0, 4.0)):
        await fakes.live.wait_until(lambda: len(fakes.client_texts()) >= 2, timeout=60)
    first, second = fakes.tasks.interactions.values()
    assert second.previous_interaction_id == first.id
    assert "and what does it cost to run?" in json.dumps(second.body["input"])
    follow_text = fakes.client_texts()[1]
    assert "following up on" in follow_text  # the service kept the first task's context
    assert [r["previous_interaction_id"] for r in rows(tmp_path)] == [None, first.id]


@with_turns(_turn("research heat pumps", "ok, {result}", START),
            _turn("", "Here is what the research found."))
@pytest.mark.parametrize("deletes", ["work", "keep_failing"])
async def test_a_delivered_task_is_deleted_on_the_service_and_failures_are_not_retried_forever(
    fakes: Fakes, tmp_path: Path, deletes: str
) -> None:
    """follow_up_window = 0: deleted as soon as the result reached the conversation; a
    delete the service keeps refusing (503) is tried DELETE_ATTEMPTS times, then left."""
    fakes.tasks.queue(TaskScript(duration_s=1.0))
    if deletes == "keep_failing":
        fakes.tasks.fail_next(*[503] * (DELETE_ATTEMPTS + 3), method="DELETE")
    async with Daemon(fakes, tmp_path, speech_then(4.0),
                      EDGE_AGENT_INTERACTIONS__FOLLOW_UP_WINDOW="0"):
        await fakes.live.wait_until(lambda: len(fakes.client_texts()) >= 1, timeout=60)
        await eventually(lambda: rows(tmp_path)[0]["service"] != "kept", 60)
        deletes_seen = fakes.tasks.count("DELETE")
    (row,) = rows(tmp_path)
    assert (row["state"], row["delivery"]) == ("completed", "delivered")
    assert len(fakes.client_texts()) == 1  # said once, before it was deleted
    delete_times = [r.at for r in fakes.tasks.requests if r.method == "DELETE"]
    delivered_at = min(m.t for c in fakes.live.connections for m in c.messages
                       if m.kind == "client_content")
    assert all(t > delivered_at for t in delete_times)
    if deletes == "work":
        assert row["service"] == "deleted" and deletes_seen == 1
        (gone,) = fakes.tasks.deleted.values()
        assert gone.status == "completed" and not fakes.tasks.interactions
    else:
        assert row["service"] == "gave_up" and row["delete_attempts"] == DELETE_ATTEMPTS
        assert deletes_seen == fakes.tasks.count("DELETE") == DELETE_ATTEMPTS
        assert len(fakes.tasks.interactions) == 1  # left there, and said so in the log


@with_turns(_turn("research heat pumps", "ok, {result}", START),
            _turn("", "Sorry, that did not work."))
@pytest.mark.parametrize("how", ["refused", "failed"])
async def test_a_service_reason_quoting_the_key_is_kept_nowhere(
    fakes: Fakes, tmp_path: Path, how: str
) -> None:
    """A proxy or an echoing server may quote the API key in its reason: the reason is
    stored, answered to the model and published to Home Assistant, so it is scrubbed."""
    reason = f"API key {KEY} is not enabled for this API"
    if how == "refused":
        fakes.tasks.fail_next(400, method="POST", message=reason)
    else:
        fakes.tasks.queue(TaskScript(duration_s=0.5, outcome=Outcome.FAIL, error_message=reason))
    async with Daemon(fakes, tmp_path, speech_then(4.0)) as daemon:
        await fakes.live.wait_until(lambda: len(fakes.answers("start_task")) == 1, timeout=60)
        await eventually(lambda: bool(rows(tmp_path)) and rows(tmp_path)[0]["state"] == "failed",
                         60)
        await fakes.live.wait_until(lambda: len(fakes.client_texts()) >= 1, timeout=60)
        log = await daemon.stop(signal.SIGTERM)
    said = json.dumps(fakes.answers("start_task")) + json.dumps(fakes.client_texts())
    stored = json.dumps(rows(tmp_path))
    assert "API key *** is not enabled" in stored  # the reason is kept, scrubbed
    for where in (said, stored, log):
        assert KEY not in where and KEY[:12] not in where


@with_turns(_turn("research heat pumps", "ok, {result}", START))
async def test_a_start_is_refused_while_too_many_results_wait_to_be_said(
    fakes: Fakes, tmp_path: Path
) -> None:
    """Results that never found a quiet moment are bounded: at MAX_UNDELIVERED a new
    task is refused, and the model is told why (nothing reaches the service)."""
    store = TaskStore(tmp_path / "state")
    for i in range(MAX_UNDELIVERED):
        row = store.add(f"old {i}", "p", now=float(i), deadline=1e9)
        store.finish(row.id, "failed", now=float(i), deliver=True, error="the service says no")
    store.close()
    async with Daemon(fakes, tmp_path, speech_then(2.0),
                      EDGE_AGENT_INTERACTIONS__DELIVER_QUIET="60"):
        await fakes.live.wait_until(lambda: len(fakes.answers("start_task")) == 1, timeout=60)
    (answer,) = fakes.answers("start_task")
    assert f"{MAX_UNDELIVERED} finished tasks' results have not been said yet" in \
        json.dumps(answer)
    assert fakes.tasks.count("POST") == 0 and not fakes.tasks.interactions
    assert len(rows(tmp_path)) == MAX_UNDELIVERED
    assert fakes.client_texts() == []

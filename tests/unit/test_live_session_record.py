"""The stored Live session (state record `live_session`) and the stall evidence, without a
socket: round trip, what makes a record unusable (each counted), coalesced writes, and
what becomes of unconfirmed audio when the server was not reading.

With the fake Live server and real processes: tests/integration/test_live_restart.py and
tests/integration/test_live_stall.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors as genai_errors

from daemon.config import LiveSettings
from daemon.live.failures import ConnectFailed, LiveFatalError, classify_setup_close
from daemon.live.resumption import Resumption
from daemon.live.session_record import RECORD, SessionKeeper, endpoint_id
from daemon.live.socket_life import SocketLife
from daemon.live.uplink import UplinkBuffer
from daemon.media.types import AudioChunk
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore

pytestmark = pytest.mark.timeout(20)

NOW = 1_800_000_000.0
SETTINGS = LiveSettings(base_url="https://live.example:8443", resume_save_interval=60.0)


def keeper(tmp_path: Path, metrics: Metrics, settings: LiveSettings = SETTINGS,
           now: float = NOW) -> SessionKeeper:
    return SessionKeeper(StateStore(tmp_path), settings, metrics, clock=lambda: now)


def starts(metrics: Metrics) -> dict[str, float]:
    reasons = ("resumed", "refused", "expired", "changed", "corrupt", "none")
    return {r: v for r in reasons
            if (v := metrics.value("edge_live_start_sessions_total", reason=r))}


def write_record(tmp_path: Path, **fields: Any) -> None:
    record = {"version": 1, "handle": "h-1", "issued_at": NOW - 60,
              "endpoint": endpoint_id(SETTINGS), "open_calls": []}
    record.update(fields)
    StateStore(tmp_path).save(RECORD, record)


def test_a_stored_handle_round_trips_with_its_open_calls_and_nothing_secret(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    k = keeper(tmp_path, metrics)
    assert k.load() is None and starts(metrics) == {"none": 1}
    k.issued("handle-A", {"call-2": "lamp", "call-1": "agent_status"})
    k.flush()
    path = tmp_path / f"{RECORD}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    record = json.loads(path.read_text())
    assert record == {"version": 1, "handle": "handle-A", "issued_at": NOW,
                      "endpoint": endpoint_id(SETTINGS),
                      "open_calls": [{"id": "call-1", "name": "agent_status"},
                                     {"id": "call-2", "name": "lamp"}]}
    assert "live.example" not in path.read_text()  # the URL is not written down, only a hash
    again = Metrics()
    stored = keeper(tmp_path, again, now=NOW + 100).load()
    assert stored is not None
    assert (stored.handle, stored.issued_at) == ("handle-A", NOW)
    assert stored.open_calls == (("call-1", "agent_status"), ("call-2", "lamp"))
    assert starts(again) == {}  # counted once it is resumed or refused, by the link


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "corrupt"),
        (b"[1, 2]", "corrupt"),
        (b'{"version": 2, "handle": "h", "issued_at": 1}', "corrupt"),
        (b'{"version": 1, "handle": "", "issued_at": 1}', "corrupt"),
        (b'{"version": 1, "handle": "h", "issued_at": "yesterday"}', "corrupt"),
        (b'{"version": 1, "handle": "h", "issued_at": NaN}', "corrupt"),
        (b'{"version": 1, "handle": "h", "issued_at": 1, "open_calls": [{"id": 3}]}',
         "corrupt"),
        (b"\x00" * 70_000, "corrupt"),
    ],
    ids=["not-json", "not-object", "version", "empty-handle", "time-text", "time-nan",
         "bad-call", "huge"],
)
def test_an_unusable_record_is_ignored_and_counted(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / f"{RECORD}.json").write_bytes(content)
    metrics = Metrics()
    assert keeper(tmp_path, metrics).load() is None
    assert starts(metrics) == {reason: 1}


def test_a_handle_too_old_or_for_another_endpoint_is_not_tried(tmp_path: Path) -> None:
    write_record(tmp_path, issued_at=NOW - 7201)
    metrics = Metrics()
    assert keeper(tmp_path, metrics).load() is None
    assert starts(metrics) == {"expired": 1}
    write_record(tmp_path, issued_at=NOW - 7199)
    assert keeper(tmp_path, Metrics()).load() is not None  # just inside two hours
    other = LiveSettings(base_url="https://live.example:8443", model="gemini-other")
    metrics = Metrics()
    assert keeper(tmp_path, metrics, other).load() is None
    assert starts(metrics) == {"changed": 1}
    shorter = LiveSettings(base_url="https://live.example:8443", resume_max_age=30)
    metrics = Metrics()
    assert keeper(tmp_path, metrics, shorter).load() is None
    assert starts(metrics) == {"expired": 1}


def test_resuming_across_restarts_can_be_turned_off(tmp_path: Path) -> None:
    write_record(tmp_path)
    off = LiveSettings(base_url="https://live.example:8443", resume_max_age=0)
    metrics = Metrics()
    k = keeper(tmp_path, metrics, off)
    assert k.load() is None and starts(metrics) == {"none": 1}
    k.issued("handle-B", {})
    k.flush()
    assert json.loads((tmp_path / f"{RECORD}.json").read_text())["handle"] == "h-1"


def test_a_clock_behind_the_record_still_tries_it(tmp_path: Path) -> None:
    """A board without a clock battery can boot with an old time: the server decides."""
    write_record(tmp_path, issued_at=NOW + 86_400)
    assert keeper(tmp_path, Metrics()).load() is not None


async def _until(predicate: Any) -> None:
    for _ in range(2000):  # a worker thread's write: milliseconds
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("not reached")


async def test_a_burst_of_handles_is_coalesced_but_the_newest_is_kept_at_stop(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    k = keeper(tmp_path, metrics)  # at most one write a minute
    task = asyncio.create_task(k.run())
    try:
        k.issued("h1", {})
        await _until(lambda: metrics.value("edge_live_session_writes_total",
                                           result="written") == 1)
        for i in range(2, 10):
            k.issued(f"h{i}", {})
        await asyncio.sleep(0.01)
        assert metrics.value("edge_live_session_writes_total", result="written") == 1
        assert json.loads((tmp_path / f"{RECORD}.json").read_text())["handle"] == "h1"
        k.calls_changed({"c1": "lamp"})  # a new call is written at once, with the newest handle
        await _until(lambda: metrics.value("edge_live_session_writes_total",
                                           result="written") == 2)
        record = json.loads((tmp_path / f"{RECORD}.json").read_text())
        assert record["handle"] == "h9" and record["open_calls"] == [{"id": "c1",
                                                                      "name": "lamp"}]
        k.issued("h10", {})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert json.loads((tmp_path / f"{RECORD}.json").read_text())["handle"] == "h10"
    assert metrics.value("edge_live_session_writes_total", result="written") == 3


async def test_a_given_up_session_is_removed_and_a_failed_write_counted(tmp_path: Path) -> None:
    write_record(tmp_path)
    metrics = Metrics()
    k = keeper(tmp_path, metrics)
    assert k.load() is not None
    k.forget()
    k.flush()
    assert not (tmp_path / f"{RECORD}.json").exists()
    assert metrics.value("edge_live_session_writes_total", result="deleted") == 1
    os.chmod(tmp_path, 0o500)  # read-only: the next write fails (logged and counted)
    try:
        k.issued("h2", {})
        k.flush()
    finally:
        os.chmod(tmp_path, 0o700)
    if os.geteuid() != 0:  # root writes anyway
        assert metrics.value("edge_live_session_writes_total", result="failed") == 1


def test_open_calls_are_the_unanswered_and_the_unconfirmed_ones(tmp_path: Path) -> None:
    from daemon.live.calls import ToolResponse
    from daemon.live.wire import Control

    metrics = Metrics()
    k = keeper(tmp_path, metrics)
    uplink = UplinkBuffer(1.0, 1.0)
    res = Resumption(SETTINGS, uplink, metrics, k)
    conn = SocketLife(established_at=0.0, resumed=False)
    res.apply(Control(new_handle="h1", resumable=True), conn)
    res.apply(Control(call_ids=["a", "b"], call_names={"a": "lamp", "b": "look"}), conn)
    assert res.open_calls() == {"a": "lamp", "b": "look"}
    assert res.accept_answer(ToolResponse("a", "lamp", {"output": "on"}))
    resp = uplink.peek_response()
    assert resp is not None
    uplink.response_sent(resp)
    res.answer_sent(resp)
    assert res.open_calls() == {"a": "lamp", "b": "look"}  # sent, not yet confirmed
    k.flush()
    record = json.loads((tmp_path / f"{RECORD}.json").read_text())
    assert record["open_calls"] == [{"id": "a", "name": "lamp"}, {"id": "b", "name": "look"}]
    # the pong confirms the answer (as the sender reports it): the record follows at
    # once, or a restart would answer "a" a second time (found by the hour-long soak)
    res.answers_confirmed(uplink.confirm_responses(uplink.last_response_seq))
    assert res.open_calls() == {"b": "look"}
    k.flush()
    record = json.loads((tmp_path / f"{RECORD}.json").read_text())
    assert record["open_calls"] == [{"id": "b", "name": "look"}]


# -- the stall evidence: pongs that do not come ------------------------------------
def test_a_ping_unanswered_past_the_stall_timeout_is_a_stall_though_messages_arrive() -> None:
    conn = SocketLife(established_at=0.0, resumed=False, last_alive=0.0)
    conn.ping_sent(1.0)
    conn.ping_sent(2.0)
    conn.last_alive = 9.9  # the server still sends
    assert conn.stall(10.0, timeout=10.0) is None
    assert conn.stall(11.5, timeout=10.0) == "no_pong"
    conn.pong(1.0)  # the first ping's pong: the second still waits
    assert conn.unanswered_for(11.5) == pytest.approx(9.5)
    conn.pong(2.0)
    assert conn.stall(11.5, timeout=10.0) is None
    assert conn.stall(30.0, timeout=10.0) == "silence"


def _sent(uplink: UplinkBuffer, n: int) -> None:
    for _ in range(n):
        uplink.push_audio(AudioChunk(bytes(640), 16_000, 0.0), time.monotonic())
    while (item := uplink.peek_audio()) is not None:
        uplink.mark_sent(item.seq)


def test_unconfirmed_audio_is_replayed_when_the_server_was_not_reading(tmp_path: Path) -> None:
    metrics = Metrics()
    uplink = UplinkBuffer(0.2, 1.0)  # 10 chunks may be replayed
    res = Resumption(SETTINGS, uplink, metrics, keeper(tmp_path, metrics))
    _sent(uplink, 4)
    uplink.confirm(2)
    _sent(uplink, 6)
    _sent(uplink, 6)  # 14 unconfirmed; 4 of them let go at the bound
    res.settle("closed:1006", None, unread=True)
    assert uplink.pending_seconds == pytest.approx(0.2)  # replayed: the newest 10
    assert metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                         reason="closed:1006") == 10
    assert metrics.value("edge_live_uplink_audio_dropped_chunks_total") == 4  # never "delivered"
    # the same close with pongs coming until then: taken as delivered, as before
    metrics = Metrics()
    uplink = UplinkBuffer(0.2, 1.0)
    res = Resumption(SETTINGS, uplink, metrics, keeper(tmp_path, metrics))
    _sent(uplink, 7)
    _sent(uplink, 7)
    res.settle("closed:1006", None)
    assert uplink.pending_seconds == 0
    assert metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                         reason="closed:1006") == 14  # 10 kept and 4 let go, all counted


def _close(code: int, reason: str) -> genai_errors.APIError:
    return genai_errors.APIError(code, reason)  # as the SDK raises a close frame


@pytest.mark.parametrize(
    ("code", "reason", "resuming", "kind"),
    [
        (1007, "Invalid session resumption handle.", True, "resume_refused"),
        (1008, "Session not found.", True, "resume_refused"),
        (1008, "models/gemini-x is not found for API version v1beta", True,
         "model_unavailable"),
        (1008, "Session not found.", False, "model_unavailable"),
        (1007, "API key not valid. Please pass a valid API key.", True, "key_rejected"),
    ],
)
def test_a_refused_handle_is_never_taken_for_a_refused_key_or_model(
    code: int, reason: str, resuming: bool, kind: str
) -> None:
    got = classify_setup_close(_close(code, reason), resuming, LiveSettings())
    assert isinstance(got, ConnectFailed | LiveFatalError)
    assert got.kind == kind

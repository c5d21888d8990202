"""A server that keeps sending but has stopped reading (issue 11, item 4's finding).

The fake's STOP_READING fault pauses reading on the server's side of the socket:
the client's audio and pings stay in the TCP buffers, no pong comes back, while
transcript pieces keep arriving. Before the fix the link never called that a
stall (it heard from the server all the time), and when the server finally
dropped the connection the unread audio was "taken as delivered" and lost.

Timing: short, configurable timeouts in the link's settings, and generous waits
(a loaded 2-core machine); nothing asserts how fast, only what happened.
"""

from __future__ import annotations

import pytest

from simulator.live_server import FakeLiveServer, Fault, Trigger
from tests.support.live import Run, Talker, running, utterances

pytestmark = pytest.mark.timeout(60)

CHUNK_S = 0.02


def handles_issued_on(srv: FakeLiveServer, conn: int) -> list[str]:
    out = []
    for m in srv.connections[conn].sent:
        upd = m.message.get("sessionResumptionUpdate")
        if upd and upd.get("newHandle"):
            out.append(upd["newHandle"])
    return out


def split_by_connection(run: Run) -> tuple[list[int], list[int]]:
    """The stamps the server read on the first connection, and on the later ones."""
    old = [s for s, c in run.received() if c == 0 and s is not None]
    new = [s for s, c in run.received() if c > 0 and s is not None]
    return old, new


async def test_a_server_that_sends_but_stopped_reading_is_a_stall_and_its_audio_is_replayed(
    server: FakeLiveServer,
) -> None:
    # The server stops reading inside the second utterance and would drop the
    # socket 20 s later; the client must call it a stall long before that.
    armed = server.arm(Fault.STOP_READING, Trigger.AUDIO_CHUNK, n=90, interval=0.1,
                       drop_after=20.0)
    talker = Talker(utterances(4), speed=1.0)
    confirm = 0.1
    async with running(server, talker, stall_timeout=1.5, ping_interval=0.3,
                       confirm_interval=confirm) as run:
        await armed.wait()
        await run.until(lambda: len(server.connections) >= 2, limit=20)
        await run.until(lambda: any(t.turn_complete_at and t.connection >= 1
                                    for t in server.turns), limit=20)
        await run.all_audio_delivered(limit=20)
    deaf = server.connections[0]
    assert deaf.stopped_reading and armed.fired_at is not None
    # it read nothing more than what websockets had already parsed (its queue: 16)
    assert len([m for m in deaf.messages if m.t > armed.fired_at]) <= 16
    assert len([m for m in deaf.sent if m.t > armed.fired_at]) >= 5  # but kept sending
    # messages kept coming, so only the unanswered pings could tell
    assert run.metrics.value("edge_live_stalls_total", evidence="no_pong") == 1
    assert run.metrics.value("edge_live_stalls_total", evidence="silence") == 0
    assert run.metrics.value("edge_live_disconnects_total", reason="stall") == 1
    new = server.connections[1]
    assert new.resumed and new.requested_handle == handles_issued_on(server, 0)[-1]
    assert new.started_at - armed.fired_at < 15.0  # long before the server's own drop
    # Nothing lost: what the deaf server never read went up again, in order. The
    # only repeats are the chunks it read after its last pong (at most one
    # confirmation window, plus one message in flight with the ping).
    old, again = split_by_connection(run)
    assert old == list(range(len(old)))
    assert again == list(range(again[0], talker.sent))
    repeated = set(old) & set(again)
    assert repeated == set(range(again[0], len(old)))
    assert len(repeated) <= confirm / CHUNK_S + 2, len(repeated)
    assert run.dropped() == 0
    resent = run.metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                               reason="stall")
    assert resent >= len(old) - again[0]  # counted: everything on the socket after the last pong


async def test_a_stall_longer_than_the_replay_bound_replays_the_newest_and_counts_the_rest(
    server: FakeLiveServer,
) -> None:
    # 3 s without a pong, but only 1 s may be replayed: the oldest unconfirmed
    # audio is lost, and counted as dropped, never as delivered.
    armed = server.arm(Fault.STOP_READING, Trigger.AUDIO_CHUNK, n=30, interval=0.1,
                       drop_after=20.0)
    talker = Talker(utterances(5), speed=1.0)
    async with running(server, talker, stall_timeout=3.0, ping_interval=0.3,
                       confirm_interval=0.1, replay_seconds=1.0) as run:
        await armed.wait()
        await run.until(lambda: len(server.connections) >= 2, limit=20)
        await run.all_audio_delivered(limit=20)
    old, again = split_by_connection(run)
    missing = sorted(set(range(talker.sent)) - set(old) - set(again))
    dropped = run.dropped()
    assert missing, "nothing was lost: the stall was shorter than the bound"
    assert missing == list(range(missing[0], missing[0] + len(missing)))  # one run, the oldest
    assert missing[0] == len(old)  # right after what the server read before the wedge
    assert sorted(set(old) | set(again)) == [s for s in range(talker.sent) if s not in missing]
    # Every lost chunk is counted as dropped; the count can exceed what is missing
    # only by the chunks the server read between its last pong and the wedge.
    assert len(missing) <= dropped <= len(missing) + 0.1 / CHUNK_S + 2
    # and what went up again was within the bound (1 s of 20 ms chunks, one message more)
    resent = run.metrics.value("edge_live_uplink_unconfirmed_at_close_chunks_total",
                               reason="stall")
    assert 1 <= resent <= 1.0 / CHUNK_S + 10
    assert run.metrics.value("edge_live_disconnects_total", reason="stall") == 1

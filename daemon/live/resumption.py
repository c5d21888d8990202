"""What a Live session carries across its connections, and when to move to the next one.

The resumption handle, whether the server may be left now, the calls the model
waits on, and what became of what was on a socket when it ended: the policy
that lets one conversation outlive any socket (GoAway, drops, stalls) without
losing or repeating what matters.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from daemon.config import LiveSettings
from daemon.live.calls import ToolResponse
from daemon.live.session_record import SessionKeeper, StoredSession
from daemon.live.socket_door import LiveSocket
from daemon.live.socket_life import SocketLife
from daemon.live.uplink import UplinkBuffer
from daemon.live.wire import Control
from daemon.ops.metrics import Metrics

log = logging.getLogger("daemon.live.link")  # the link's parts log under its name

REMEMBERED_CANCELLATIONS = 512
REMEMBERED_ANSWERS = 512
INTERRUPTED_ANSWER = {
    "error": "interrupted: the assistant restarted before this call finished; "
             "whether it took effect is unknown"
}


class Resumption:
    """The session's side of the link: its handle and its open calls."""

    def __init__(
        self, settings: LiveSettings, uplink: UplinkBuffer, metrics: Metrics,
        keeper: SessionKeeper,
    ) -> None:
        """`keeper` stores each new handle (and the open calls) for the next process."""
        self._s = settings
        self._uplink = uplink
        self._metrics = metrics
        self._keeper = keeper
        self._restored: tuple[tuple[str, str], ...] = ()  # calls a dead process left open
        self._call_names: dict[str, str] = {}  # open calls' tool names, for the record
        self._handle: str | None = None
        self._resumable = False
        self._turn_active = False
        self._expected_calls: set[str] = set()
        self._cancelled_calls: OrderedDict[str, None] = OrderedDict()  # recent, bounded
        # Answered (sent, or answered as interrupted after a restart): a call the server
        # sends again is neither run again nor waited on. Recent, bounded.
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._resending: set[str] = set()  # answers requeued after a connection ended

    @property
    def handle(self) -> str | None:
        """The newest handle the server gave, or None: the next connection starts fresh."""
        return self._handle

    # -- answers -------------------------------------------------------------------
    def accept_answer(self, response: ToolResponse) -> bool:
        """Queue the answer to a call; at most one per call, none once it is cancelled.

        False (and counted) when nobody waits for it.
        """
        if response.id in self._cancelled_calls:
            self._metrics.tool_responses_dropped.labels("cancelled").inc()
            log.info("tool response %s (%s) not sent: the model cancelled the call",
                     response.id, response.name)
            return False
        if response.id not in self._expected_calls:
            # The session that asked is gone (a fresh one started): nobody waits.
            self._metrics.tool_responses_lost.inc()
            log.warning("tool response %s (%s) dropped: its session ended", response.id,
                        response.name)
            return False
        if not self._uplink.push_response(response):
            self._metrics.tool_responses_dropped.labels("duplicate").inc()
            log.warning("second answer to tool call %s (%s) dropped; the first is queued",
                        response.id, response.name)
            return False
        return True

    def answer_sent(self, response: ToolResponse) -> None:
        """The answer is on the socket: the call no longer waits for one."""
        self._expected_calls.discard(response.id)
        _remember(self._answered, [response.id], REMEMBERED_ANSWERS)
        if response.id in self._resending:
            self._resending.discard(response.id)
            self._metrics.tool_responses_resent.inc()
            log.info("tool response %s (%s) sent again on the resumed session",
                     response.id, response.name)

    def answers_confirmed(self, count: int) -> None:
        """`count` answers were read by the server: the stored record must stop listing
        their calls as open, or a restart would answer them a second time."""
        if count:
            self._keeper.calls_changed(self.open_calls())

    def answer_abandoned(self, response: ToolResponse) -> None:
        """No answer to this call can be sent at all: stop waiting for one."""
        self._expected_calls.discard(response.id)

    # -- what the server said ------------------------------------------------------
    def already_answered(self, call_id: str) -> bool:
        """The server sent this call again after it was answered (a resumed session,
        or one a previous process answered as interrupted): it must not run twice."""
        return call_id in self._answered

    def apply(self, ctl: Control, conn: SocketLife) -> None:
        """Take in what a server message means for the session and this connection."""
        if ctl.resumable is not None:
            self._resumable = ctl.resumable
        if ctl.turn_active is not None:
            self._turn_active = ctl.turn_active
        new_calls = [i for i in ctl.call_ids if i not in self._answered]
        self._expected_calls.update(new_calls)
        self._call_names.update((i, ctl.call_names[i]) for i in new_calls
                                if i in ctl.call_names)
        if ctl.new_handle:
            self._handle = ctl.new_handle
            self._keeper.issued(ctl.new_handle, self.open_calls())
        elif new_calls:
            self._keeper.calls_changed(self.open_calls())
        if ctl.cancelled_ids:
            self._calls_cancelled(ctl.cancelled_ids)
        if ctl.go_away_in is not None:
            deadline = time.monotonic() + max(0.0, ctl.go_away_in - self._s.goaway_margin)
            conn.go_away_deadline = deadline
            log.info("GoAway received: %.1f s left", ctl.go_away_in)

    def check_handover(self, conn: SocketLife) -> None:
        """After GoAway, move at a quiet, resumable moment, or at the deadline.

        Quiet means no turn under way (nothing heard and unanswered, no call
        pending, the model not speaking): a resumable point inside a turn, such
        as right after a tool answer, would cut the reply that follows.
        """
        if conn.go_away_deadline is None:
            return
        quiet = self._resumable and not self._turn_active and not self._expected_calls
        if quiet or time.monotonic() >= conn.go_away_deadline:
            conn.finish("goaway")

    def _calls_cancelled(self, ids: list[str]) -> None:
        """The model no longer waits for these calls: an answer already queued is not sent,
        and one that comes later is not queued."""
        self._expected_calls.difference_update(ids)
        self._resending.difference_update(ids)
        _remember(self._cancelled_calls, ids, REMEMBERED_CANCELLATIONS)
        purged = self._uplink.purge_responses(ids)
        if purged:
            self._metrics.tool_responses_dropped.labels("cancelled").inc(len(purged))
            log.info("%d queued tool answer(s) not sent: the model cancelled the call(s)",
                     len(purged))
        # A restart must not answer what the model withdrew: the stored record follows.
        self._keeper.calls_changed(self.open_calls())

    def open_calls(self) -> dict[str, str]:
        """The calls the model still waits on (no answer confirmed), by id: their names."""
        open_ids = self._expected_calls | self._uplink.unconfirmed_response_ids()
        self._call_names = {i: n for i, n in self._call_names.items() if i in open_ids}
        return dict(self._call_names)

    # -- across a restart ----------------------------------------------------------
    def restore(self, stored: StoredSession) -> None:
        """Resume the session a previous process stored (its open calls are answered
        once it is resumed: `answer_interrupted`)."""
        self._handle = stored.handle
        self._resumable = True
        self._restored = stored.open_calls

    def answer_interrupted(self, scheduling: Callable[[str], str | None]) -> None:
        """The stored session is resumed: the calls the dead process left open get an
        error answer each (it cannot know whether they took effect), so the model
        does not wait for ever; running them again could repeat a device command."""
        for call_id, name in self._restored:
            self._expected_calls.add(call_id)
            self._call_names[call_id] = name
            _remember(self._answered, [call_id], REMEMBERED_ANSWERS)
            if self._uplink.push_response(
                ToolResponse(call_id, name, dict(INTERRUPTED_ANSWER), scheduling(name))
            ):
                self._metrics.live_interrupted_calls.labels("answered").inc()
                log.warning("tool call %s (%s) was open when the daemon stopped; answered "
                            "with an error (outcome unknown)", call_id, name)
        self._restored = ()

    # -- between connections -------------------------------------------------------
    def drop_handle(self, reason: str) -> None:
        """Forget the handle: the next connection starts a fresh session."""
        if self._handle is not None:
            self._metrics.link_fresh_sessions.labels(reason).inc()
            self._keeper.forget()
        if self._restored:
            self._metrics.live_interrupted_calls.labels("dropped").inc(len(self._restored))
            log.warning("%d tool call(s) open when the daemon stopped are lost with their "
                        "session", len(self._restored))
            self._restored = ()
        self._handle = None
        self._resumable = False

    def start_fresh(self) -> None:
        """A new session knows none of the old one's calls: their answers have no taker."""
        lost = self._uplink.drain_responses()
        if lost:  # calls still running are counted when their answer comes (accept_answer)
            self._metrics.tool_responses_lost.inc(len(lost))
            log.warning("%d tool answer(s) belong to the ended session and are dropped",
                        len(lost))
        self._expected_calls.clear()
        self._cancelled_calls.clear()
        self._answered.clear()  # a new session's call ids are its own
        self._resending.clear()
        self._call_names.clear()
        self._turn_active = False

    def settle(self, reason: str, socket: LiveSocket | None, *, unread: bool = False) -> None:
        """Decide what became of audio that was on the socket but never confirmed.

        Audio is confirmed by pongs, so at any time up to one confirmation window
        (live.confirm_interval, plus a round trip) is on the socket unconfirmed.
        - Not read (`unread`: a stall, or a ping unanswered for live.stall_timeout
          when the connection ended): the server did not read what went up after
          its last pong; it is sent again, in order, within live.replay_seconds
          (what was let go at that bound is counted as dropped, never as
          delivered). Some of it may have been read before the server stopped:
          those chunks arrive twice (at most one confirmation window).
        - Close or reset by the server (1000, 1008, 1011, 1006), or a failed send,
          with pongs coming until then: the peer was reading, so the tail is taken
          as delivered. Only what crossed the server's close on the wire (about
          half a round trip of audio) is lost; re-sending the whole window instead
          would make the model hear up to confirm_interval of words twice, which
          is worse (duplicate audio after a resume is a known field problem).
          Counted in edge_live_uplink_unconfirmed_at_close_chunks{reason}, so the
          cost shows.
        - GoAway: the socket was closed by us; if the server replied to the
          close, it read everything, and nothing is counted.
        Audio the socket refused is still pending and goes out after the resume.

        Tool answers are different: one lost on the way leaves the resumed
        session waiting for it forever (the model goes silent), while one that
        arrives twice is ignored (or refused) by the server. So every answer no
        pong confirmed is sent again, first, if the session is resumed; a fresh
        session drops it (start_fresh). Only a close the server replied to (our
        own, after GoAway) proves they were read.
        """
        read_all = reason == "stopped" or (
            reason == "goaway" and socket is not None and socket.close_replied
        )
        self._settle_answers(read_all, reason)
        if (unread or reason == "stall") and not read_all:
            self._replay_unread(reason)
            return
        n = self._uplink.confirm_all()
        if read_all:
            return
        if n:
            self._metrics.uplink_unconfirmed_at_close.labels(reason).inc(n)
            log.info("%d audio chunk(s) were sent but unconfirmed when the connection ended "
                     "(%s); taken as delivered", n, reason)

    def _replay_unread(self, reason: str) -> None:
        """The server did not read the unconfirmed audio: send it again, or count it lost."""
        again = self._uplink.requeue_unconfirmed()
        if again.withheld:  # heard before a mute: stays on the device
            self._metrics.uplink_withheld.labels("audio").inc(again.withheld)
        if again.resent:
            self._metrics.uplink_unconfirmed_at_close.labels(reason).inc(again.resent)
            log.warning("%d audio chunk(s) sent but not read by the server (%s); resending",
                        again.resent, reason)
        if again.lost:
            self._metrics.uplink_audio_dropped.inc(again.lost)
            log.warning("%d audio chunk(s) not read by the server (%s) are beyond "
                        "live.replay_seconds and are lost", again.lost, reason)

    def _settle_answers(self, delivered: bool, reason: str) -> None:
        if delivered:
            self.answers_confirmed(self._uplink.confirm_all_responses())
            return
        again = self._uplink.requeue_unconfirmed_responses()
        if again:
            ids = {r.id for r in again}
            self._resending |= ids
            self._expected_calls |= ids
            log.warning("%d tool answer(s) unconfirmed when the connection ended (%s); "
                        "sending again if the session resumes", len(again), reason)


def _remember(seen: OrderedDict[str, None], ids: list[str], bound: int) -> None:
    """Add to a bounded memory of call ids, forgetting the oldest beyond `bound`."""
    for call_id in ids:
        seen[call_id] = None
        seen.move_to_end(call_id)
    while len(seen) > bound:
        seen.popitem(last=False)

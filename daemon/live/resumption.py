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

from daemon.config import LiveSettings
from daemon.live.calls import ToolResponse
from daemon.live.socket_door import LiveSocket
from daemon.live.socket_life import SocketLife
from daemon.live.uplink import UplinkBuffer
from daemon.live.wire import Control
from daemon.ops.metrics import Metrics

log = logging.getLogger("daemon.live.link")  # the link's parts log under its name

REMEMBERED_CANCELLATIONS = 512


class Resumption:
    """The session's side of the link: its handle and its open calls."""

    def __init__(self, settings: LiveSettings, uplink: UplinkBuffer, metrics: Metrics) -> None:
        self._s = settings
        self._uplink = uplink
        self._metrics = metrics
        self._handle: str | None = None
        self._resumable = False
        self._turn_active = False
        self._expected_calls: set[str] = set()
        self._cancelled_calls: OrderedDict[str, None] = OrderedDict()  # recent, bounded
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
        if response.id in self._resending:
            self._resending.discard(response.id)
            self._metrics.tool_responses_resent.inc()
            log.info("tool response %s (%s) sent again on the resumed session",
                     response.id, response.name)

    def answer_abandoned(self, response: ToolResponse) -> None:
        """No answer to this call can be sent at all: stop waiting for one."""
        self._expected_calls.discard(response.id)

    # -- what the server said ------------------------------------------------------
    def apply(self, ctl: Control, conn: SocketLife) -> None:
        """Take in what a server message means for the session and this connection."""
        if ctl.resumable is not None:
            self._resumable = ctl.resumable
        if ctl.new_handle:
            self._handle = ctl.new_handle
        if ctl.turn_active is not None:
            self._turn_active = ctl.turn_active
        self._expected_calls.update(ctl.call_ids)
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
        for call_id in ids:
            self._cancelled_calls[call_id] = None
        while len(self._cancelled_calls) > REMEMBERED_CANCELLATIONS:
            self._cancelled_calls.popitem(last=False)
        purged = self._uplink.purge_responses(ids)
        if purged:
            self._metrics.tool_responses_dropped.labels("cancelled").inc(len(purged))
            log.info("%d queued tool answer(s) not sent: the model cancelled the call(s)",
                     len(purged))

    # -- between connections -------------------------------------------------------
    def drop_handle(self, reason: str) -> None:
        """Forget the handle: the next connection starts a fresh session."""
        if self._handle is not None:
            self._metrics.link_fresh_sessions.labels(reason).inc()
        self._handle = None
        self._resumable = False

    def start_fresh(self) -> None:
        """A new session knows none of the old one's calls: their answers have no taker."""
        lost = self._uplink.drain_responses()
        if lost or self._expected_calls:
            n = len(lost) + len(self._expected_calls - {r.id for r in lost})
            self._metrics.tool_responses_lost.inc(n)
            log.warning("%d tool answer(s) belong to the ended session and are dropped", n)
        self._expected_calls.clear()
        self._cancelled_calls.clear()
        self._resending.clear()
        self._turn_active = False

    def settle(self, reason: str, socket: LiveSocket | None) -> None:
        """Decide what became of audio that was on the socket but never confirmed.

        Audio is confirmed by pongs, so at any time up to one confirmation window
        (live.confirm_interval, plus a round trip) is on the socket unconfirmed.
        - Stall: a silent peer may have read none of it; it is sent again, in
          order. Some of it may have been read before the peer went quiet: those
          chunks arrive twice (at most one confirmation window).
        - Close or reset by the server (1000, 1008, 1011, 1006), or a failed send:
          the peer was reading until then, so the tail is taken as delivered.
          Only what crossed the server's close on the wire (about half a round
          trip of audio) is lost; re-sending the whole window instead would make
          the model hear up to confirm_interval of words twice, which is worse
          (duplicate audio after a resume is a known field problem). Counted in
          edge_live_uplink_unconfirmed_at_close_chunks{reason}, so the cost shows.
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
        if reason == "stall":
            n = self._uplink.requeue_unconfirmed()
            if n:
                self._metrics.uplink_unconfirmed_at_close.labels(reason).inc(n)
                log.warning("%d audio chunk(s) unconfirmed by the stalled server; resending", n)
            return
        n = self._uplink.confirm_all()
        if read_all:
            return
        if n:
            self._metrics.uplink_unconfirmed_at_close.labels(reason).inc(n)
            log.info("%d audio chunk(s) were sent but unconfirmed when the connection ended "
                     "(%s); taken as delivered", n, reason)

    def _settle_answers(self, delivered: bool, reason: str) -> None:
        if delivered:
            self._uplink.confirm_all_responses()
            return
        again = self._uplink.requeue_unconfirmed_responses()
        if again:
            ids = {r.id for r in again}
            self._resending |= ids
            self._expected_calls |= ids
            log.warning("%d tool answer(s) unconfirmed when the connection ended (%s); "
                        "sending again if the session resumes", len(again), reason)

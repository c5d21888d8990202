"""The fault injector: fires one planned fault at the rig, then times the way back.

Faults are fired one at a time, each after the previous one was recovered from and
a seeded pause of calm, so every recovery is measured on its own. Each fault is
recorded (`FaultRecord`) with what was actually done - the server's records say
whether a queued refusal really met a connection - and when the part it hit was
working again. "Working" is measured at the far end where possible: audio
arriving at the fake server on a new connection, the glasses streaming to the
daemon again, the daemon's own /metrics showing the broker back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.live_server import Fault
from simulator.soak.daemon_proc import MetricsSnapshot
from simulator.soak.plan import FaultKind, PlannedFault
from simulator.soak.rig import Rig

__all__ = ["FaultRecord", "Injector", "supported"]

log = logging.getLogger(__name__)

POLL = 0.05
TRIGGER_CODE = 1011  # the close that makes a queued connection fault meet a reconnect
TURN_WAIT = 30.0  # a special turn waits for the user's next utterance


@dataclass
class FaultRecord:
    """One fault as fired: when, what it did, and when the part was back."""

    planned: PlannedFault
    lifetime: int  # the daemon lifetime it hit (a restart's new one is lifetime + 1)
    at: float
    bound: float
    back_at: float = 0.0  # recovery is timed from here (the glasses' return, a restart)
    recovered_at: float | None = None
    effects: dict[str, int] = field(default_factory=dict)
    detail: str = ""

    @property
    def kind(self) -> FaultKind:
        """The planned fault's kind."""
        return self.planned.kind

    @property
    def recovery(self) -> float | None:
        """Seconds from the fault (or the part's return) to working again."""
        return None if self.recovered_at is None else max(0.0, self.recovered_at - self.back_at)


def supported(kind: FaultKind) -> bool:
    """Whether the fake Live server in this tree can produce `kind`."""
    return kind is not FaultKind.LIVE_DEAF or hasattr(Fault, "STOP_READING")


class Injector:
    """Fires faults at a rig and waits, bounded, for everything to work again."""

    def __init__(self, rig: Rig, bounds: dict[FaultKind, float]) -> None:
        self.rig = rig
        self.bounds = bounds
        self.records: list[FaultRecord] = []
        self.calm = False  # every part up and no fault under way (for the sampler)
        self._actions: dict[FaultKind, Callable[[FaultRecord], Awaitable[bool]]] = {
            FaultKind.LIVE_GOAWAY: self._live_goaway,
            FaultKind.LIVE_CLOSE: self._live_close,
            FaultKind.LIVE_ABORT: self._live_abort,
            FaultKind.LIVE_QUIET: self._live_quiet,
            FaultKind.LIVE_DEAF: self._live_deaf,
            FaultKind.LIVE_REJECT_RESUME: self._live_queued,
            FaultKind.LIVE_SETUP_HANG: self._live_queued,
            FaultKind.LIVE_REFUSED: self._live_queued,
            FaultKind.BLE_DISCONNECT: self._ble_disconnect,
            FaultKind.BLE_VANISH: self._ble_vanish,
            FaultKind.BLE_MALFORMED: self._ble_malformed,
            FaultKind.BROKER_RESTART: self._broker,
            FaultKind.BROKER_KILL: self._broker,
            FaultKind.DEVICE_SILENT: self._device_silent,
            FaultKind.TOOL_CANCEL: self._tool_cancel,
            FaultKind.DAEMON_KILL: self._daemon_restart,
            FaultKind.DAEMON_TERM: self._daemon_restart,
        }

    # -- the whole system -------------------------------------------------------------
    async def everything_up(self, since: float, timeout: float) -> float | None:  # noqa: ASYNC109
        """Wait until the daemon is up end to end; when it was (None on timeout).

        Up: the process alive and answering, its Live link connected and audio from a
        connection set up after `since` reaching the server (or still flowing on the
        same one), the glasses streaming to it, the broker connected.
        """
        deadline = time.monotonic() + timeout
        audio_at: float | None = None
        while time.monotonic() < deadline:
            if not self.rig.daemon.check_alive():
                return None
            audio_at = audio_at or self._audio_after(since, new_connection=False)
            if audio_at is not None and self._glasses_streaming():
                snap = await self.rig.daemon.scrape()
                if snap is not None and _all_up(snap):
                    return max(audio_at, snap.t)
            await asyncio.sleep(0.2)
        return None

    def _glasses_streaming(self) -> bool:
        events = [e for e in self.rig.glasses.events
                  if e.event in ("connected", "disconnected", "streaming", "vanished")]
        return bool(events) and events[-1].event == "streaming"

    def _audio_after(self, since: float, *, new_connection: bool) -> float | None:
        """When audio first reached the server after `since` (on a connection set up
        after `since` if `new_connection`)."""
        server = self.rig.server
        fresh = {c.index for c in server.connections
                 if c.setup_completed_at is not None
                 and (not new_connection or c.setup_completed_at > since)}
        for chunk in server.audio_chunks:
            if chunk.t > since and chunk.connection in fresh:
                return chunk.t
        return None

    async def _until(self, found: Callable[[], float | None], rec: FaultRecord,
                     deadline: float | None = None) -> bool:
        """Poll `found` until it gives a time (recorded as the recovery) or the bound."""
        if deadline is None:
            deadline = rec.back_at + rec.bound
        while time.monotonic() < deadline:
            t = found()
            if t is not None:
                rec.recovered_at = t
                return True
            if not self.rig.daemon.check_alive():
                rec.detail = "the daemon exited"
                return False
            await asyncio.sleep(POLL)
        rec.detail = rec.detail or "not recovered within the bound"
        return False

    async def fire(self, planned: PlannedFault) -> FaultRecord:
        """Fire one fault, wait for the recovery and for everything to be up again."""
        now = time.monotonic()
        rec = FaultRecord(planned, self.rig.daemon.current.index, now,
                          self.bounds[planned.kind], back_at=now)
        self.records.append(rec)
        self.calm = False
        log.info("fault %d: %s", planned.index, planned.describe())
        try:
            ok = await self._actions[planned.kind](rec)
        except Exception as exc:  # the injector's own failure is the run's failure
            log.exception("fault %d failed to fire", planned.index)
            rec.detail = f"injector error: {exc!r}"
            ok = False
        if ok:
            up = await self.everything_up(rec.back_at, max(1.0, rec.back_at + rec.bound
                                                           - time.monotonic()))
            if up is None:
                rec.detail = "the system was not up again within the bound"
                rec.recovered_at = None
        self._prune()
        self.calm = rec.recovered_at is not None
        return rec

    def _prune(self) -> None:
        """Keep the fake server's memory small over an hour: audio is counted per connection."""
        server = self.rig.server
        cutoff = time.monotonic() - 30.0
        while server.audio_chunks and server.audio_chunks[0].t < cutoff:
            server.audio_chunks.popleft()
        for conn in server.connections:
            if conn.ended_at is not None and conn.ended_at < cutoff:
                conn.messages.clear()
                conn.sent.clear()

    # -- Live -------------------------------------------------------------------------
    async def _inject(self, fault: Fault, **kwargs: Any) -> bool:
        try:
            await self.rig.server.inject(fault, **kwargs)
        except RuntimeError:  # no live connection at this instant
            return False
        return True

    async def _live(self, rec: FaultRecord, fault: Fault, **kwargs: Any) -> bool:
        if not await self._inject(fault, **kwargs):
            rec.detail = "no live connection to hit"
            return False
        rec.effects[fault.value] = 1
        return await self._until(lambda: self._audio_after(rec.at, new_connection=True), rec)

    async def _live_goaway(self, rec: FaultRecord) -> bool:
        return await self._live(rec, Fault.GOAWAY, time_left=rec.planned.params["time_left"])

    async def _live_close(self, rec: FaultRecord) -> bool:
        return await self._live(rec, Fault.CLOSE, code=rec.planned.params["code"])

    async def _live_abort(self, rec: FaultRecord) -> bool:
        return await self._live(rec, Fault.ABORT)

    async def _live_quiet(self, rec: FaultRecord) -> bool:
        return await self._live(rec, Fault.GO_QUIET)

    async def _live_deaf(self, rec: FaultRecord) -> bool:
        fault = getattr(Fault, "STOP_READING", None)  # newer fake servers only
        if fault is None:
            rec.detail = "this fake Live server cannot stop reading"
            return False
        return await self._live(rec, fault, drop_after=rec.planned.params["drop_after"])

    async def _live_queued(self, rec: FaultRecord) -> bool:
        """A refusal queued for the next connection, which a close then brings about."""
        fault = {
            FaultKind.LIVE_REJECT_RESUME: Fault.REJECT_RESUME,
            FaultKind.LIVE_SETUP_HANG: Fault.SETUP_HANG,
            FaultKind.LIVE_REFUSED: Fault.REJECT_KEY,
        }[rec.kind]
        server = self.rig.server
        await server.inject(fault, count=1)
        ok = await self._live(rec, Fault.CLOSE, code=TRIGGER_CODE)
        server.disarm_all()  # never left queued for a later fault
        rec.effects.pop(Fault.CLOSE.value, None)
        rec.effects[f"trigger_close_{TRIGGER_CODE}"] = 1
        rec.effects[fault.value] = _queued_hits(server, fault, rec.at)
        if ok and not rec.effects[fault.value]:
            rec.detail = f"{fault.value} met no connection (the daemon did not try one)"
        return ok

    # -- glasses ----------------------------------------------------------------------
    async def _ble_disconnect(self, rec: FaultRecord) -> bool:
        await self.rig.glasses.disconnect()
        rec.effects["disconnect"] = 1
        return await self._until(lambda: self.rig.glasses.streaming_since(rec.at), rec)

    async def _ble_vanish(self, rec: FaultRecord) -> bool:
        glasses = self.rig.glasses
        await glasses.vanish()
        rec.effects["vanish"] = 1
        await asyncio.sleep(rec.planned.params["away"])
        await glasses.start()
        rec.back_at = time.monotonic()
        return await self._until(lambda: glasses.streaming_since(rec.back_at), rec)

    async def _ble_malformed(self, rec: FaultRecord) -> bool:
        before = await self.rig.daemon.scrape()
        sent = await self.rig.glasses.malformed(rec.planned.params["count"])
        rec.effects["malformed"] = sent
        if before is None or not sent:
            rec.detail = "the glasses were not connected" if not sent else "no /metrics"
            return False
        want = before.stat("peripheral", "audio_framing.malformed") + sent
        return await self._until_metric(
            rec, lambda s: s.stat("peripheral", "audio_framing.malformed") >= want)

    async def _until_metric(self, rec: FaultRecord,
                            ok: Callable[[MetricsSnapshot], bool]) -> bool:
        async def scraped() -> float | None:
            snap = await self.rig.daemon.scrape()
            return snap.t if snap is not None and ok(snap) else None

        deadline = rec.back_at + rec.bound
        while time.monotonic() < deadline:
            t = await scraped()
            if t is not None:
                rec.recovered_at = t
                return True
            if not self.rig.daemon.check_alive():
                rec.detail = "the daemon exited"
                return False
            await asyncio.sleep(0.1)
        rec.detail = "not recovered within the bound"
        return False

    # -- broker -----------------------------------------------------------------------
    async def _broker(self, rec: FaultRecord) -> bool:
        broker = self.rig.broker
        before = await self.rig.daemon.scrape()
        connects = before.value("edge_mqtt_events_total", event="connects") if before else 0.0
        if rec.kind is FaultKind.BROKER_KILL:
            await broker.kill()
            rec.effects["broker_kill"] = 1
            await broker.start()
        else:
            await broker.restart()
            rec.effects["broker_restart"] = 1
        rec.back_at = time.monotonic()
        return await self._until_metric(
            rec, lambda s: s.value("edge_mqtt_connected") == 1
            and s.value("edge_mqtt_events_total", event="connects") > connects)

    # -- tool calls -------------------------------------------------------------------
    async def _special_turn(self, rec: FaultRecord, device: str, **kwargs: Any) -> str | None:
        """Ask the script for a command on `device`; the call's id once the model made it."""
        dev = self.rig.home.devices[device]
        action = "turn_off" if dev.state.get("state") == "ON" else "turn_on"
        rec.effects[f"{action}:{device}"] = 1
        self.rig.script.request(device, action=action, **kwargs)
        calls = self.rig.server.tool_calls
        found: list[str] = []

        def made() -> float | None:
            for call in reversed(calls):
                if call.t < rec.at:
                    break
                if call.args.get("device_id") == f"sim-{device}":
                    found.append(call.id)
                    return float(call.t)
            return None

        if not await self._until(made, rec, deadline=rec.at + TURN_WAIT):
            rec.detail = "the model never made the call (no turn came)"
            return None
        assert rec.recovered_at is not None
        rec.back_at, rec.recovered_at = rec.recovered_at, None  # timed from the call
        return found[0]

    async def _device_silent(self, rec: FaultRecord) -> bool:
        device = rec.planned.params["device"]
        home = self.rig.home
        home.set_ignore_commands(device, True)
        try:
            call_id = await self._special_turn(rec, device)
            if call_id is None:
                return False
            answered = self.rig.server.tool_responses
            return await self._until(
                lambda: next((r.t for r in answered if r.id == call_id), None), rec)
        finally:
            home.set_ignore_commands(device, False)

    async def _tool_cancel(self, rec: FaultRecord) -> bool:
        device = rec.planned.params["device"]
        dev = self.rig.home.devices[device]
        dev.latency = 3.0  # confirms late: the call is still running when it is cancelled
        try:
            call_id = await self._special_turn(rec, device, cancel_after_ms=300.0)
            if call_id is None:
                return False
            server = self.rig.server

            def cancelled_then_turn() -> float | None:
                cancel = next((c.t for c in server.tool_cancellations if call_id in c.ids), None)
                if cancel is None:
                    return None
                return next((t.turn_complete_at for t in server.turns
                             if t.turn_complete_at is not None and t.turn_complete_at > cancel
                             and call_id not in t.tool_call_ids), None)

            ok = await self._until(cancelled_then_turn, rec)
            rec.effects["cancelled"] = int(any(call_id in c.ids for c in server.tool_cancellations))
            if ok and not rec.effects["cancelled"]:
                rec.detail = "the call was answered before the model cancelled it"
            return ok
        finally:
            dev.latency = None

    # -- the daemon itself ------------------------------------------------------------
    async def _daemon_restart(self, rec: FaultRecord) -> bool:
        daemon = self.rig.daemon
        await daemon.scrape()
        if rec.kind is FaultKind.DAEMON_KILL:
            code = await daemon.kill()
        else:
            t0 = time.monotonic()
            code = await daemon.terminate(10.0)
            rec.effects["term_seconds_ms"] = round((time.monotonic() - t0) * 1000)
        rec.effects["exit_code"] = code
        if rec.kind is FaultKind.DAEMON_TERM and code != 0:
            rec.detail = f"SIGTERM: exit code {code}, not 0"
        await daemon.start()
        rec.back_at = time.monotonic()
        up = await self.everything_up(rec.back_at, rec.bound)
        daemon.current.ready_at = up
        rec.recovered_at = up
        if up is None:
            rec.detail = rec.detail or "the restarted daemon was not up within the bound"
        return up is not None and not rec.detail


def _all_up(snap: MetricsSnapshot) -> bool:
    return (snap.value("edge_live_link_state", state="connected") == 1
            and snap.value("edge_mqtt_connected") == 1
            and snap.stat("peripheral", "connected") == 1)


def _queued_hits(server: Any, fault: Fault, since: float) -> int:
    """How many connections a next-N fault really met, from the server's records."""
    if fault is Fault.REJECT_KEY:
        return sum(1 for r in server.rejected_handshakes if r.t > since and r.status == 403)
    conns = [c for c in server.connections if c.started_at > since]
    if fault is Fault.SETUP_HANG:
        return sum(1 for c in conns if c.setup_hung)
    return sum(1 for c in conns
               if c.requested_handle is not None and c.session_id is None
               and c.close_sent is not None and c.close_sent[0] == 1007)

"""A server that answers every connection with a GoAway is backed off, not hammered.

A GoAway ends a session of minutes and is handed over at once; one that keeps coming
right after each connect (an overloaded or broken server) made the link reconnect about
100 times a second, a TLS handshake and three log lines each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from daemon.ops.metrics import Metrics
from simulator.live_server import FakeLiveServer
from tests.support.live import KEY, bare_link, conversation
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)


async def test_goaway_at_every_connect_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    async with (FakeLiveServer(api_key=KEY, scenario=conversation()) as server,
                bare_link(server, metrics, backoff_initial=0.2, backoff_max=1.0)):
        told: set[int] = set()
        started = time.monotonic()
        with caplog.at_level("INFO"):
            while time.monotonic() - started < 4.0:
                await asyncio.sleep(0.005)
                for i, c in enumerate(server.connections):
                    if i not in told and c.open and c.setup_completed_at is not None:
                        told.add(i)
                        with contextlib.suppress(Exception):
                            await server.send_raw({"goAway": {"timeLeft": "0s"}}, connection=i)
        connections = len(server.connections)
    # backed off (0.2 s doubling to 1 s, jittered) after the first handover: not hundreds
    assert 3 <= connections <= 25, connections  # 257 before
    assert metrics.value("edge_live_disconnects_total", reason="goaway") >= connections - 1
    lines = [r for r in caplog.records if r.name.startswith("daemon")]
    assert len(lines) <= 4 * connections


async def test_a_message_past_the_size_bound_costs_one_reconnect_not_the_memory() -> None:
    # The SDK parses a message whole before the daemon sees it: 15 MB of tiny parts
    # cost ~424 MB and a 15 s stall. Past 2 MB (link.MAX_MESSAGE_BYTES) the socket is closed
    # (1009) and the session resumed on a new one.
    metrics = Metrics()
    async with (FakeLiveServer(api_key=KEY, scenario=conversation()) as server,
                bare_link(server, metrics) as link):
        await eventually(lambda: link.connected and link.handle is not None, 10)
        handle = link.handle
        data = "AAAA" * 750_000  # 3 MB in one part: cheap to parse, but past the bound
        parts = [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}]
        with contextlib.suppress(Exception):
            await server.send_raw({"serverContent": {"modelTurn": {"parts": parts}}})
        await eventually(lambda: len(server.connections) == 2 and link.connected, 15)
        assert metrics.value("edge_live_downlink_audio_seconds_total") == 0  # never parsed
        assert server.connections[1].requested_handle == handle
        assert server.connections[1].resumed

"""One odd message from the Live server is skipped and counted, never the socket's end.

The real SDK parses each frame; what it cannot read (a list or a string at the top,
JSON nested past the parser's depth, a lone "code" it takes for an error) must cost
that one message, not the connection, the session's handle or the conversation.
"""

from __future__ import annotations

import pytest

from daemon.ops.metrics import Metrics
from simulator.live_server import FakeLiveServer
from tests.support.live import KEY, bare_link, conversation
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

DEEP = "[" * 200_000 + "]" * 200_000

UNPARSEABLE = {
    "list-at-top": "[1,2,3]",
    "string-at-top": '"hello"',
    "nested-past-the-parser": DEEP,
    "nested-in-a-field": '{"usageMetadata": {"x": ' + DEEP + '}}',
    "nested-binary-frame": DEEP.encode(),
    "a-lone-close-code": '{"code": 1007, "message": "not a Live message"}',
    "a-lone-normal-code": '{"code": 1000, "extra": 1}',
}


def _read(metrics: Metrics, kind: str) -> float:
    return metrics.value("edge_live_downlink_messages_total", kind=kind)


@pytest.mark.parametrize("frame", list(UNPARSEABLE.values()), ids=list(UNPARSEABLE))
async def test_an_unreadable_message_is_counted_and_the_same_socket_reads_on(
    frame: str | bytes,
) -> None:
    metrics = Metrics()
    async with FakeLiveServer(api_key=KEY, scenario=conversation()) as server:
        async with bare_link(server, metrics) as link:
            await eventually(lambda: link.connected and link.handle is not None, 10)
            handle = link.handle
            await server.send_raw(frame)
            await server.send_raw({"usageMetadata": {"promptTokenCount": 1}})
            await eventually(lambda: _read(metrics, "usage_metadata") >= 1, 10)
            assert _read(metrics, "unparseable") == 1
            assert len(server.connections) == 1, link.last_error
            assert link.connected
            assert link.handle == handle, "the session's handle was dropped"
        assert not server.internal_errors


async def test_a_flood_of_unreadable_messages_is_counted_not_logged_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server sending nothing else, for months, must not fill the SD card with a line
    # per frame: the 1st, 2nd, 4th... are logged with the count so far.
    metrics = Metrics()
    async with (FakeLiveServer(api_key=KEY, scenario=conversation()) as server,
                bare_link(server, metrics) as link):
        await eventually(lambda: link.connected and link.handle is not None, 10)
        with caplog.at_level("WARNING"):
            for _ in range(300):
                await server.send_raw("[1, 2, 3]")
            await eventually(lambda: _read(metrics, "unparseable") >= 300, 20)
        assert link.connected
    lines = [r.getMessage() for r in caplog.records if "unparseable" in r.getMessage()]
    assert len(lines) == 9  # 1, 2, 4 ... 256
    assert lines[-1].endswith("(256 so far)")

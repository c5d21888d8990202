"""The health server over real loopback TCP: routes, limits, and a clean close.

Without a socket or a process: tests/unit/test_ops_health.py.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.ops import logsetup
from daemon.ops.health import (
    METRICS_CONTENT_TYPE,
    HealthServer,
)
from daemon.ops.metrics import Metrics
from tests.support.ops import Health

pytestmark = pytest.mark.timeout(20)


class Response:
    def __init__(self, raw: bytes) -> None:
        head, sep, self.body = raw.partition(b"\r\n\r\n")
        assert sep, f"no header terminator in {raw!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, code, _reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        self.status = int(code)
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()


async def exchange(port: int, raw: bytes) -> Response:
    """Send raw bytes, read until the server closes, parse the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    return Response(data)


async def get(port: int, path: str, method: str = "GET") -> Response:
    return await exchange(port, f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def server(metrics: Metrics, health: Health) -> AsyncIterator[HealthServer]:
    async with HealthServer(metrics, health, 0) as srv:
        yield srv


async def wait_for_connections(srv: HealthServer, n: int) -> None:
    for _ in range(500):
        if srv.active_connections == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{srv.active_connections} connections, expected {n}")


async def test_healthz_reports_healthy_and_unhealthy(server: HealthServer, health: Health) -> None:
    assert server.port
    ok = await get(server.port, "/healthz")
    assert ok.status == 200
    assert ok.headers["content-type"] == "application/json"
    assert ok.headers["connection"] == "close"
    assert int(ok.headers["content-length"]) == len(ok.body)
    assert json.loads(ok.body) == {"status": "ok", "details": {"link": "connected"}}

    health.healthy = False
    health.details = {"link": "backoff", "since": 12.5}
    bad = await get(server.port, "/healthz?verbose=1")
    assert bad.status == 503
    assert json.loads(bad.body) == {
        "status": "unhealthy",
        "details": {"link": "backoff", "since": 12.5},
    }


async def test_healthz_is_503_when_the_check_raises(metrics: Metrics) -> None:
    def broken() -> tuple[bool, dict[str, object]]:
        raise RuntimeError("boom")

    async with HealthServer(metrics, broken, 0) as srv:
        assert srv.port
        resp = await get(srv.port, "/healthz")
    assert resp.status == 503
    assert json.loads(resp.body)["status"] == "unhealthy"


async def test_metrics_serves_the_registry(server: HealthServer, metrics: Metrics) -> None:
    assert server.port
    metrics.tool_calls.labels("light.turn_on", "ok").inc(3)
    resp = await get(server.port, "/metrics")
    assert resp.status == 200
    assert resp.headers["content-type"] == METRICS_CONTENT_TYPE
    text = resp.body.decode()
    assert 'edge_live_link_state{state="idle"} 1.0' in text
    assert 'edge_tool_calls_total{outcome="ok",tool="light.turn_on"} 3.0' in text


async def test_head_sends_headers_only(server: HealthServer) -> None:
    assert server.port
    resp = await get(server.port, "/healthz", method="HEAD")
    assert resp.status == 200
    assert resp.body == b""
    assert int(resp.headers["content-length"]) > 0


async def test_unknown_path_404_and_wrong_method_405(server: HealthServer) -> None:
    assert server.port
    assert (await get(server.port, "/nope")).status == 404
    assert (await get(server.port, "/healthz/")).status == 404
    resp = await exchange(
        server.port,
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    )
    assert resp.status == 405
    assert resp.headers["allow"] == "GET, HEAD"
    assert (await get(server.port, "/metrics", method="DELETE")).status == 405


@pytest.mark.parametrize(
    "raw",
    [
        b"HELLO\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",  # a digit to str.isdigit
        b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /h\xc3\xa9 HTTP/1.1\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400(server: HealthServer, raw: bytes) -> None:
    assert server.port
    resp = await exchange(server.port, raw)
    assert resp.status == 400


async def test_incomplete_head_then_eof_gets_400(server: HealthServer) -> None:
    assert server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert Response(data).status == 400


@pytest.mark.parametrize("terminated", [True, False])
async def test_oversized_head_is_rejected(server: HealthServer, terminated: bool) -> None:
    assert server.port
    raw = b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 9000
    if terminated:
        raw += b"\r\n\r\n"
    resp = await exchange(server.port, raw)
    assert resp.status == 400
    assert b"too large" in resp.body
    # The server still works afterwards.
    assert (await get(server.port, "/healthz")).status == 200


async def test_head_just_under_the_limit_is_accepted(server: HealthServer) -> None:
    assert server.port
    start = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: "
    pad = 8 * 1024 - len(start) - 4
    resp = await exchange(server.port, start + b"a" * pad + b"\r\n\r\n")
    assert resp.status == 200


async def test_oversized_body_is_rejected(server: HealthServer) -> None:
    assert server.port
    resp = await exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100
    )
    assert resp.status == 400


async def test_slow_client_times_out(metrics: Metrics, health: Health) -> None:
    async with HealthServer(metrics, health, 0, read_timeout=0.3) as srv:
        assert srv.port
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finished
        loop = asyncio.get_running_loop()
        started = loop.time()
        data = await asyncio.wait_for(reader.read(), timeout=10)
        elapsed = loop.time() - started
        writer.close()
        assert Response(data).status == 408
        assert 0.2 < elapsed < 5
        await wait_for_connections(srv, 0)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server has closed this connection (EOF or reset), without waiting."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=2) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_at_the_cap_the_oldest_idle_connection_makes_room(
    metrics: Metrics, health: Health
) -> None:
    async with HealthServer(metrics, health, 0, max_connections=3, read_timeout=30) as srv:
        assert srv.port
        silent = await asyncio.open_connection("127.0.0.1", srv.port)
        await wait_for_connections(srv, 1)
        half = await asyncio.open_connection("127.0.0.1", srv.port)
        half[1].write(b"GET /healthz HTTP/1.1\r\nHost: loc")
        await half[1].drain()
        third = await asyncio.open_connection("127.0.0.1", srv.port)
        await wait_for_connections(srv, 3)

        ok = await get(srv.port, "/healthz")  # a fourth: the oldest idle one goes
        assert ok.status == 200
        assert await closed_by_server(silent[0])
        assert metrics.value("edge_health_refused_total", reason="idle_shed") == 1
        fourth = await asyncio.open_connection("127.0.0.1", srv.port)
        await wait_for_connections(srv, 3)
        assert (await get(srv.port, "/metrics")).status == 200  # now the half request goes
        assert await closed_by_server(half[0])
        assert metrics.value("edge_health_refused_total", reason="idle_shed") == 2
        # The newer idle connections are still served when they finally ask.
        for reader, writer in (third, fourth):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert Response(await asyncio.wait_for(reader.read(), timeout=10)).status == 200
        for _, writer in (silent, half, third, fourth):
            writer.close()
        await wait_for_connections(srv, 0)


async def test_a_crowd_of_idle_connections_cannot_block_or_fail_health(
    metrics: Metrics, health: Health
) -> None:
    """200 sockets that send nothing or half a request: /healthz and /metrics still 200.

    The read timeout is long, so it is the shedding that keeps them working, not the
    crowd timing out.
    """
    async with HealthServer(metrics, health, 0, read_timeout=30) as srv:
        assert srv.port
        crowd = []
        for i in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            if i % 2:
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            crowd.append((reader, writer))
        await asyncio.sleep(0.1)
        assert srv.active_connections <= 16
        loop = asyncio.get_running_loop()
        started = loop.time()
        for path in ("/healthz", "/metrics", "/healthz"):
            resp = await get(srv.port, path)
            assert resp.status == 200, resp.body
        assert loop.time() - started < 3
        assert metrics.value("edge_health_refused_total", reason="idle_shed") >= 200 - 16
        assert metrics.value("edge_health_refused_total", reason="busy") == 0
        for _, writer in crowd:
            writer.close()
        await wait_for_connections(srv, 0)


async def test_a_request_being_answered_is_never_shed(metrics: Metrics) -> None:
    """At the cap with no idle connection, a newcomer is told busy; nobody is cut off."""
    blob = "~" * (24 * 1024 * 1024)  # more than loopback socket buffers hold

    def big() -> tuple[bool, dict[str, object]]:
        return True, {"blob": blob}

    async with HealthServer(metrics, big, 0, max_connections=1, read_timeout=30) as srv:
        assert srv.port
        # A complete request whose client does not read yet: its answer is stuck in
        # drain(), so its connection is busy, not idle.
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        await wait_for_connections(srv, 1)
        await asyncio.sleep(0.5)
        busy = await get(srv.port, "/healthz")
        assert busy.status == 503
        assert b"busy" in busy.body
        assert metrics.value("edge_health_refused_total", reason="busy") == 1
        first = await asyncio.wait_for(reader.read(), timeout=10)  # still whole
        writer.close()
        assert Response(first).status == 200
        assert len(first) > len(blob)
        assert metrics.value("edge_health_refused_total", reason="idle_shed") == 0


async def test_close_ends_open_connections(metrics: Metrics, health: Health) -> None:
    srv = HealthServer(metrics, health, 0)
    port = await srv.start()
    assert srv.port == port
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    clients[0][1].write(b"GET /healthz HTTP/1.1\r\n")  # half a request
    await wait_for_connections(srv, 3)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await srv.close()
    assert loop.time() - started < 2  # far below the 5 s read timeout
    assert srv.active_connections == 0
    handlers = [
        t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "_handle"
    ]
    assert handlers == []

    for reader, writer in clients:
        try:
            data = await asyncio.wait_for(reader.read(), timeout=5)
        except ConnectionResetError:
            data = b""
        assert data == b""
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await srv.close()  # idempotent


async def test_works_with_a_stdlib_client(server: HealthServer, health: Health) -> None:
    url = f"http://127.0.0.1:{server.port}"

    def fetch(path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(url + path, timeout=10) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers["Content-Type"], err.read()

    status, ctype, body = await asyncio.to_thread(fetch, "/metrics")
    assert (status, ctype) == (200, METRICS_CONTENT_TYPE)
    assert b"edge_live_uplink_audio_chunks_total" in body
    health.healthy = False
    status, _, body = await asyncio.to_thread(fetch, "/healthz")
    assert status == 503
    assert json.loads(body)["status"] == "unhealthy"


async def test_start_twice_is_an_error(server: HealthServer) -> None:
    with pytest.raises(RuntimeError):
        await server.start()


# -- conversation text, secrets and the Host header ----------------------------------------


async def test_healthz_never_shows_conversation_text(metrics: Metrics) -> None:
    said = "please unlock the front door, the code is 4711"
    details: dict[str, object] = {
        "live_link": "connected",
        "sessions": 2,
        "last_user_text": said,
        "last_model_text": said,
        "peripheral": {
            "kind": "kiosk",
            "transcript": [said],
            "lastUserText": said,
            "heard-words": {"0": said},
            "utterances": 3,  # a count is not conversation
            "microphone": {"speech_frames": 10, "frames": 12},
        },
        "history": [{"utterance_text": said, "at": 1.5}, {"reply": {"text": said}}],
        "context_tokens": 100,
    }

    def check() -> tuple[bool, dict[str, object]]:
        return True, details

    async with HealthServer(metrics, check, 0) as srv:
        assert srv.port
        resp = await get(srv.port, "/healthz")
    assert resp.status == 200
    assert b"unlock" not in resp.body and b"4711" not in resp.body
    assert json.loads(resp.body)["details"] == {
        "live_link": "connected",
        "sessions": 2,
        "peripheral": {
            "kind": "kiosk",
            "utterances": 3,
            "microphone": {"speech_frames": 10, "frames": 12},
        },
        "history": [{"at": 1.5}, {}],
        "context_tokens": 100,
    }


async def test_healthz_and_metrics_scrub_secrets(metrics: Metrics) -> None:
    key = "AIzaSy" + uuid.uuid4().hex + "Q"
    logsetup.add_secret(key)

    def check() -> tuple[bool, dict[str, object]]:
        return False, {"last_error": f"rejected key {key[:26]}", "ca": Path(f"/etc/{key}")}

    metrics.link_disconnects.labels(f"closed by {key}").inc()
    async with HealthServer(metrics, check, 0) as srv:
        assert srv.port
        health = await get(srv.port, "/healthz")
        text = await get(srv.port, "/metrics")
    assert json.loads(health.body)["details"] == {"last_error": "rejected key ***", "ca": "/etc/***"}
    assert key[:8] not in health.body.decode()
    assert key[:8] not in text.body.decode()
    assert 'reason="closed by ***"' in text.body.decode()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:9102", "localhost", "LocalHost:80", "[::1]", "[::1]:9102"]
)
async def test_loopback_hosts_are_served(server: HealthServer, host: str) -> None:
    assert server.port
    raw = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    assert (await exchange(server.port, raw)).status == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:9102",  # DNS rebinding: the attacker's name, our port
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "127.0.0.2",
        "0.0.0.0",
        "[::1].evil",
        "127.0.0.1:port",
        "",
    ],
)
async def test_other_hosts_are_refused_and_counted(
    server: HealthServer, metrics: Metrics, host: str
) -> None:
    assert server.port
    for path in ("/healthz", "/metrics"):
        raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        resp = await exchange(server.port, raw)
        assert resp.status == 403
        assert b"only Host 127.0.0.1, localhost, [::1]" in resp.body
        assert b"edge_" not in resp.body and b"status" not in resp.body
    assert metrics.value("edge_health_refused_total", reason="bad_host") == 2


async def test_absolute_target_must_name_loopback_too(
    server: HealthServer, metrics: Metrics
) -> None:
    assert server.port
    raw = b"GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert (await exchange(server.port, raw)).status == 403
    raw = b"GET http://localhost:1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert (await exchange(server.port, raw)).status == 200


async def test_missing_or_repeated_host(server: HealthServer, metrics: Metrics) -> None:
    assert server.port
    missing = await exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert missing.status == 400
    assert b"missing Host" in missing.body
    assert metrics.value("edge_health_refused_total", reason="no_host") == 1
    twice = await exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"
    )
    assert twice.status == 400
    # HTTP/1.0 may leave Host out.
    assert (await exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")).status == 200


async def test_scrubbing_never_rewrites_a_sample_value(metrics: Metrics) -> None:
    # A secret made of digits (an MQTT password "961482") must not turn a counter that
    # happens to hold those digits into "***", which breaks the scrape for every reader.
    from prometheus_client.parser import text_string_to_metric_families

    logsetup.add_secret("961482")  # six digits: registered for the whole session
    metrics.uplink_audio.inc(961482)
    metrics.link_disconnects.labels("closed by 961482").inc()
    async with HealthServer(metrics, Health(), 0) as srv:
        assert srv.port
        text = (await get(srv.port, "/metrics")).body.decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["edge_live_uplink_audio_chunks_total"] == 961482.0
    assert 'reason="closed by ***"' in text


async def test_close_with_open_connections_logs_nothing(
    metrics: Metrics, health: Health, caplog: pytest.LogCaptureFixture
) -> None:
    # On 3.11 asyncio's stream callback logged each cancelled handler as a crash: an
    # ERROR traceback per connection on every stop, at any local process's will.
    logsetup.install_asyncio_handler()
    srv = HealthServer(metrics, health, 0)
    port = await srv.start()
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    for _reader, writer in clients:
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # not finished
    await wait_for_connections(srv, 5)
    with caplog.at_level("ERROR"):
        await srv.close()
        await asyncio.sleep(0.1)
    for _reader, writer in clients:
        writer.close()
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []

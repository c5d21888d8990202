"""The health server over real loopback TCP: routes, limits, and a clean close."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from daemon.config import OpsSettings
from daemon.ops.health import (
    METRICS_CONTENT_TYPE,
    HealthServer,
    health_server_from_settings,
)
from daemon.ops.metrics import Metrics

pytestmark = pytest.mark.timeout(20)


class Health:
    """A switchable health check, as the agent would supply."""

    def __init__(self) -> None:
        self.healthy = True
        self.details: dict[str, object] = {"link": "connected"}

    def __call__(self) -> tuple[bool, dict[str, object]]:
        return self.healthy, dict(self.details)


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
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
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
    start = b"GET /healthz HTTP/1.1\r\nX-Pad: "
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


async def test_connections_beyond_the_cap_get_503(metrics: Metrics, health: Health) -> None:
    async with HealthServer(metrics, health, 0, max_connections=2) as srv:
        assert srv.port
        idle = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(2)]
        await wait_for_connections(srv, 2)
        busy = await get(srv.port, "/healthz")
        assert busy.status == 503
        assert b"too many connections" in busy.body
        for _, writer in idle:
            writer.close()
        await wait_for_connections(srv, 0)
        assert (await get(srv.port, "/healthz")).status == 200


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


def test_port_zero_in_settings_means_off(metrics: Metrics, health: Health) -> None:
    assert health_server_from_settings(OpsSettings(health_port=0), metrics, health) is None
    srv = health_server_from_settings(OpsSettings(health_port=9102), metrics, health)
    assert isinstance(srv, HealthServer)
    assert srv.port is None  # not started yet

"""sd_notify and the watchdog against a real AF_UNIX datagram socket.

Without a socket or a process: tests/unit/test_ops_systemd.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.ops import systemd

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "n.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_ready_stopping_status_reach_the_socket(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert systemd.ready() is True
    assert systemd.status("connected to Live\nINJECTED=1") is True
    assert systemd.stopping() is True
    assert drain(sock) == [
        b"READY=1",
        b"STATUS=connected to Live INJECTED=1",
        b"STOPPING=1",
    ]


def test_abstract_socket_names() -> None:
    name = f"edge-agent-test-{os.getpid()}-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name}) is True
        assert drain(sock) == [b"READY=1"]


async def test_watchdog_loop_returns_when_no_watchdog(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}
    await asyncio.wait_for(systemd.watchdog_loop(lambda: True, environ=env), timeout=1)
    assert drain(sock) == []


async def recv_at(sock: socket.socket) -> tuple[bytes, float]:
    """The next datagram and when it arrived (loop clock)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        data = await loop.sock_recv(sock, 4096)
    return data, loop.time()


async def test_first_ping_is_sent_at_once(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"}  # every 10 s
    task = asyncio.create_task(systemd.watchdog_loop(lambda: True, environ=env))
    try:
        data, _ = await recv_at(sock)
        assert data == b"WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watchdog_pings_at_cadence_only_while_alive(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pings every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    period = systemd.watchdog_interval()
    assert period == pytest.approx(0.1)
    alive = True
    task = asyncio.create_task(systemd.watchdog_loop(lambda: alive))
    try:
        # Alive: one ping per period, no bursts.
        times = []
        for _ in range(6):
            data, at = await recv_at(sock)
            assert data == b"WATCHDOG=1"
            times.append(at)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g > 0.03 for g in gaps), gaps
        assert 0.07 < sum(gaps) / len(gaps) < 0.4, gaps

        # Wedged: no pings at all for several periods.
        alive = False
        drain(sock)  # anything sent before the switch
        await asyncio.sleep(0.6)
        assert drain(sock) == []
        assert not task.done()

        # Recovered: pings resume within a period or so.
        alive = True
        data, _ = await recv_at(sock)
        assert data == b"WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_raising_liveness_check_withholds_pings(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path}

    def broken() -> bool:
        raise RuntimeError("cannot tell")

    task = asyncio.create_task(systemd.watchdog_loop(broken, interval=0.05, environ=env))
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drain(sock) == []

"""Unit tests open no network socket, start no process and do not wait on the clock.

The autouse guard below makes `socket.socket.connect`/`connect_ex`/`bind`,
`subprocess.Popen` and `asyncio.create_subprocess_exec`/`_shell` raise
`NotAUnitTest` in every test here (asyncio's own socketpair is made without
them). Code under test that swallows the error still fails the test at teardown.
A test that needs any of these belongs in tests/integration, and so does one that
waits on real time (a sleep, a deadline, a timer) beyond a few milliseconds: that
rule is kept by review, not by this guard.
"""

from __future__ import annotations

import asyncio
import asyncio.subprocess
import socket
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any, NoReturn

import pytest

_FAILED = pytest.StashKey[bool]()


class NotAUnitTest(RuntimeError):
    """A unit test reached for the network or a process."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test itself failed (then the guard says nothing more)."""
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def _no_sockets_no_processes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused(*args: Any, **kwargs: Any) -> NoReturn:
            shown = ", ".join(repr(a) for a in args[1:] if not isinstance(a, socket.socket))
            attempts.append(f"{what}({shown[:120]})")
            raise NotAUnitTest(
                f"{what}({shown[:120]}) in a unit test: tests/unit opens no network socket "
                "and starts no process; move this test to tests/integration"
            )

        return refused

    async def refused_exec(*args: Any, **kwargs: Any) -> NoReturn:
        refuse("asyncio.create_subprocess_exec")(None, *args)

    async def refused_shell(*args: Any, **kwargs: Any) -> NoReturn:
        refuse("asyncio.create_subprocess_shell")(None, *args)

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.socket.{name}"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
    for module in (asyncio, asyncio.subprocess):
        monkeypatch.setattr(module, "create_subprocess_exec", refused_exec)
        monkeypatch.setattr(module, "create_subprocess_shell", refused_shell)
    yield
    if not request.node.stash.get(_FAILED, False):  # swallowed by the code under test
        assert not attempts, f"a unit test reached for the network or a process: {attempts}"

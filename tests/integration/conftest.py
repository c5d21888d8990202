"""Fixtures for the integration tests (real sockets, real processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulator.broker import PrivateBroker
from simulator.live_server import FakeLiveServer
from tests.support.live import KEY, conversation


@pytest.fixture
async def broker() -> AsyncIterator[PrivateBroker]:
    """The one private mosquitto: on a free loopback port, for one test.

    (Brokers with other options, TLS or users, come from `PrivateBroker(...)` itself;
    `tests.support.home.home_rig` starts its own.)
    """
    async with PrivateBroker() as b:
        yield b


@pytest.fixture
async def server() -> AsyncIterator[FakeLiveServer]:
    """The fake Live server with the conversation script, for one test; a test that
    made it fail inside fails too. (Files needing another server define their own.)"""
    async with FakeLiveServer(api_key=KEY, scenario=conversation()) as srv:
        yield srv
    assert not srv.internal_errors

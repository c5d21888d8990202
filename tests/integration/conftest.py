"""Fixtures for the integration tests (real sockets, real processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulator.broker import PrivateBroker


@pytest.fixture
async def broker() -> AsyncIterator[PrivateBroker]:
    """The one private mosquitto: on a free loopback port, for one test.

    (Brokers with other options, TLS or users, come from `PrivateBroker(...)` itself;
    `tests.support.home.home_rig` starts its own.)
    """
    async with PrivateBroker() as b:
        yield b

"""The Agent's media policy on the clock: the look tool waits for the camera's photo
(50 ms after the command), with the real Live link (not connected).

Without a socket or a process: tests/unit/test_agent_policy.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from daemon.live.calls import FunctionCall
from tests.support.agent import camera_agent, sent_frame

pytestmark = pytest.mark.timeout(20)


async def test_look_tool_sends_a_photo_even_when_idle() -> None:
    results: list[Any] = []  # the answers, as the dispatcher reports them
    agent = camera_agent(on_call=lambda _call, _outcome, response: results.append(response))
    assert "look" in agent.registry.names()
    task = asyncio.create_task(agent.dispatcher.run())
    pump = asyncio.create_task(agent.peripheral.run(agent))
    await asyncio.sleep(0)
    agent.dispatcher.submit([FunctionCall("c1", "look", {})])
    async with asyncio.timeout(5):
        while not results:
            await asyncio.sleep(0.01)
    task.cancel()
    pump.cancel()
    assert "photo" in results[0]["output"]
    assert sent_frame(agent) == b"photo"

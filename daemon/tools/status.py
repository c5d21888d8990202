"""The built-in `agent_status` tool: what the daemon knows about itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.tools.registry import Tool

DESCRIPTION = (
    "Report the assistant device's own status: the Live link state, the connected "
    "glasses or microphone, battery level if known, and uptime."
)


def status_tool(provider: Callable[[], dict[str, Any]]) -> Tool:
    """The `agent_status` tool, answering with what `provider` reports."""
    async def handler(_: dict[str, Any]) -> dict[str, Any]:
        return provider()

    return Tool(
        name="agent_status",
        description=DESCRIPTION,
        parameters={"type": "object", "properties": {}, "additionalProperties": False},
        handler=handler,
        deadline=1.0,
    )

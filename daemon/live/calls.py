"""Tool calls as plain values: what the model may call, its calls and their answers.

The Live layer owns them (it declares tools to the model, receives calls, sends
answers); the home and the Agent build `Tool`s; the generic registry and dispatcher
(daemon.tools) validate and run them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.errors import EdgeAgentError


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A call the model made: its id (to answer), the tool's name, the arguments."""

    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResponse:
    """The one answer to a call, with how the model should take it (scheduling)."""

    id: str
    name: str
    response: dict[str, Any]
    scheduling: str | None = None  # SILENT | WHEN_IDLE | INTERRUPT; None for blocking tools


# A handler returns JSON values (dict, list, str, number, bool, None); anything else
# reaches the model as an error answer (see dispatch.py).
ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]

VALIDATION_ONLY = frozenset({"maxLength", "minLength", "pattern"})


class ToolError(EdgeAgentError):
    """Raised by a handler for an error the model should hear, in plain words."""


class InvalidArguments(ToolError, ValueError):
    """The arguments do not fit the tool's schema; the model hears which and why."""


@dataclass(frozen=True)
class Tool:
    """What the model may call: its declaration and the handler that runs it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: ToolHandler
    deadline: float | None = None
    blocking: bool = False

    def declaration(self) -> dict[str, Any]:
        """Backend-neutral declaration; the Live link maps it to SDK types."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": _declared(self.parameters),
            "blocking": self.blocking,
        }


def _declared(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema without the keywords only our own validation reads."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in VALIDATION_ONLY:
            continue
        if key == "properties" and isinstance(value, Mapping):
            value = {k: _declared(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            value = _declared(value)
        elif key == "anyOf" and isinstance(value, list):
            value = [_declared(v) if isinstance(v, Mapping) else v for v in value]
        out[key] = value
    return out

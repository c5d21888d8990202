"""The tools the model may call: name, description, JSON schema, async handler.

Arguments are validated against the schema before a handler runs, so a handler
only ever sees input its schema allows. The registry tells listeners when its
set of tools changes, so the Live link can update the model's declarations.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

# A handler returns JSON values (dict, list, str, number, bool, None); anything else
# reaches the model as an error answer (see dispatch.py).
ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class ToolError(Exception):
    """Raised by a handler for an error the model should hear, in plain words."""


class InvalidArguments(ToolError):
    pass


@dataclass(frozen=True)
class Tool:
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
            "parameters": dict(self.parameters),
            "blocking": self.blocking,
        }


class ToolRegistry:
    def __init__(self, default_deadline: float = 5.0) -> None:
        self.default_deadline = default_deadline
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        self._listeners: list[Callable[[], None]] = []

    def register(self, tool: Tool) -> None:
        if not _NAME.match(tool.name):
            raise ValueError(f"tool name {tool.name!r}: letters, digits, _ . - only, max 64")
        if tool.parameters.get("type") != "object":
            raise ValueError(f"tool {tool.name}: parameters must be a JSON schema of type object")
        try:
            Draft202012Validator.check_schema(tool.parameters)
        except SchemaError as exc:
            raise ValueError(f"tool {tool.name}: invalid schema: {exc.message}") from None
        self._tools[tool.name] = tool
        self._validators[tool.name] = Draft202012Validator(tool.parameters)
        self._changed()

    def unregister(self, name: str) -> None:
        if self._tools.pop(name, None) is not None:
            del self._validators[name]
            self._changed()

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        return [self._tools[n].declaration() for n in sorted(self._tools)]

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _changed(self) -> None:
        for cb in self._listeners:
            cb()

    def validate(self, name: str, args: Any) -> dict[str, Any]:
        """The arguments as a dict if they fit the tool's schema; else InvalidArguments."""
        validator = self._validators.get(name)
        if validator is None:
            raise InvalidArguments(f"unknown tool {name!r}; available: {', '.join(self.names())}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidArguments("arguments must be an object")
        error = next(iter(sorted(validator.iter_errors(args), key=lambda e: list(e.path))), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise InvalidArguments(f"{where + ': ' if where else ''}{error.message}")
        return args

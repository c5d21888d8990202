"""The tools the model may call: name, description, JSON schema, async handler.

Arguments are validated against the schema before a handler runs, so a handler
only ever sees input its schema allows. The registry tells listeners when its
set of tools changes, so the Live link can update the model's declarations.

Validation must cost next to nothing whatever the model sends (a list of a million
colour values once froze the event loop for half a minute). So before the schema is
looked at, one bounded walk refuses arguments that are too big: any string longer
than the schema's `maxLength` (at most `MAX_STRING`), any array longer than its
`maxItems` (at most `MAX_ITEMS`), more than `MAX_ITEMS` keys in an object, nesting
deeper than `MAX_DEPTH`, more than `MAX_VALUES` values in all. Only then the JSON
Schema check runs, and it stops at the first error. `maxLength`, `minLength` and
`pattern` are checked here but left out of the declarations: the Live API accepts
only a subset of JSON Schema without them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from daemon.live.calls import InvalidArguments, Tool, ToolError, ToolHandler
from daemon.ops.logsetup import clip

__all__ = ["InvalidArguments", "Tool", "ToolError", "ToolHandler", "ToolRegistry"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_STRING = 4096  # characters in one string argument
MAX_ITEMS = 64  # elements of one array, keys of one object
MAX_DEPTH = 8
MAX_VALUES = 256  # values in all the arguments of one call
MAX_ERROR = 300  # characters of a validation error told to the model
MAX_NAME_ECHO = 80  # characters of an unknown tool's name told back to the model


def _too_big(args: Any, schema: Mapping[str, Any]) -> str | None:
    """Why the arguments are too big to validate, or None. Looks at no more than
    MAX_VALUES values and never iterates a container longer than allowed."""
    return _SizeWalk().walk(args, schema, "", 0)


class _SizeWalk:
    """One bounded walk over a call's arguments, beside the schema's own limits."""

    def __init__(self) -> None:
        self.left = MAX_VALUES

    def walk(self, value: Any, sch: Any, path: str, depth: int) -> str | None:
        """Why `value` (at `path`, `depth` levels down) is too big, or None."""
        self.left -= 1
        where = f"{path}: " if path else ""
        if self.left < 0:
            return f"too many values (at most {MAX_VALUES} in all)"
        if depth > MAX_DEPTH:
            return f"{where}nested too deeply (at most {MAX_DEPTH} levels)"
        sch = sch if isinstance(sch, Mapping) else {}
        if isinstance(value, str):
            limit = _limit(sch.get("maxLength"), MAX_STRING)
            if len(value) > limit:
                return f"{where}too long ({len(value)} characters; at most {limit})"
        elif isinstance(value, list):
            return self._array(value, sch, path, depth)
        elif isinstance(value, dict):
            return self._object(value, sch, path, depth)
        return None

    def _array(self, value: list[Any], sch: Mapping[str, Any], path: str, depth: int) -> str | None:
        where = f"{path}: " if path else ""
        limit = _limit(sch.get("maxItems"), MAX_ITEMS)
        if len(value) > limit:
            return f"{where}too many items ({len(value)}; at most {limit})"
        for i, item in enumerate(value):
            if (why := self.walk(item, sch.get("items"), f"{path}/{i}".lstrip("/"), depth + 1)):
                return why
        return None

    def _object(
        self, value: dict[Any, Any], sch: Mapping[str, Any], path: str, depth: int
    ) -> str | None:
        where = f"{path}: " if path else ""
        if len(value) > MAX_ITEMS:
            return f"{where}too many keys ({len(value)}; at most {MAX_ITEMS})"
        props = sch.get("properties")
        props = props if isinstance(props, Mapping) else {}
        for key, item in value.items():
            name = str(key)
            if len(name) > MAX_STRING:
                return f"{where}a key is too long ({len(name)} characters)"
            sub = props.get(name, sch.get("additionalProperties"))
            if (why := self.walk(item, sub, f"{path}/{name}".lstrip("/"), depth + 1)):
                return why
        return None


def _limit(declared: Any, ceiling: int) -> int:
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 0:
        return min(declared, ceiling)
    return ceiling



class ToolRegistry:
    """The tools the model may call, each with a validator built once from its schema."""

    def __init__(self, default_deadline: float = 5.0) -> None:
        self.default_deadline = default_deadline
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        self._listeners: list[Callable[[], None]] = []

    def register(self, tool: Tool) -> None:
        """Add or replace a tool; ValueError for a bad name or schema. Listeners are told."""
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
        """Remove a tool if it is there; listeners are told."""
        if self._tools.pop(name, None) is not None:
            del self._validators[name]
            self._changed()

    def get(self, name: str) -> Tool | None:
        """The tool registered under `name`, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """The registered tool names, sorted."""
        return sorted(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        """The declarations the model is offered, in name order."""
        return [self._tools[n].declaration() for n in sorted(self._tools)]

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever the set of tools changes."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for cb in self._listeners:
            cb()

    def validate(self, name: str, args: Any) -> dict[str, Any]:
        """The arguments as a dict if they fit the tool's schema; else InvalidArguments."""
        validator = self._validators.get(name)
        if validator is None:
            # clipped: the model can invent a name of any length, and it is echoed back
            raise InvalidArguments(f"unknown tool {clip(name, MAX_NAME_ECHO)!r}; "
                                   f"available: {', '.join(self.names())}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidArguments("arguments must be an object")
        why = _too_big(args, self._tools[name].parameters)
        if why is not None:
            raise InvalidArguments(why)
        error = next(validator.iter_errors(args), None)  # the first is enough
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            message = f"{where + ': ' if where else ''}{error.message}"
            raise InvalidArguments(clip(message, MAX_ERROR))
        return args

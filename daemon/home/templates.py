"""The templates of a discovery config we understand, and nothing cleverer.

Home Assistant configs carry Jinja templates: value templates that read a state
out of a payload, command templates that put a value into one. Only the shapes
that cannot surprise are evaluated (a path into JSON and a few filters; a single
substituted variable); anything else is marked so that the caller uses the raw
payload or does not offer the feature, and nothing is ever guessed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_TPL_EXPR = re.compile(r"^\{\{-?\s*(.*?)\s*-?\}\}$", re.DOTALL)
_TPL_PATH = re.compile(
    r"^(value_json|value)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)$"
)
_TPL_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_TPL_FILTER = re.compile(r"^(float|int|lower|upper|string|trim|round(?:\(\s*(\d+)\s*\))?)$")


@dataclass(frozen=True)
class ValueTemplate:
    """A state value template we understand, or a marker that it is used raw.

    Only the common shapes are evaluated: `{{ value }}`, `{{ value_json.a.b }}`,
    `{{ value_json['a'][0] }}`, optionally piped through float/int/round/lower/
    upper/string/trim. Anything else (`raw=True`) passes the payload through as is,
    so a clever template never makes us guess.
    """

    source: str
    path: tuple[str | int, ...] = ()
    use_json: bool = False
    filters: tuple[str, ...] = ()
    raw: bool = False

    def render(self, payload: str) -> str | None:
        """The value as the template would print it; None when it has no value."""
        if self.raw:
            return payload
        value: Any = payload
        if self.use_json:
            try:
                value = json.loads(payload)
            except (ValueError, RecursionError):
                return None
            for step in self.path:
                if isinstance(step, int):
                    if isinstance(value, list) and -len(value) <= step < len(value):
                        value = value[step]
                    else:
                        return None
                elif isinstance(value, dict) and step in value:
                    value = value[step]
                else:
                    return None
        for flt in self.filters:
            value = _apply_filter(flt, value)
            if value is None:
                return None
        return _jinja_str(value)


def render(template: ValueTemplate | None, payload: str) -> str | None:
    """The payload through a config's value template, if it has one."""
    return payload if template is None else template.render(payload)


def _apply_filter(flt: str, value: Any) -> Any:
    name, _, arg = flt.partition(":")
    if name in ("float", "int", "round"):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(number):
            return None
        if name == "float":
            return number
        if name == "int":
            return int(number)
        return round(number, int(arg or 0))
    text = _jinja_str(value)
    if name == "lower":
        return text.lower()
    if name == "upper":
        return text.upper()
    if name == "trim":
        return text.strip()
    return text


def _jinja_str(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def parse_value_template(source: str) -> ValueTemplate:
    """Understand a simple value template; anything else is marked raw."""
    match = _TPL_EXPR.match(source.strip())
    if match is None:
        return ValueTemplate(source, raw=True)
    parts = [p.strip() for p in match.group(1).split("|")]
    head = _TPL_PATH.match(parts[0])
    if head is None:
        return ValueTemplate(source, raw=True)
    path: list[str | int] = []
    for step in _TPL_STEP.finditer(head.group(2)):
        attr, sq, dq, idx = step.groups()
        if idx is not None:
            path.append(int(idx))
        else:
            path.append(attr if attr is not None else (sq if sq is not None else dq))
    use_json = head.group(1) == "value_json"
    if not use_json and path:
        return ValueTemplate(source, raw=True)
    filters: list[str] = []
    for raw_filter in parts[1:]:
        flt = _TPL_FILTER.match(raw_filter)
        if flt is None:
            return ValueTemplate(source, raw=True)
        if raw_filter.startswith("round"):
            filters.append(f"round:{flt.group(2) or 0}")
        else:
            filters.append(raw_filter)
    return ValueTemplate(source, tuple(path), use_json, tuple(filters))


_CMD_EXPR = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")


@dataclass(frozen=True)
class CommandTemplate:
    """A command template that only substitutes one variable, e.g. `{"pos": {{ value }}}`.

    Anything with logic in it is refused at parse time (the capability is then not
    offered), so the payload we publish is always predictable from the config.
    """

    source: str
    variable: str

    def render(self, value: str) -> str:
        """The payload with the value put in."""
        return _CMD_EXPR.sub(lambda _m: value, self.source)


def parse_command_template(
    source: str, variables: Sequence[str] = ("value",)
) -> CommandTemplate | None:
    """A substitution-only template, or None when it does more than substitute."""
    if "{%" in source or "{#" in source:
        return None
    names = set(_CMD_EXPR.findall(source))
    leftover = _CMD_EXPR.sub("", source)
    if "{{" in leftover or "}}" in leftover or len(names) != 1:
        return None
    (name,) = names
    if name not in variables:
        return None
    return CommandTemplate(source, name)

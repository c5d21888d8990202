"""An answer that conforms to a response schema: the fake's stand-in for a model's JSON.

Deterministic: the same schema and topic give the same answer, so tests can
compare. Honours the subset the service enforces (types, properties, required,
items, minItems/maxItems, enum, const, anyOf/oneOf, local ``$ref``), and the
result is checked with jsonschema before it leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from daemon.errors import EdgeAgentError

_MAX_DEPTH = 12


class SchemaError(EdgeAgentError, ValueError):
    """The schema is not one the fake (or the service) can answer."""


def check_schema(schema: Any) -> None:
    """Raise SchemaError if ``schema`` is not a valid JSON schema object."""
    if not isinstance(schema, dict):
        raise SchemaError("response_format schema must be a JSON object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid response schema: {exc.message}") from None


def fill(schema: Mapping[str, Any], topic: str) -> Any:
    """A value valid against ``schema`` whose strings talk about ``topic``."""
    value = _fill(schema, schema, topic, "answer", 0)
    try:
        jsonschema.validate(value, dict(schema))
    except jsonschema.ValidationError as exc:
        raise SchemaError(f"cannot satisfy the schema: {exc.message}") from None
    return value


def sentence(name: str, topic: str, index: int = 0) -> str:
    """The text a string field gets, by its name."""
    short = " ".join(topic.split()[:12]) or "your question"
    lowered = name.lower()
    if "url" in lowered or "uri" in lowered or "link" in lowered:
        return f"https://example.org/source-{index + 1}"
    if "title" in lowered or "name" in lowered:
        return f"Source {index + 1} on {short}"
    if "summary" in lowered:
        return f"I looked into {short}. The short answer: it depends, and here are the key points."
    return f"Point {index + 1} about {short}."


def _fill(schema: Mapping[str, Any], root: Mapping[str, Any], topic: str, name: str,
          depth: int, index: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise SchemaError("schema nests too deeply")
    if "$ref" in schema:
        return _fill(_resolve(root, str(schema["$ref"])), root, topic, name, depth + 1, index)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _fill(options[0], root, topic, name, depth + 1, index)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _fill(v, root, topic, k, depth + 1) for k, v in props.items()}
    if kind == "array":
        lo = int(schema.get("minItems", 0))
        hi = int(schema.get("maxItems", max(lo, 3)))
        count = max(lo, min(3, hi))
        items = schema.get("items", {"type": "string"})
        return [_fill(items, root, topic, name, depth + 1, i) for i in range(count)]
    return _scalar(str(kind), schema, topic, name, index)


def _scalar(kind: str, schema: Mapping[str, Any], topic: str, name: str, index: int) -> Any:
    if kind == "string":
        return sentence(name, topic, index)
    if kind in ("integer", "number"):
        lo = schema.get("minimum", 1)
        return int(lo) if kind == "integer" else float(lo)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    raise SchemaError(f"unsupported schema type {kind!r}")


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise SchemaError(f"only local $ref is supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise SchemaError(f"unresolvable $ref {ref!r}")
        node = node[part]
    if not isinstance(node, Mapping):
        raise SchemaError(f"$ref {ref!r} is not a schema")
    return node

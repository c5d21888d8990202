"""A tool call and its answer, as plain values shared by the link and the tools."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FunctionCall:
    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResponse:
    id: str
    name: str
    response: dict[str, Any]
    scheduling: str | None = None  # SILENT | WHEN_IDLE | INTERRUPT; None for blocking tools

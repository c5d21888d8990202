"""What a background task brings back: a short spoken summary, key points, sources.

The schema is sent with the request (`response_format`), and the answer is
checked against it here with pydantic: the service does not enforce lengths,
so a summary longer than `MAX_SUMMARY_WORDS` is cut at a word boundary (and
counted), and an answer that is not the JSON asked for fails the task once.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.errors import EdgeAgentError

MAX_SUMMARY_WORDS = 60
MAX_POINTS = 8
MAX_SOURCES = 10

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spoken_summary": {
            "type": "string",
            "description": f"The answer as it would be said aloud, at most "
                           f"{MAX_SUMMARY_WORDS} words, no markup.",
        },
        "key_points": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_POINTS},
        "sources": {
            "type": "array",
            "maxItems": MAX_SOURCES,
            "items": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "url": {"type": "string"}},
                "required": ["title", "url"],
            },
        },
    },
    "required": ["spoken_summary", "key_points", "sources"],
}


class ResultInvalid(EdgeAgentError):
    """The task's answer is not the structured result that was asked for."""


class Source(BaseModel):
    """One source the task relied on."""

    model_config = ConfigDict(extra="ignore")
    title: str = Field(max_length=300)
    url: str = Field(max_length=2000)


class TaskResult(BaseModel):
    """The structured result of a task (RESULT_SCHEMA), as kept and shown."""

    model_config = ConfigDict(extra="ignore")
    spoken_summary: str = Field(min_length=1, max_length=2000)
    key_points: list[str] = Field(default_factory=list, max_length=MAX_POINTS)
    sources: list[Source] = Field(default_factory=list, max_length=MAX_SOURCES)


def parse_result(text: str) -> tuple[TaskResult, bool]:
    """The validated result and whether its summary had to be cut; ResultInvalid if
    the text is not the JSON the schema asks for."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ResultInvalid("the answer is not JSON") from None
    try:
        result = TaskResult.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultInvalid(f"the answer does not fit the schema ({where}: {first['msg']})") \
            from None
    words = result.spoken_summary.split()
    if len(words) <= MAX_SUMMARY_WORDS:
        return result, False
    cut = " ".join(words[:MAX_SUMMARY_WORDS]).rstrip(",;:") + "..."
    return result.model_copy(update={"spoken_summary": cut}), True

"""Typed events the Live link hands to the Agent, free of SDK types."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.tools.calls import FunctionCall


@dataclass(frozen=True, slots=True)
class ModelAudio:
    pcm: bytes
    rate: int = 24_000


@dataclass(frozen=True, slots=True)
class InputTranscript:
    text: str
    finished: bool = False


@dataclass(frozen=True, slots=True)
class OutputTranscript:
    text: str
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Interrupted:
    pass


@dataclass(frozen=True, slots=True)
class TurnComplete:
    pass


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    pass


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class ToolCallCancelled:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """The link changed state: connected (fresh or resumed), reconnecting, failed."""

    state: str
    detail: str = ""
    resumed: bool = False


LiveEvent = (
    ModelAudio
    | InputTranscript
    | OutputTranscript
    | Interrupted
    | TurnComplete
    | GenerationComplete
    | Usage
    | ToolCallRequest
    | ToolCallCancelled
    | LinkStatus
)

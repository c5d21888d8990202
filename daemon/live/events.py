"""Typed events the Live link hands to the Agent, free of SDK types."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.live.calls import FunctionCall
from daemon.media.types import DOWNLINK_RATE, SAMPLE_WIDTH

MIN_MODEL_RATE = 8_000
MAX_MODEL_RATE = 48_000
"""Rates a speaker can be asked to play: the Live API sends 24 kHz; anything in this
range is resampled by the peripheral, anything outside it is a broken message."""


def audio_problem(pcm: bytes, rate: int) -> str | None:
    """Why this model audio cannot be played (a metric reason), or None if it can."""
    if isinstance(rate, bool) or not isinstance(rate, int):
        return "audio_rate"
    if not MIN_MODEL_RATE <= rate <= MAX_MODEL_RATE:
        return "audio_rate"
    if len(pcm) % SAMPLE_WIDTH:
        return "audio_odd_length"
    return None


@dataclass(frozen=True, slots=True)
class ModelAudio:
    """Whole 16-bit mono samples at a playable rate: the link drops anything else,
    so a peripheral never sees a rate of 0 or half a sample."""

    pcm: bytes
    rate: int = DOWNLINK_RATE

    def __post_init__(self) -> None:
        problem = audio_problem(self.pcm, self.rate)
        if problem is not None:
            raise ValueError(f"model audio: {problem} ({len(self.pcm)} bytes at {self.rate!r} Hz)")


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """What the server heard the user say (a piece; `finished` ends the utterance)."""

    text: str
    finished: bool = False


@dataclass(frozen=True, slots=True)
class OutputTranscript:
    """What the model says, as text beside its audio (a piece)."""

    text: str
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The user spoke over the model: what is queued for the speaker is stale."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The model finished its turn."""


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    """The model generated all of its reply (playback may still be under way)."""


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts, never negative (they go into counters, which only go up)."""

    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0

    def __post_init__(self) -> None:
        if min(self.prompt_tokens, self.response_tokens, self.total_tokens) < 0:
            raise ValueError(f"usage: negative token count in {self!r}")


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """The model calls tools; each call needs exactly one answer."""

    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class ToolCallCancelled:
    """The model no longer waits for these calls: their answers are not sent."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """The link changed state: connected (fresh or resumed), reconnecting, refused
    (the API said no; retried after a long wait, see LiveLink.problem), failed."""

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
    | TokenUsage
    | ToolCallRequest
    | ToolCallCancelled
    | LinkStatus
)

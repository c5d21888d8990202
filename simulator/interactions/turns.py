"""Foreground model turns of the fake: it hears audio input, calls functions, speaks.

Pure. A model interaction whose input carries audio is a spoken turn: the
fake "hears" it as the fake Live server does (energy over 20 ms frames, RMS
300, at least 40 ms of speech) and answers by the next :class:`ModelTurn`
script: with function calls first (``requires_action``, ``function_call``
steps), then, once a follow-up interaction continues it with a
``function_result`` for every call, with the reply (``{result}`` replaced by
the first result). The reply is audio (24 kHz 16-bit PCM, base64, an
``audio`` content block as the SDK types it) when ``response_modalities``
asks for audio, else text. A TTS model (audio asked, text input) speaks its
input. A text question continuing a conversation (the daemon's hand-over
summary) is answered with the replies of the chain, so a test can find them.
"""

from __future__ import annotations

import base64
import io
import math
import wave
from array import array
from dataclasses import dataclass, field
from typing import Any

OUTPUT_RATE = 24_000
HEAR_RMS = 300.0
MIN_SPEECH_MS = 40


@dataclass(frozen=True)
class ModelTurn:
    """What the fake model does with the next spoken turn."""

    reply: str = "I heard you."
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    audio_ms: int = 400  # how long the spoken reply lasts


@dataclass
class TurnState:
    """A spoken turn as the fake keeps it: its script, its calls, what it heard."""

    script: ModelTurn
    heard_ms: int
    call_ids: list[str] = field(default_factory=list)
    reply: str = ""


def audio_blocks(value: Any) -> list[dict[str, Any]]:
    """Every audio content block in an input (content list or steps)."""
    if isinstance(value, dict):
        if value.get("type") == "audio":
            return [value]
        return audio_blocks(value.get("content"))
    if isinstance(value, list):
        return [b for v in value for b in audio_blocks(v)]
    return []


def function_results(value: Any) -> list[dict[str, Any]]:
    """The function_result steps of an input."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict) and v.get("type") == "function_result"]
    return []


def wants_audio(body: dict[str, Any]) -> bool:
    """Whether the client asked for spoken output."""
    modalities = body.get("response_modalities") or []
    return any(str(m).lower() == "audio" for m in modalities)


def heard_ms(block: dict[str, Any]) -> int:
    """Milliseconds of speech in an audio block (WAV, or raw L16 at its sample_rate)."""
    raw = base64.b64decode(str(block.get("data") or ""))
    rate = int(block.get("sample_rate") or 16_000)
    if raw[:4] == b"RIFF":
        with wave.open(io.BytesIO(raw)) as wf:
            rate = wf.getframerate()
            raw = wf.readframes(wf.getnframes())
    samples = array("h", raw[: len(raw) - len(raw) % 2])
    frame = max(1, rate // 50)
    loud = 0
    for start in range(0, len(samples) - frame + 1, frame):
        chunk = samples[start:start + frame]
        if math.sqrt(sum(s * s for s in chunk) / frame) >= HEAR_RMS:
            loud += 1
    ms = loud * 20
    return ms if ms >= MIN_SPEECH_MS else 0


def spoken(text: str, audio_ms: int | None = None) -> dict[str, Any]:
    """A spoken reply: an audio content block of a 440 Hz tone, its length from the text."""
    ms = audio_ms if audio_ms is not None else min(3000, 200 + 40 * len(text.split()))
    n = OUTPUT_RATE * ms // 1000
    pcm = array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / OUTPUT_RATE))
                      for i in range(n)))
    return {"type": "audio", "mime_type": "audio/l16", "sample_rate": OUTPUT_RATE,
            "channels": 1, "data": base64.b64encode(pcm.tobytes()).decode("ascii")}


def answer_step(text: str, body: dict[str, Any], audio_ms: int | None = None) -> dict[str, Any]:
    """The model_output step: audio if asked for, else text."""
    content = spoken(text, audio_ms) if wants_audio(body) else {"type": "text", "text": text}
    return {"type": "model_output", "content": [content]}


def call_steps(state: TurnState, first_id: int) -> list[dict[str, Any]]:
    """The function_call steps of a turn's script; their ids are kept in `state`."""
    steps: list[dict[str, Any]] = []
    for i, (name, args) in enumerate(state.script.tool_calls):
        ident = f"call_{first_id + i}"
        state.call_ids.append(ident)
        steps.append({"type": "function_call", "id": ident, "name": name,
                      "arguments": dict(args)})
    return steps


def reply_with(script: ModelTurn, results: list[dict[str, Any]]) -> str:
    """The scripted reply, with the first function result in place of {result}."""
    first = results[0].get("result") if results else ""
    return script.reply.replace("{result}", str(first))

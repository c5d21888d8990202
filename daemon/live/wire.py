"""Translation between SDK types and the daemon's own: setup config in, events out.

Pure functions, so what the model is told and what the Agent hears can be
tested without a socket.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from daemon.config import LiveSettings
from daemon.live.calls import FunctionCall, ToolResponse
from daemon.live.events import (
    GenerationComplete,
    InputTranscript,
    Interrupted,
    LiveEvent,
    ModelAudio,
    OutputTranscript,
    TokenUsage,
    ToolCallCancelled,
    ToolCallRequest,
    TurnComplete,
    audio_problem,
)
from daemon.live.session_record import MAX_HANDLE_CHARS
from daemon.media.types import DOWNLINK_RATE, pcm_duration

AUDIO_MIME = "audio/pcm;rate=16000"
MAX_CALL_ID_CHARS = 256  # a longer call id is dropped: it could not be stored or logged
MAX_CALL_NAME_CHARS = 128  # a longer tool name is cut (no tool has one; see registry)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*s\s*$")


def connect_config(
    settings: LiveSettings, declarations: Iterable[dict[str, Any]], handle: str | None
) -> types.LiveConnectConfig:
    """The session setup: voice, tools, resumption (with the handle), compression."""
    speech = None
    if settings.voice or settings.language:
        speech = types.SpeechConfig(
            voice_config=(
                types.VoiceConfig(
                    prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=settings.voice)
                )
                if settings.voice
                else None
            ),
            language_code=settings.language or None,
        )
    tools = function_tools(declarations)
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        system_instruction=settings.system_instruction or None,
        speech_config=speech,
        tools=tools or None,
        session_resumption=types.SessionResumptionConfig(handle=handle),
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=settings.compression_trigger_tokens,
            sliding_window=types.SlidingWindow(
                target_tokens=settings.compression_target_tokens
            ),
        ),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )


def function_tools(declarations: Iterable[dict[str, Any]]) -> list[types.Tool]:
    """Our backend-neutral declarations as the SDK's tool (none when there are none)."""
    decls = [
        types.FunctionDeclaration(
            name=d["name"],
            description=d["description"],
            parameters_json_schema=d["parameters"],
            behavior=types.Behavior.BLOCKING if d.get("blocking") else types.Behavior.NON_BLOCKING,
        )
        for d in declarations
    ]
    return [types.Tool(function_declarations=decls)] if decls else []


def function_response(resp: ToolResponse) -> types.FunctionResponse:
    """An answer as the SDK sends it, with its scheduling for non-blocking tools."""
    return types.FunctionResponse(
        id=resp.id,
        name=resp.name,
        response=resp.response,
        scheduling=types.FunctionResponseScheduling(resp.scheduling) if resp.scheduling else None,
    )


def audio_message(pcm: bytes) -> bytes:
    """The exact realtime_input JSON the SDK sends for one audio chunk, as UTF-8.

    Built directly because the SDK's per-call validation costs more CPU than
    the rest of the uplink together (bench/live_uplink.py); bytes, because that
    is what goes into the frame (no str to encode again per message).
    """
    return b"".join((_AUDIO_HEAD, base64.urlsafe_b64encode(pcm), _AUDIO_TAIL))


_AUDIO_HEAD = b'{"realtime_input":{"audio":{"data":"'
_AUDIO_TAIL = b'","mime_type":"' + AUDIO_MIME.encode() + b'"}}}'


def parse_duration(text: str | None) -> float | None:
    """Protobuf JSON durations ("50s", "1.5s") as seconds; None if absent or odd."""
    if not text:
        return None
    m = _DURATION.match(text)
    return float(m.group(1)) if m else None


@dataclass
class Control:
    """What a server message means for the link itself, beside the Agent's events."""

    new_handle: str | None = None
    resumable: bool | None = None
    go_away_in: float | None = None
    turn_active: bool | None = None  # a turn is under way: heard, thinking, calling, speaking
    call_ids: list[str] = field(default_factory=list)
    call_names: dict[str, str] = field(default_factory=dict)  # call id -> tool name
    cancelled_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    audio_seconds: float = 0.0
    dropped: list[str] = field(default_factory=list)  # parts not passed on, by reason


def translate(msg: types.LiveServerMessage) -> tuple[list[LiveEvent], Control]:
    """The Agent's events in a server message, and what it means for the link.

    Only valid events come out: a part the Agent could not use (audio at a rate of
    0 or with half a sample, negative token counts) is dropped here and named in
    `Control.dropped`, and the rest of the message still counts.
    """
    events: list[LiveEvent] = []
    ctl = Control()
    upd = msg.session_resumption_update
    if upd is not None:
        ctl.kinds.append("session_resumption_update")
        ctl.resumable = bool(upd.resumable)
        if upd.new_handle and upd.resumable:
            if len(upd.new_handle) <= MAX_HANDLE_CHARS:
                ctl.new_handle = upd.new_handle
            else:  # a next start would refuse it as corrupt: keep the one we have
                ctl.dropped.append("handle_too_long")
    if msg.go_away is not None:
        ctl.kinds.append("go_away")
        left = parse_duration(msg.go_away.time_left)
        ctl.go_away_in = 0.0 if left is None else left
    if msg.server_content is not None:
        ctl.kinds.append("server_content")
        _server_content(msg.server_content, events, ctl)
    _tool_messages(msg, events, ctl)
    if msg.usage_metadata is not None:
        ctl.kinds.append("usage_metadata")
        um = msg.usage_metadata
        counts = (um.prompt_token_count or 0, um.response_token_count or 0,
                  um.total_token_count or 0)
        if min(counts) < 0:
            ctl.dropped.append("usage_negative")
        else:
            events.append(TokenUsage(*counts))
    if msg.setup_complete is not None:
        ctl.kinds.append("setup_complete")
    if not ctl.kinds:
        ctl.kinds.append("other")
    return events, ctl


def _server_content(sc: types.LiveServerContent, events: list[LiveEvent], ctl: Control) -> None:
    """Transcripts, model audio and turn boundaries, in the order the Agent needs them."""
    if sc.input_transcription is not None and sc.input_transcription.text:
        ctl.turn_active = True
        events.append(
            InputTranscript(sc.input_transcription.text, bool(sc.input_transcription.finished))
        )
    if sc.model_turn is not None and sc.model_turn.parts:
        ctl.turn_active = True
        _model_audio(sc.model_turn.parts, events, ctl)
    if sc.output_transcription is not None and sc.output_transcription.text:
        events.append(
            OutputTranscript(
                sc.output_transcription.text, bool(sc.output_transcription.finished)
            )
        )
    if sc.interrupted:
        ctl.turn_active = False
        events.append(Interrupted())
    if sc.generation_complete:
        events.append(GenerationComplete())
    if sc.turn_complete:
        ctl.turn_active = False
        events.append(TurnComplete())


def _model_audio(parts: list[types.Part], events: list[LiveEvent], ctl: Control) -> None:
    """The playable audio of a model turn; anything else is named in `ctl.dropped`."""
    for part in parts:
        blob = part.inline_data
        if blob is not None and blob.data:
            rate = _pcm_rate(blob.mime_type)
            if rate is None:
                ctl.dropped.append("audio_format")
                continue
            problem = audio_problem(blob.data, rate)
            if problem is not None:
                ctl.dropped.append(problem)
                continue
            ctl.audio_bytes += len(blob.data)
            ctl.audio_seconds += pcm_duration(len(blob.data), rate)
            events.append(ModelAudio(blob.data, rate))


def _tool_messages(msg: types.LiveServerMessage, events: list[LiveEvent], ctl: Control) -> None:
    """Tool calls (a turn under way) and their cancellations.

    A call id longer than MAX_CALL_ID_CHARS is dropped (named in `ctl.dropped`): it
    could not be stored for a restart nor logged, so the call cannot be answered
    safely. A tool name longer than MAX_CALL_NAME_CHARS is cut to that length (and
    named): no tool has such a name, so the call is answered "unknown tool", with
    the short name, instead of echoing megabytes back.
    """
    if msg.tool_call is not None and msg.tool_call.function_calls:
        ctl.kinds.append("tool_call")
        calls = []
        for fc in msg.tool_call.function_calls:
            call_id, name = fc.id or "", fc.name or ""
            if len(call_id) > MAX_CALL_ID_CHARS:
                ctl.dropped.append("call_id_too_long")
                continue
            if len(name) > MAX_CALL_NAME_CHARS:
                ctl.dropped.append("call_name_too_long")
                name = name[:MAX_CALL_NAME_CHARS]
            calls.append(FunctionCall(call_id, name, dict(fc.args or {})))
        ctl.call_ids.extend(c.id for c in calls)
        ctl.call_names.update((c.id, c.name) for c in calls)
        ctl.turn_active = True
        if calls:
            events.append(ToolCallRequest(tuple(calls)))
    if msg.tool_call_cancellation is not None and msg.tool_call_cancellation.ids:
        ctl.kinds.append("tool_call_cancellation")
        ids = tuple(i for i in msg.tool_call_cancellation.ids if len(i) <= MAX_CALL_ID_CHARS)
        # a longer id names no call we took: nothing to cancel
        ctl.cancelled_ids.extend(ids)
        if ids:
            events.append(ToolCallCancelled(ids))


def _pcm_rate(mime: str | None) -> int | None:
    """The rate of `audio/pcm[;rate=N]` (24 kHz when unnamed, 0 when unreadable);
    None for any other kind of data."""
    if not mime:
        return DOWNLINK_RATE
    kind, *params = mime.split(";")
    if kind.strip().lower() != "audio/pcm":
        return None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "rate":
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return DOWNLINK_RATE

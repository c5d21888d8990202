import base64
import json

import pytest
from google.genai import types

from daemon.config import LiveSettings
from daemon.live import wire
from daemon.live.calls import FunctionCall, ToolResponse
from daemon.live.events import (
    GenerationComplete,
    InputTranscript,
    Interrupted,
    ModelAudio,
    OutputTranscript,
    TokenUsage,
    ToolCallCancelled,
    ToolCallRequest,
    TurnComplete,
)

pytestmark = pytest.mark.timeout(10)


def msg(data: dict) -> types.LiveServerMessage:  # type: ignore[type-arg]
    return types.LiveServerMessage.model_validate(data)


@pytest.mark.parametrize(("text", "seconds"), [("50s", 50.0), ("1.5s", 1.5), (" 0s", 0.0),
                                               ("", None), (None, None), ("5m", None)])
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    assert wire.parse_duration(text) == seconds


def test_audio_message_matches_the_sdk_wire_form() -> None:
    pcm = bytes(range(256)) * 3
    out = json.loads(wire.audio_message(pcm))
    audio = out["realtime_input"]["audio"]
    assert audio["mime_type"] == "audio/pcm;rate=16000"
    assert base64.urlsafe_b64decode(audio["data"]) == pcm


def test_server_content_becomes_events_in_order() -> None:
    events, ctl = wire.translate(msg({"server_content": {
        "input_transcription": {"text": "hi", "finished": True},
        "model_turn": {"parts": [{"inline_data": {"data": b"\x01\x02", "mime_type": "audio/pcm;rate=24000"}}]},
        "output_transcription": {"text": "hello"},
        "generation_complete": True,
        "turn_complete": True,
    }}))
    assert events == [InputTranscript("hi", True), ModelAudio(b"\x01\x02", 24000),
                      OutputTranscript("hello", False), GenerationComplete(), TurnComplete()]
    assert ctl.turn_active is False
    assert ctl.audio_bytes == 2


def test_interruption_and_activity() -> None:
    events, ctl = wire.translate(msg({"server_content": {"interrupted": True}}))
    assert events == [Interrupted()]
    assert ctl.turn_active is False
    _, ctl = wire.translate(msg({"server_content": {"model_turn": {"parts": [{"text": "x"}]}}}))
    assert ctl.turn_active is True


def test_tool_calls_cancellations_usage_and_control() -> None:
    events, ctl = wire.translate(msg({"tool_call": {"function_calls": [
        {"id": "a", "name": "agent_status", "args": {"x": 1}}]}}))
    assert events == [ToolCallRequest((FunctionCall("a", "agent_status", {"x": 1}),))]
    assert ctl.call_ids == ["a"]
    events, ctl = wire.translate(msg({"tool_call_cancellation": {"ids": ["a"]}}))
    assert events == [ToolCallCancelled(("a",))]
    assert ctl.cancelled_ids == ["a"]
    events, _ = wire.translate(msg({"usage_metadata": {"prompt_token_count": 3,
                                                      "response_token_count": 4,
                                                      "total_token_count": 7}}))
    assert events == [TokenUsage(3, 4, 7)]
    _, ctl = wire.translate(msg({"session_resumption_update": {"new_handle": "h", "resumable": True}}))
    assert (ctl.new_handle, ctl.resumable) == ("h", True)
    _, ctl = wire.translate(msg({"session_resumption_update": {"new_handle": "h2", "resumable": False}}))
    assert ctl.new_handle is None  # a handle is only usable at a resumable point
    long_handle = "h" * 4097  # longer than a stored session may hold: refused at once
    _, ctl = wire.translate(msg({"session_resumption_update": {"new_handle": long_handle,
                                                               "resumable": True}}))
    assert ctl.new_handle is None and ctl.dropped == ["handle_too_long"]
    _, ctl = wire.translate(msg({"go_away": {"time_left": "12s"}}))
    assert ctl.go_away_in == 12.0


def test_connect_config_has_resumption_compression_and_tools() -> None:
    decl = {"name": "t", "description": "d", "parameters": {"type": "object"}, "blocking": False}
    cfg = wire.connect_config(LiveSettings(voice="Puck"), [decl], "handle-1")
    assert cfg.session_resumption is not None
    assert cfg.session_resumption.handle == "handle-1"
    assert cfg.context_window_compression is not None
    assert cfg.context_window_compression.sliding_window is not None
    assert cfg.input_audio_transcription is not None
    assert cfg.tools is not None
    tool = cfg.tools[0]
    assert isinstance(tool, types.Tool)
    assert tool.function_declarations is not None
    assert tool.function_declarations[0].behavior == types.Behavior.NON_BLOCKING
    assert wire.connect_config(LiveSettings(), [], None).tools is None


def test_function_response_scheduling() -> None:
    fr = wire.function_response(ToolResponse("a", "t", {"output": 1}, "SILENT"))
    assert fr.scheduling == types.FunctionResponseScheduling.SILENT
    assert wire.function_response(ToolResponse("a", "t", {})).scheduling is None


def audio_msg(mime: str | None, pcm: bytes) -> types.LiveServerMessage:
    blob = {"data": pcm} if mime is None else {"data": pcm, "mime_type": mime}
    return msg({"server_content": {"model_turn": {"parts": [{"inline_data": blob}]}}})


@pytest.mark.parametrize(
    ("mime", "pcm", "reason"),
    [
        ("audio/pcm;rate=0", bytes(480), "audio_rate"),
        ("audio/pcm;rate=-24000", bytes(480), "audio_rate"),
        ("audio/pcm;rate=abc", bytes(480), "audio_rate"),
        ("audio/pcm;rate=1000000000", bytes(480), "audio_rate"),
        ("audio/pcm;rate=4000", bytes(480), "audio_rate"),
        ("audio/pcm;rate=24000", bytes(481), "audio_odd_length"),
        ("audio/pcm", bytes(3), "audio_odd_length"),
        ("image/jpeg", bytes(480), "audio_format"),
    ],
)
def test_unplayable_audio_is_dropped_with_a_reason(mime: str, pcm: bytes, reason: str) -> None:
    events, ctl = wire.translate(msg({"server_content": {
        "model_turn": {"parts": [
            {"inline_data": {"data": pcm, "mime_type": mime}},
            {"inline_data": {"data": b"\x01\x02", "mime_type": "audio/pcm;rate=24000"}},
        ]},
        "turn_complete": True,
    }}))
    # the bad part goes, the good part and the rest of the message stay
    assert events == [ModelAudio(b"\x01\x02", 24000), TurnComplete()]
    assert ctl.dropped == [reason]
    assert ctl.audio_bytes == 2


@pytest.mark.parametrize(
    ("mime", "rate"),
    [(None, 24000), ("audio/pcm", 24000), ("audio/pcm;rate=16000", 16000),
     ("Audio/PCM; Rate=48000", 48000), ("audio/pcm;codec=pcm;rate=8000", 8000)],
)
def test_playable_audio_keeps_its_rate(mime: str | None, rate: int) -> None:
    events, ctl = wire.translate(audio_msg(mime, bytes(rate // 50)))  # 10 ms
    assert events == [ModelAudio(bytes(rate // 50), rate)]
    assert ctl.dropped == []
    assert ctl.audio_seconds == pytest.approx(0.01)


def test_negative_token_counts_are_dropped_and_the_rest_kept() -> None:
    events, ctl = wire.translate(msg({
        "usage_metadata": {"prompt_token_count": -5, "response_token_count": 3,
                           "total_token_count": -2},
        "server_content": {"turn_complete": True},
    }))
    assert events == [TurnComplete()]
    assert ctl.dropped == ["usage_negative"]


def test_events_cannot_be_built_invalid() -> None:
    for pcm, rate in ((bytes(2), 0), (bytes(2), -1), (bytes(3), 24000), (bytes(2), 10**9)):
        with pytest.raises(ValueError, match="model audio"):
            ModelAudio(pcm, rate)
    with pytest.raises(ValueError, match="negative"):
        TokenUsage(1, -1, 0)

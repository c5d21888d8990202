"""The fake Live server's pure parts: the energy detector, base64, scenarios, replies,
and its command line's refusals.

The server itself, driven by the real google-genai SDK over TLS:
tests/integration/test_fake_live_server.py.
"""

from __future__ import annotations

import base64
import json
import wave
from pathlib import Path

import pytest

from simulator.live_server import (
    EndOfUtteranceDetector,
    VadEvent,
    decode_base64,
    main,
)
from simulator.scenario import (
    ScenarioError,
    ToolCallSpec,
    default_scenario,
    describe_status,
    format_reply,
    home_demo_scenario,
    load_scenario,
)
from tests.support.live import silence, speech

pytestmark = pytest.mark.timeout(30)


# ----------------------------------------------------------------- helpers


# ------------------------------------------------------- detector, scenario


def test_detector_counts_samples_not_wall_time() -> None:
    det = EndOfUtteranceDetector(silence_ms=600)
    assert det.feed(silence(200)) == []
    assert det.feed(speech(100)) == [VadEvent.SPEECH_START]
    assert det.feed(silence(580)) == []
    assert det.feed(silence(20)) == [VadEvent.UTTERANCE_END]
    assert det.feed(speech(20) + silence(300)) == []  # a 20 ms click is not speech
    assert det.feed(speech(100) + silence(300) + speech(100) + silence(620)) == [
        VadEvent.SPEECH_START, VadEvent.UTTERANCE_END,  # a pause shorter than 600 ms
    ]
    # Odd byte counts and tiny chunks are carried over.
    pcm = speech(100) + silence(700)
    events: list[VadEvent] = []
    for i in range(0, len(pcm), 7):
        events += det.feed(pcm[i : i + 7])
    assert events == [VadEvent.SPEECH_START, VadEvent.UTTERANCE_END]
    det.feed(speech(100))
    assert det.force_end() is True
    assert det.force_end() is False


def test_decode_base64_accepts_both_alphabets() -> None:
    data = bytes(range(256))
    for text in (
        base64.b64encode(data).decode(),
        base64.b64encode(data).decode().rstrip("="),
        base64.urlsafe_b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ):
        assert decode_base64(text) == data


def test_scenario_files(tmp_path: Path) -> None:
    wav_path = tmp_path / "reply.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(bytes(4 * 4800))  # 100 ms stereo at 48 kHz
    (tmp_path / "s.toml").write_text(
        'loop = true\n'
        '[[turns]]\nuser = "lights"\nreply = "Lamp is {result[state]}"\naudio_file = "reply.wav"\n'
        '[turns.tool_call]\nname = "lamp"\nargs = { room = "hall" }\ncancel_after_ms = 50\n'
        '[[turns]]\nuser = "bye"\nreply = "Bye"\naudio_ms = 250\nchirp_to_hz = 880\n'
        'usage = { prompt_token_count = 3, response_token_count = 4 }\n'
    )
    scenario = load_scenario(tmp_path / "s.toml")
    assert scenario.loop and len(scenario.turns) == 2
    first, second = scenario.turns
    assert first.tool_calls == (ToolCallSpec("lamp", {"room": "hall"}, 50.0),)
    assert len(first.audio.render()) == 2 * 2400  # resampled to 24 kHz mono
    assert len(second.audio.render()) == 2 * 6000
    assert second.usage is not None and second.usage.total_token_count == 7
    assert scenario.turn_at(2) == first
    assert format_reply(first.reply, [("lamp", {"state": "on"})]) == "Lamp is on"

    (tmp_path / "s.json").write_text(json.dumps({"turns": [{"user": "a", "reply": "b"}]}))
    assert load_scenario(tmp_path / "s.json").turns[0].reply == "b"
    assert load_scenario(tmp_path / "s.json").turn_at(1) is None

    (tmp_path / "bad.toml").write_text('[[turns]]\nuser = "x"\nrepyl = "typo"\n')
    with pytest.raises(ScenarioError, match="repyl"):
        load_scenario(tmp_path / "bad.toml")


def test_format_reply_and_default_scenario() -> None:
    assert format_reply("R: {result}", [("f", {"output": "fine"})]) == "R: fine"
    assert format_reply("R: {result}", [("f", {"a": 1})]) == 'R: {"a":1}'
    assert format_reply("R: {result[missing]}", [("f", {"a": 1})]) == "R: {result[missing]}"
    scenario = default_scenario()
    assert [t.user for t in scenario.turns] == ["What's the status of the agent?", "Thank you."]
    assert scenario.turns[0].tool_calls[0].name == "agent_status"
    assert scenario.turns[1].reply == "You're welcome."


def test_the_demo_says_the_status_in_words_not_json() -> None:
    turn = home_demo_scenario().turns[1]
    assert turn.tool_calls[0].name == "agent_status"
    glasses = {"live_link": "connected", "sessions": 1, "uptime_s": 12.5,
               "peripheral": {"kind": "ble", "device": "Brilliant Labs Frame",
                              "connected": True, "battery": 87, "mtu": 247},
               "battery_percent": 87, "microphone_muted": False, "last_user_text": "x{y}"}
    said = format_reply(turn.reply, [("agent_status", {"output": glasses})])
    assert said == ("I'm up and running: the Live link is connected, the Brilliant Labs "
                    "Frame is connected and the battery is at 87 percent.")
    file_input = {"live_link": "connected", "peripheral": {"kind": "file", "input": "a.wav"}}
    said = format_reply(turn.reply, [("agent_status", {"output": file_input})])
    assert said == "I'm up and running: the Live link is connected and I'm listening to a recording."
    gone = {**glasses, "peripheral": {"kind": "ble", "device": "Omi", "connected": False}}
    del gone["battery_percent"]
    assert describe_status({"output": gone}) == (
        "I'm up and running: the Live link is connected and the Omi is not connected.")
    assert describe_status({"error": "timed out after 1 s"}) == (
        "I couldn't read my status: timed out after 1 s.")
    assert describe_status({"output": {}}) == "I'm up and running."
    # picked by name when other calls come first
    assert "percent" in format_reply("{status}", [("x", {"output": 1}),
                                                  ("agent_status", {"output": glasses})])


def test_main_rejects_a_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["--scenario", str(bad)]) == 2
    assert "--scenario" in capsys.readouterr().err

"""The fallback road's pure parts: the road switch (hysteresis both ways), the
utterance cutter, the answer-audio decoding and the fake's spoken turns.

End to end: tests/integration/test_fallback_road.py.
"""

from __future__ import annotations

import base64
import math
from array import array

from daemon.tasks.client import decode_audio, wav_bytes
from daemon.tasks.fallback import road_earcon
from daemon.tasks.road import RoadMachine
from daemon.tasks.utterance import UtteranceCutter
from simulator.interactions.store import InteractionStore
from simulator.interactions.turns import ModelTurn

RATE = 16_000


def tone(seconds: float, amp: int = 6000) -> bytes:
    n = int(seconds * RATE)
    return array("h", (int(amp * math.sin(2 * math.pi * 300 * i / RATE))
                       for i in range(n))).tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE))


# -- the road ---------------------------------------------------------------------------
def test_the_road_switches_only_after_the_link_was_down_long_enough() -> None:
    m = RoadMachine(after=5.0, return_after=2.0)
    assert m.update(0.0, connected=False) is None
    assert m.update(4.9, connected=False) is None
    assert m.update(5.0, connected=False) == "fallback"
    assert m.update(6.0, connected=False) is None and m.road == "fallback"


def test_a_flapping_link_restarts_the_count_both_ways() -> None:
    m = RoadMachine(after=5.0, return_after=2.0)
    m.update(0.0, False)
    m.update(3.0, True)  # up for a moment: the down time starts again
    assert m.update(7.0, False) is None
    assert m.update(12.0, False) == "fallback"
    m.update(13.0, True)
    m.update(14.0, False)  # down again before return_after
    assert m.update(15.0, True) is None
    assert m.update(16.9, True) is None
    assert m.update(17.0, True) == "live"


def test_a_running_fallback_turn_keeps_the_road_until_it_ends() -> None:
    m = RoadMachine(after=0.0, return_after=1.0)
    assert m.update(0.0, False) == "fallback"
    m.update(1.0, True, busy=True)
    assert m.update(5.0, True, busy=True) is None
    assert m.update(5.1, True, busy=False) == "live"


# -- the cutter ----------------------------------------------------------------------------
def test_an_utterance_is_cut_after_the_silence_with_a_little_before_and_after() -> None:
    cut = UtteranceCutter(silence=0.6, pre_roll=0.2)
    assert cut.feed(silence(1.0), 1.0) is None
    assert cut.feed(tone(1.0), 2.0) is None and cut.in_speech
    assert cut.feed(silence(0.5), 2.5) is None
    utt = cut.feed(silence(0.5), 3.0)
    assert utt is not None and utt.ended_at == 3.0
    assert 1.15 <= utt.seconds <= 1.3  # pre-roll + speech + a short tail
    assert cut.feed(silence(2.0), 5.0) is None  # one utterance, once


def test_chunk_sizes_do_not_change_the_cut() -> None:
    pcm = silence(0.5) + tone(0.8) + silence(1.0)
    whole = UtteranceCutter().feed(pcm, 0.0)
    pieces = UtteranceCutter()
    got = [u for i in range(0, len(pcm), 222) if (u := pieces.feed(pcm[i:i + 222], 0.0))]
    assert whole is not None and [u.pcm for u in got] == [whole.pcm]


def test_a_click_is_not_speech_and_a_vad_end_cuts_at_once() -> None:
    cut = UtteranceCutter(min_speech=0.06)
    assert cut.feed(silence(0.2) + tone(0.02) + silence(1.0), 0.0) is None
    assert not cut.in_speech
    assert cut.end_now(1.0) is None  # nothing to cut
    cut.feed(tone(0.5), 1.5)
    utt = cut.end_now(1.5)  # the kiosk's VAD gate: no silence follows
    assert utt is not None and utt.seconds >= 0.5


def test_a_monologue_is_cut_at_the_limit() -> None:
    cut = UtteranceCutter(max_seconds=1.0)
    utt = cut.feed(tone(1.5), 0.0)
    assert utt is not None and 0.95 <= utt.seconds <= 1.05


# -- audio forms ------------------------------------------------------------------------
def test_answer_audio_is_read_from_l16_and_wav() -> None:
    pcm = tone(0.1)
    b64 = base64.b64encode(pcm).decode()
    assert decode_audio(b64, "audio/l16", 24_000) == (pcm, 24_000)
    assert decode_audio(b64, "audio/L16;codec=pcm;rate=16000", None) == (pcm, 16_000)
    wav = base64.b64encode(wav_bytes(pcm, 22_050)).decode()
    assert decode_audio(wav, "audio/wav", None) == (pcm, 22_050)


def test_the_earcons_are_short_and_differ() -> None:
    down, up = road_earcon(live=False), road_earcon(live=True)
    assert down != up and len(down) == len(up) < 2 * 24_000  # under a second


# -- the fake's spoken turns --------------------------------------------------------------
def _audio(pcm: bytes) -> dict[str, object]:
    return {"type": "audio", "mime_type": "audio/wav",
            "data": base64.b64encode(wav_bytes(pcm, RATE)).decode()}


def test_the_fake_hears_speech_calls_a_function_then_answers_in_audio() -> None:
    store = InteractionStore()
    store.turn_scripts.append(ModelTurn(reply="Done: {result}",
                                        tool_calls=(("agent_status", {}),)))
    body = {"model": "m", "input": [_audio(silence(0.2) + tone(0.5))],
            "response_modalities": ["audio"]}
    first = store.create(body, 0.0)
    assert first.status == "requires_action" and first.turn is not None
    assert 480 <= first.turn.heard_ms <= 520
    (call,) = first.steps or []
    assert call["type"] == "function_call" and call["name"] == "agent_status"
    follow = {"model": "m", "previous_interaction_id": first.id,
              "response_modalities": ["audio"],
              "input": [{"type": "function_result", "call_id": call["id"], "result": "ok"}]}
    second = store.create(follow, 0.1)
    assert second.status == "completed" and second.turn is not None
    assert second.turn.reply == "Done: ok"
    (step,) = second.steps or []
    (block,) = step["content"]
    assert block["type"] == "audio" and block["sample_rate"] == 24_000


def test_the_fake_hears_silence_as_nothing() -> None:
    store = InteractionStore()
    item = store.create({"model": "m", "input": [_audio(silence(1.0))]}, 0.0)
    assert item.turn is not None and item.turn.heard_ms == 0
    assert item.steps == [{"type": "model_output",
                           "content": [{"type": "text", "text": "I did not hear anything."}]}]

"""The assistant's state (idle, listening, thinking, speaking) and its Home Assistant entity."""

from __future__ import annotations

import numpy as np

from daemon.audio.frontend import FrontEnd, FrontEndOptions
from daemon.audio.reference import FarEndTimeline
from daemon.audio.vad import SileroVad, StreamVad
from daemon.config import MqttSettings
from daemon.home.own_device import OwnDevice
from daemon.ops.metrics import Metrics
from tests.support.echo_room import place
from tests.support.speech import USER_TEXTS, USER_VOICE, speak, to_int16


def test_the_state_follows_the_conversation() -> None:
    fe = FrontEnd(FrontEndOptions(echo="off", hangover_ms=300), canceller=None,
                  vad=StreamVad(SileroVad()), timeline=FarEndTimeline())
    track, _ = place([speak(USER_TEXTS[1], USER_VOICE)], [0.5], 3.0)
    pcm = to_int16(track)
    seen = []
    for k in range(len(pcm) // 160):
        t = (k + 1) * 0.01
        fe.process(pcm[k * 160 : (k + 1) * 160], t, playing=False)
        seen.append(fe.assistant_state(t, playing=False))
    assert seen[0] == "idle"
    assert "listening" in seen
    assert seen[-1] == "thinking"  # the utterance ended, no answer yet
    assert fe.assistant_state(3.1, playing=True) == "speaking"
    fe.process(np.zeros(160, dtype=np.int16), 3.1, playing=True)
    assert fe.assistant_state(3.2, playing=False) == "idle"  # answered


def own(kind: str) -> OwnDevice:
    status = {"peripheral": {"kind": kind, "assistant": "speaking"}}
    return OwnDevice(MqttSettings(client_id="kiosk-1"), Metrics(), availability_topic="a",
                     held=lambda: "none", status_provider=lambda: status)


def test_a_kiosk_publishes_the_assistant_state_for_home_assistant() -> None:
    entity = next(e for e in own("kiosk").entities if e.object_id == "assistant_state")
    assert entity.component == "sensor"
    assert entity.value({"peripheral": {"kind": "kiosk", "assistant": "listening"}}) == "listening"
    # Muted, the front end may still say "listening" (a button held): nothing is heard.
    assert entity.value({"peripheral": {"kind": "kiosk", "assistant": "listening"},
                         "microphone_muted": True}) == "muted"
    assert not any(e.object_id == "assistant_state" for e in own("ble").entities)

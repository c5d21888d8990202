"""The Agent's media policy, with the real Live link (not connected) and a
stand-in camera peripheral: when frames go up, when audio is withheld."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from pydantic import SecretStr

from daemon.agent import LAST_TEXT_CHARS, Agent
from daemon.config import LiveSettings
from daemon.live.events import (
    InputTranscript,
    ModelAudio,
    OutputTranscript,
    TurnComplete,
)
from daemon.live.link import LiveLink
from daemon.live.uplink import UplinkBuffer
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore
from daemon.ops.switches import saved_switches
from daemon.tools.registry import ToolRegistry
from tests.support.agent import Camera, camera_agent, sent_frame

pytestmark = pytest.mark.timeout(20)

SPEECH = (np.sin(np.arange(640) / 3) * 8000).astype("<i2").tobytes()
QUIET = bytes(1280)


@pytest.fixture
async def agent() -> Agent:
    return camera_agent()


def test_frames_wait_for_the_user_to_talk(agent: Agent) -> None:
    agent.video(VideoFrame(b"idle", 0.0))
    assert sent_frame(agent) is None
    assert agent.metrics.value("edge_uplink_withheld_total", kind="video_idle") == 1
    agent.audio(AudioChunk(QUIET, 16_000, time.monotonic()))
    agent.video(VideoFrame(b"still idle", 0.0))
    assert sent_frame(agent) is None
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    agent.video(VideoFrame(b"talking", 0.0))
    assert sent_frame(agent) == b"talking"


def test_no_frames_while_the_model_speaks(agent: Agent) -> None:
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    agent._handle(ModelAudio(b"\0\0" * 100))  # noqa: SLF001 - a Live event handed in without a socket
    agent.video(VideoFrame(b"during reply", 0.0))
    assert sent_frame(agent) is None
    agent._handle(TurnComplete())  # noqa: SLF001 - a Live event handed in without a socket
    agent.link._uplink._next_video_at = None  # noqa: SLF001 - lifts the video rate limit; no public knob
    agent.video(VideoFrame(b"after reply", 0.0))
    assert sent_frame(agent) == b"after reply"


def test_camera_switch_and_mute_withhold_everything(agent: Agent) -> None:
    agent.set_camera_enabled(False)
    assert cast(Camera, agent.peripheral).camera_switch == [False]  # capture stops there too
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    agent.video(VideoFrame(b"x", 0.0))
    assert sent_frame(agent) is None
    agent.set_mic_muted(True)  # the chunk still waiting (no socket) is taken back
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    assert agent.link._uplink.audio_chunks == 0  # noqa: SLF001 - what would go up; no socket to read it from
    assert agent.metrics.value("edge_uplink_withheld_total", kind="audio") == 2


def test_a_switch_turned_off_takes_back_what_still_waits_to_go_up(agent: Agent) -> None:
    """Held through a reconnect, speech and a frame from before the switch never leave."""
    for _ in range(10):
        agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    agent.video(VideoFrame(b"before the switch", time.monotonic()))
    assert agent.camera_photo() == b"before the switch"
    agent.set_camera_enabled(False)
    agent.set_camera_enabled(True)
    assert sent_frame(agent) is None
    assert agent.camera_photo() is None  # a task started now gets no photo from before
    assert agent.metrics.value("edge_uplink_withheld_total", kind="video") == 1
    assert agent.link.replay_seconds == pytest.approx(0.4)
    agent.set_mic_muted(True)
    assert agent.link.replay_seconds == 0
    assert agent.metrics.value("edge_uplink_withheld_total", kind="audio") == 10


def test_a_frame_whose_send_fails_after_the_camera_went_off_is_not_put_back() -> None:
    ub = UplinkBuffer(10.0, 1.0)
    ub.offer_video(VideoFrame(b"on the wire", 0.0), 0.0)
    frame = ub.take_video()
    assert frame is not None
    ub.withdraw_video()  # the switch, while the send awaits the socket
    ub.restore_video(frame)  # the send failed
    assert ub.take_video() is None
    ub.offer_video(VideoFrame(b"after", 2.0), 2.0, force=True)
    frame = ub.take_video()
    assert frame is not None
    ub.restore_video(frame)  # a failed send with the camera on goes back as before
    assert ub.take_video() == frame


def test_no_look_tool_without_a_camera() -> None:
    class Microphone(Camera):
        @property
        def has_camera(self) -> bool:
            return False

    metrics = Metrics()
    link = LiveLink(LiveSettings(), SecretStr("k" * 20), metrics)
    agent = Agent(link, Microphone(), ToolRegistry(), metrics)
    assert "look" not in agent.registry.names()
    assert "agent_status" in agent.registry.names()


def test_peripheral_counters_reach_metrics(agent: Agent) -> None:
    agent.peripheral.status = lambda: {  # type: ignore[method-assign]
        "kind": "ble", "rssi": -61, "connected": True, "audio_framing": {"gaps": 3}}
    text = agent.metrics.render().decode()
    assert 'edge_peripheral_stat{key="audio_framing.gaps"} 3.0' in text
    assert 'edge_peripheral_stat{key="rssi"} -61.0' in text
    assert 'edge_peripheral_stat{key="connected"} 1.0' in text


class Recorder:
    """A conversation observer that writes down what the Agent tells it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def model_speaking(self, now: float) -> None:
        self.events.append(("speaking",))

    def model_acting(self, now: float) -> None:
        self.events.append(("acting",))

    def model_turn_done(self, now: float, playback_left: float) -> None:
        self.events.append(("done", playback_left))

    def model_interrupted(self, now: float) -> None:
        self.events.append(("interrupted",))

    def user_onset(self, at: float, trusted: bool) -> None:
        self.events.append(("onset", at, trusted))

    def user_words(self, text: str, finished: bool, now: float) -> None:
        self.events.append(("words", text, finished))

    def user_tap(self, at: float, trusted: bool) -> None:
        self.events.append(("tap", trusted))


def test_the_conversation_reaches_its_observers(agent: Agent) -> None:
    """Onsets come from the audio level after a quiet gap, with the device's trust."""
    rec = Recorder()
    agent.add_observer(rec)
    camera = cast(Camera, agent.peripheral)
    t = time.monotonic()
    agent.audio(AudioChunk(QUIET, 16_000, t))
    agent.audio(AudioChunk(SPEECH, 16_000, t + 0.02))  # onset
    agent.audio(AudioChunk(SPEECH, 16_000, t + 0.04))  # the same utterance
    agent.audio(AudioChunk(SPEECH, 16_000, t + 1.0))  # after a pause: a new one
    camera.trusted = False
    agent.audio(AudioChunk(SPEECH, 16_000, t + 2.0))
    agent.user_tap()
    agent._handle(InputTranscript("yes", True))  # noqa: SLF001 - a Live event handed in without a socket
    agent._handle(ModelAudio(b"\0\0" * 10))  # noqa: SLF001 - a Live event handed in without a socket
    agent._handle(TurnComplete())  # noqa: SLF001 - a Live event handed in without a socket
    assert rec.events == [
        ("onset", t + 0.02, True), ("onset", t + 1.0, True), ("onset", t + 2.0, False),
        ("tap", False), ("words", "yes", True), ("speaking",), ("done", 0.0),
    ]


async def test_a_bad_event_is_dropped_and_the_conversation_goes_on(agent: Agent) -> None:
    class Broken(Recorder):
        def user_words(self, text: str, finished: bool, now: float) -> None:
            raise ValueError("boom")

    agent.add_observer(Broken())
    pump = asyncio.create_task(agent._pump())  # noqa: SLF001 - the Agent's event pump alone, without run()'s link and peripheral
    try:
        await agent.link._events.put(InputTranscript("hello", True))  # noqa: SLF001 - events queued as the link would, without a socket
        await agent.link._events.put(OutputTranscript("Hi.", True))  # noqa: SLF001 - events queued as the link would, without a socket
        for _ in range(100):
            await asyncio.sleep(0.01)
            if agent.last_model_text:
                break
        assert agent.last_model_text == "Hi."
        assert not pump.done()
        assert agent.metrics.value(
            "edge_agent_event_errors_total", event="InputTranscript"
        ) == 1
    finally:
        pump.cancel()


def test_the_last_utterance_is_bounded_and_can_be_filtered(agent: Agent) -> None:
    agent.text_filter = lambda text: text.replace("4711", "####")
    for _ in range(5000):
        agent._handle(InputTranscript(" la", False))  # noqa: SLF001 - a Live event handed in without a socket
    assert len(agent.last_user_text) <= LAST_TEXT_CHARS
    agent._handle(TurnComplete())  # noqa: SLF001 - a Live event handed in without a socket
    agent._handle(InputTranscript("my pin is 4711", True))  # noqa: SLF001 - a Live event handed in without a socket
    assert agent.last_user_text == "my pin is ####"
    assert "last_user_text" not in agent.healthy()[1]


def test_switches_survive_a_restart_and_never_unmute(tmp_path: Path) -> None:
    """Muted and camera-off are written to the state directory and read back at start."""
    store = StateStore(tmp_path)
    metrics = Metrics()
    first = Agent(LiveLink(LiveSettings(), SecretStr("k" * 20), metrics), Camera(),
                  ToolRegistry(), metrics, state=store)
    assert not first.mic_muted and first.camera_enabled
    first.set_mic_muted(True)
    first.set_camera_enabled(False)
    metrics = Metrics()
    camera = Camera()
    again = Agent(LiveLink(LiveSettings(), SecretStr("k" * 20), metrics), camera,
                  ToolRegistry(), metrics, state=StateStore(tmp_path))
    assert again.mic_muted and not again.camera_enabled
    assert camera.camera_switch == [False]  # capture stops on the device too
    again.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    assert again.link._uplink.peek_audio() is None  # noqa: SLF001 - nothing leaves while muted (no socket to read it from)
    again.set_mic_muted(False)
    (tmp_path / "switches.json").write_text('{"microphone_muted": fal')  # a cut-off write
    for _start in range(2):  # and once more, the damaged copy kept aside
        metrics = Metrics()
        broken = Agent(LiveLink(LiveSettings(), SecretStr("k" * 20), metrics), Camera(),
                       ToolRegistry(), metrics, state=StateStore(tmp_path))
        # unreadable: maybe the user had switched them off, so they stay off
        assert broken.mic_muted and not broken.camera_enabled
    broken.set_mic_muted(False)  # the user switches the microphone on: a good record
    assert saved_switches(StateStore(tmp_path)) == (False, False)


def test_a_flood_of_the_same_switch_command_writes_the_record_once(tmp_path: Path) -> None:
    # Muting is always allowed over MQTT: each unchanged "mute" was two fsyncs.
    metrics = Metrics()
    agent = Agent(LiveLink(LiveSettings(), SecretStr("k" * 20), metrics), Camera(),
                  ToolRegistry(), metrics, state=StateStore(tmp_path))
    record = tmp_path / "switches.json"
    agent.set_mic_muted(True)
    written = record.stat().st_ino  # each save is a new file renamed into place
    for _ in range(50):
        agent.set_mic_muted(True)
        agent.set_camera_enabled(True)
    assert record.stat().st_ino == written
    agent.set_camera_enabled(False)
    assert record.stat().st_ino != written


def test_a_kiosk_gates_its_microphone_while_the_model_plays(agent: Agent) -> None:
    """No echo canceller yet: the model must not hear (or answer) its own voice."""
    camera = cast(Camera, agent.peripheral)
    camera.hears_own_speaker = True
    rec = Recorder()
    agent.add_observer(rec)
    camera.pending = 1.0
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    sent = agent.link._uplink.peek_audio()  # noqa: SLF001 - what would go up; no socket to read it from
    assert sent is not None and not any(sent.chunk.pcm)  # silence went up instead
    assert rec.events == []  # and no onset: nobody spoke
    assert agent.metrics.value("edge_uplink_withheld_total", kind="echo_gate") == 1


def test_a_pin_the_model_copied_into_a_task_is_hidden_from_the_status(agent: Agent) -> None:
    # background_task and its result are published to Home Assistant like the
    # transcripts; the model may copy a spoken PIN into a task's name or summary.
    from daemon.home.answers import redact_digits

    agent.text_filter = redact_digits
    agent.status_extras.append(lambda: {"background_task": "door code 7391: completed",
                                        "background_task_result": "The code is 7 3 9 1.",
                                        "road": "live"})
    status = agent.status()
    assert status["background_task"] == "door code ####: completed"
    assert status["background_task_result"] == "The code is # # # #."
    assert status["road"] == "live"

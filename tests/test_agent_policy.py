"""The Agent's media policy, with the real Live link (not connected) and a
stand-in camera peripheral: when frames go up, when audio is withheld."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np
import pytest
from pydantic import SecretStr

from daemon.agent import HEARD_FRAGMENTS, Agent
from daemon.config import LiveSettings
from daemon.live.events import (
    InputTranscript,
    ModelAudio,
    OutputTranscript,
    TurnComplete,
)
from daemon.live.link import LiveLink
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from daemon.peripherals.base import MediaSink, Peripheral
from daemon.tools.calls import FunctionCall
from daemon.tools.registry import ToolRegistry

pytestmark = pytest.mark.timeout(20)

SPEECH = (np.sin(np.arange(640) / 3) * 8000).astype("<i2").tobytes()
QUIET = bytes(1280)


class Camera(Peripheral):
    kind = "camera"

    def __init__(self) -> None:
        self.sink: MediaSink | None = None
        self.photos = 0
        self.camera_switch: list[bool] = []

    async def run(self, sink: MediaSink) -> None:
        self.sink = sink
        await asyncio.Future()

    @property
    def has_camera(self) -> bool:
        return True

    def set_camera_enabled(self, enabled: bool) -> None:
        self.camera_switch.append(enabled)

    async def take_photo(self) -> None:
        self.photos += 1
        assert self.sink is not None
        sink = self.sink
        asyncio.get_running_loop().call_later(0.05, sink.video, VideoFrame(b"photo", 0.0))

    def play(self, pcm: bytes, rate: int) -> None:
        pass

    def flush_playback(self) -> float:
        return 0.0


@pytest.fixture
async def agent() -> Agent:
    metrics = Metrics()
    link = LiveLink(LiveSettings(), SecretStr("k" * 20), metrics)
    agent = Agent(link, Camera(), ToolRegistry(), metrics)
    return agent


def sent_frame(agent: Agent) -> bytes | None:
    frame = agent.link._uplink.take_video()
    return None if frame is None else frame.jpeg


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
    agent._handle(ModelAudio(b"\0\0" * 100))
    agent.video(VideoFrame(b"during reply", 0.0))
    assert sent_frame(agent) is None
    agent._handle(TurnComplete())
    agent.link._uplink._next_video_at = None
    agent.video(VideoFrame(b"after reply", 0.0))
    assert sent_frame(agent) == b"after reply"


def test_camera_switch_and_mute_withhold_everything(agent: Agent) -> None:
    agent.set_camera_enabled(False)
    assert cast(Camera, agent.peripheral).camera_switch == [False]  # capture stops there too
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    agent.video(VideoFrame(b"x", 0.0))
    assert sent_frame(agent) is None
    agent.set_mic_muted(True)
    before = agent.link._uplink.audio_chunks
    agent.audio(AudioChunk(SPEECH, 16_000, time.monotonic()))
    assert agent.link._uplink.audio_chunks == before
    assert agent.metrics.value("edge_uplink_withheld_total", kind="audio") == 1


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


async def test_look_tool_sends_a_photo_even_when_idle(agent: Agent) -> None:
    assert "look" in agent.registry.names()
    results: list[Any] = []
    agent.dispatcher._respond = results.append  # type: ignore[method-assign]
    agent.link._expected_calls.add("c1")
    task = asyncio.create_task(agent.dispatcher.run())
    pump = asyncio.create_task(agent.peripheral.run(agent))
    await asyncio.sleep(0)
    agent.dispatcher.submit([FunctionCall("c1", "look", {})])
    async with asyncio.timeout(5):
        while not results:
            await asyncio.sleep(0.01)
    task.cancel()
    pump.cancel()
    assert "photo" in results[0].response["output"]
    assert sent_frame(agent) == b"photo"


def test_peripheral_counters_reach_metrics(agent: Agent) -> None:
    agent.peripheral.status = lambda: {  # type: ignore[method-assign]
        "kind": "ble", "rssi": -61, "connected": True, "audio_framing": {"gaps": 3}}
    text = agent.metrics.render().decode()
    assert 'edge_peripheral_stat{key="audio_framing.gaps"} 3.0' in text
    assert 'edge_peripheral_stat{key="rssi"} -61.0' in text
    assert 'edge_peripheral_stat{key="connected"} 1.0' in text


def issued(agent: Agent) -> float:
    """A token's issuance time: strictly after everything the Agent heard so far."""
    t = time.monotonic()
    while time.monotonic() == t:
        pass
    return t


def test_confirmation_needs_the_users_own_finished_yes_after_issuance(agent: Agent) -> None:
    agent._handle(InputTranscript(" Unlock the door,", False))
    agent._handle(InputTranscript(" yes.", True))  # part of the request: before the question
    since = issued(agent)
    assert agent.user_confirmed_since(since) is None
    agent._handle(OutputTranscript("Yes, confirmed. Unlock the front door?", True))
    agent._handle(InputTranscript("unlock the door", True))
    assert agent.user_confirmed_since(since) is None  # the model's yes is not the user's
    agent._handle(InputTranscript(" Ye", False))
    agent._handle(InputTranscript("s", False))
    assert agent.user_confirmed_since(since) is None  # still speaking
    agent._handle(ModelAudio(b"\0\0" * 10))  # the model answers: the utterance is over
    assert agent.user_confirmed_since(since) is True  # "Ye" + "s", joined
    assert agent.user_confirmed_since(issued(agent)) is None  # nothing since now


def test_a_no_vetoes_and_a_tap_confirms(agent: Agent) -> None:
    since = issued(agent)
    agent._handle(InputTranscript("Yes", True))
    agent._handle(InputTranscript(" no,", False))
    agent._handle(InputTranscript(" wait", False))  # unfinished, but a no is a no at once
    assert agent.user_confirmed_since(since) is False
    agent.user_tap()
    assert agent.user_confirmed_since(since) is False  # what was said since still counts
    later = issued(agent)
    assert agent.user_confirmed_since(later) is None
    agent.user_tap()
    assert agent.user_confirmed_since(later) is True
    agent._handle(TurnComplete())
    assert agent.metrics.value("edge_peripheral_taps_total") == 2


def test_words_lost_from_the_bounded_log_are_not_a_yes(agent: Agent) -> None:
    since = issued(agent)
    agent._handle(InputTranscript("no", True))
    for _ in range(HEARD_FRAGMENTS):
        agent._handle(InputTranscript(" la", False))
    agent._handle(InputTranscript(" yes", True))
    assert len(agent._heard) == HEARD_FRAGMENTS
    assert agent.user_confirmed_since(since) is None  # the "no" fell out: unknown, not yes
    assert agent.user_confirmed_since(issued(agent)) is None

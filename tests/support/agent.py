"""An Agent with the real Live link (not connected) and a stand-in camera peripheral."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import SecretStr

from daemon.agent import Agent
from daemon.config import LiveSettings
from daemon.live.link import LiveLink
from daemon.media.types import VideoFrame
from daemon.ops.metrics import Metrics
from daemon.peripherals.base import MediaSink, Peripheral
from daemon.tools.registry import ToolRegistry


class Camera(Peripheral):
    """Glasses with a camera whose photo arrives 50 ms after the command."""

    kind = "camera"

    def __init__(self) -> None:
        self.trusted = True
        self.pending = 0.0
        self.sink: MediaSink | None = None
        self.photos = 0
        self.camera_switch: list[bool] = []

    async def run(self, sink: MediaSink) -> None:
        self.sink = sink
        await asyncio.Future()

    @property
    def has_camera(self) -> bool:
        return True

    @property
    def input_trusted(self) -> bool:
        return self.trusted

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

    def playback_pending(self) -> float:
        return self.pending


def camera_agent(**kwargs: Any) -> Agent:
    """An Agent with the real Live link (never connected) and a `Camera`."""
    metrics = Metrics()
    link = LiveLink(LiveSettings(), SecretStr("k" * 20), metrics)
    return Agent(link, Camera(), ToolRegistry(), metrics, **kwargs)


def sent_frame(agent: Agent) -> bytes | None:
    """The frame waiting in the link's uplink (taken), or None."""
    frame = agent.link._uplink.take_video()  # noqa: SLF001 - what would go up; no socket to read it from
    return None if frame is None else frame.jpeg

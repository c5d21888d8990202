"""The Agent: wires a Peripheral, the Live link and the tools, and decides policy.

It is the one place that knows all three: media goes up, model audio goes to
the speaker, an interruption empties the speaker and makes pending tool
answers silent, tool calls go to the dispatcher and their answers go back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from daemon.home.confirm import spoken_answer
from daemon.live.events import (
    InputTranscript,
    Interrupted,
    LinkStatus,
    LiveEvent,
    ModelAudio,
    OutputTranscript,
    ToolCallCancelled,
    ToolCallRequest,
    TurnComplete,
    Usage,
)
from daemon.live.link import LiveLink
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from daemon.peripherals.base import CameraUnavailable, Peripheral
from daemon.tools.calls import FunctionCall
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import Tool, ToolError, ToolRegistry
from daemon.tools.status import status_tool

log = logging.getLogger(__name__)

SPEECH_RMS = 500  # of 32767: well above room noise, well below speech
SPEECH_HOLD_SECONDS = 3.0
LOOK_SECONDS = 4.0
LOOK_DESCRIPTION = (
    "Take a photo with the user's glasses camera now and see it. Use when the user asks "
    "about what they are looking at."
)

HEARD_FRAGMENTS = 256  # what the user said, fragment by fragment, for confirmations
HEARD_FRAGMENT_CHARS = 500

EventObserver = Callable[[LiveEvent], None]
CallObserver = Callable[[FunctionCall, str, dict[str, Any] | None], None]


class Agent:
    def __init__(
        self,
        link: LiveLink,
        peripheral: Peripheral,
        registry: ToolRegistry,
        metrics: Metrics,
        *,
        on_event: EventObserver | None = None,
        on_call: CallObserver | None = None,
    ) -> None:
        self.link = link
        self.peripheral = peripheral
        self.registry = registry
        self.metrics = metrics
        self._on_event = on_event
        self.dispatcher = ToolDispatcher(registry, metrics, link.send_tool_response, on_call)
        self.started_at = time.monotonic()
        self.last_activity = time.monotonic()
        self.input_done = False
        self.model_active = False
        self.last_user_text = ""
        self.last_model_text = ""
        self.usage = Usage()
        self.mic_muted = False
        self.camera_enabled = True
        self._user_words: list[str] = []
        self._model_words: list[str] = []
        self._model_turn_open = False
        self._last_speech_at = -1e9
        self._frame_wanted_until = 0.0
        self._frame_sent = asyncio.Event()
        self.last_tap_at = -1e9
        # (heard at, text, utterance number): the user's words for `user_confirmed_since`.
        self._heard: deque[tuple[float, str, int]] = deque(maxlen=HEARD_FRAGMENTS)
        self._heard_lost_at = -1e9  # newest fragment that fell out of `_heard`
        self._utterance = 0
        self._utterance_open = False
        metrics.add_status_source("peripheral", lambda: self.peripheral.status())
        registry.register(status_tool(self.status))
        if peripheral.has_camera:
            registry.register(look_tool(self._look))
        registry.add_listener(link.tools_changed)

    # -- MediaSink -------------------------------------------------------------
    def audio(self, chunk: AudioChunk) -> None:
        self.metrics.peripheral_audio.inc()
        if self.mic_muted:
            self.metrics.uplink_withheld.labels("audio").inc()
            return
        if _loud(chunk.pcm):
            self._last_speech_at = chunk.captured_at
        self.link.send_audio(chunk)

    def video(self, frame: VideoFrame) -> None:
        """Frames go up while the user talks and the model listens, or when asked for.

        The model hears all video in its turn coverage, so idle frames cost tokens
        and can prompt unwanted remarks.
        """
        self.metrics.peripheral_video.inc()
        if not self.camera_enabled:
            self.metrics.uplink_withheld.labels("video").inc()
            return
        now = time.monotonic()
        wanted = now < self._frame_wanted_until
        talking = now - self._last_speech_at < SPEECH_HOLD_SECONDS
        if not wanted and (self.model_active or not talking):
            self.metrics.uplink_withheld.labels("video_idle").inc()
            return
        self.link.send_video(frame, force=wanted)
        if wanted:
            self._frame_wanted_until = 0.0
            self._frame_sent.set()

    async def _look(self, _args: dict[str, Any]) -> str:
        """The `look` tool: take a photo now and send it, whatever the talk policy."""
        if not self.camera_enabled:
            raise ToolError("the user has switched the camera off")
        self._frame_sent = asyncio.Event()
        self._frame_wanted_until = time.monotonic() + LOOK_SECONDS
        try:
            await self.peripheral.take_photo()
        except CameraUnavailable as exc:
            self._frame_wanted_until = 0.0
            raise ToolError(str(exc)) from None
        try:
            async with asyncio.timeout(LOOK_SECONDS):
                await self._frame_sent.wait()
        except TimeoutError:
            raise ToolError("the camera did not deliver a photo in time") from None
        return "A photo from the user's glasses was just sent to you as video input."

    def set_mic_muted(self, muted: bool) -> None:
        """The user muted the microphone: nothing it hears leaves the device."""
        if muted and not self.mic_muted:
            self.link.end_audio_stream()
        self.mic_muted = muted

    def set_camera_enabled(self, enabled: bool) -> None:
        """The user's camera switch: frames are withheld here and capture stops there."""
        self.camera_enabled = enabled
        self.peripheral.set_camera_enabled(enabled)

    def input_paused(self) -> None:
        self.input_done = True
        self.link.end_audio_stream()

    def backlog_seconds(self) -> float:
        return self.link.replay_seconds

    def user_tap(self) -> None:
        self.last_tap_at = time.monotonic()
        self.metrics.peripheral_taps.inc()

    # -- the user's confirmation ------------------------------------------------
    def _heard_user(self, text: str, finished: bool) -> None:
        """Keep the user's words with the time they arrived, grouped in utterances."""
        if not self._utterance_open:
            self._utterance += 1
            self._utterance_open = True
        if len(self._heard) == self._heard.maxlen:
            self._heard_lost_at = self._heard[0][0]
        self._heard.append((time.monotonic(), text[:HEARD_FRAGMENT_CHARS], self._utterance))
        if finished:
            self._utterance_open = False

    def user_confirmed_since(self, since: float) -> bool | None:
        """Did the USER confirm after `since` (time.monotonic)? True yes, False no, None not yet.

        Yes: a tap on the glasses, or a finished utterance heard after `since` that says
        yes (daemon.home.confirm.spoken_answer). A no heard since then vetoes both. Only
        words that arrived after `since` count, joined across fragments; the request
        itself, the model's words and camera frames never do. If words since then were
        dropped from the bounded log, the answer is None: unknown is not yes.
        """
        if self._heard_lost_at > since:
            return None
        said: list[str] = []
        finished: list[str] = []
        last_utterance = None
        for at, text, utterance in self._heard:
            if at <= since:
                continue
            sep = "" if utterance == last_utterance else " "
            last_utterance = utterance
            said.append(sep + text)
            if utterance != self._utterance or not self._utterance_open:
                finished.append(sep + text)
        if spoken_answer("".join(said)) is False:
            return False
        if self.last_tap_at > since or spoken_answer("".join(finished)) is True:
            return True
        return None

    # -- running -----------------------------------------------------------------
    async def run(self, *, exit_when_idle: float | None = None) -> None:
        """Run until cancelled, or (demo) until input ended and all went quiet."""
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.dispatcher.run(), name="tools"),
                tg.create_task(self.link.run(), name="live-link"),
                tg.create_task(self._pump(), name="events"),
                tg.create_task(self.peripheral.run(self), name="peripheral"),
            ]
            if exit_when_idle is not None:
                await self._until_idle(exit_when_idle)
                for t in tasks:
                    t.cancel()

    async def _until_idle(self, quiet: float) -> None:
        while True:
            await asyncio.sleep(0.05)
            busy = (
                not self.input_done
                or self.model_active
                or self.dispatcher.in_flight
                or self.link.replay_seconds > 0
                or self.peripheral.playback_pending() > 0
            )
            if busy:
                self.last_activity = time.monotonic()
            elif time.monotonic() - self.last_activity >= quiet:
                return

    async def _pump(self) -> None:
        while True:
            event = await self.link.next_event()
            self._handle(event)
            if self._on_event is not None:
                self._on_event(event)

    def _handle(self, event: LiveEvent) -> None:
        self.last_activity = time.monotonic()
        match event:
            case ModelAudio(pcm=pcm, rate=rate):
                self._model_speaks()
                self.peripheral.play(pcm, rate)
                self.metrics.playback_seconds.inc(len(pcm) / (2 * rate))
            case Interrupted():
                self.model_active = False
                self._model_turn_open = False
                dropped = self.peripheral.flush_playback()
                if dropped:
                    self.metrics.playback_dropped.labels("interrupted").inc(dropped)
                self.dispatcher.mark_interrupted()
            case TurnComplete():
                self.model_active = False
                self._close_user_turn()
                self._model_turn_open = False
            case ToolCallRequest(calls=calls):
                self._close_user_turn()
                self.dispatcher.submit(calls)
            case ToolCallCancelled(ids=ids):
                self.dispatcher.cancel(ids)
            case InputTranscript(text=text, finished=finished):
                self._heard_user(text, finished)
                self._user_words.append(text)
                self.last_user_text = "".join(self._user_words).strip()
            case OutputTranscript(text=text):
                self._model_speaks()
                self._model_words.append(text)
                self.last_model_text = "".join(self._model_words).strip()
            case Usage():
                self.usage = event
                self.metrics.tokens.labels("prompt").inc(event.prompt_tokens)
                self.metrics.tokens.labels("response").inc(event.response_tokens)
            case LinkStatus(state="connected", resumed=False):
                self.model_active = False
            case _:
                pass

    def _close_user_turn(self) -> None:
        """The model answers: the user's words so far were one utterance."""
        self._user_words.clear()
        self._utterance_open = False

    def _model_speaks(self) -> None:
        self.model_active = True
        self._close_user_turn()
        if not self._model_turn_open:
            self._model_turn_open = True
            self._model_words.clear()

    def status(self) -> dict[str, Any]:
        """What the model (agent_status) and Home Assistant are told: scalars only;
        the peripheral's counters are in /metrics and /healthz."""
        full = self.peripheral.status()
        peripheral = {k: v for k, v in full.items() if not isinstance(v, dict | list)}
        out: dict[str, Any] = {
            "live_link": self.link.state,
            "sessions": self.link.session_count,
            "peripheral": peripheral,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "tool_calls_in_flight": self.dispatcher.in_flight,
            "replay_buffer_s": round(self.link.replay_seconds, 2),
            "microphone_muted": self.mic_muted,
            "camera_enabled": self.camera_enabled,
            "last_user_text": self.last_user_text,
            "last_model_text": self.last_model_text,
        }
        if "battery" in peripheral:
            out["battery_percent"] = peripheral["battery"]
        return out

    def healthy(self) -> tuple[bool, dict[str, Any]]:
        status = self.status()
        status["peripheral"] = self.peripheral.status()
        return self.link.state in ("connected", "connecting"), status


def look_tool(handler: Callable[[dict[str, Any]], Awaitable[str]]) -> Tool:
    """The `look` tool, offered when the peripheral has a camera."""
    return Tool("look", LOOK_DESCRIPTION, {"type": "object", "properties": {}}, handler,
                deadline=LOOK_SECONDS + 1)


def _loud(pcm: bytes) -> bool:
    """RMS at or above SPEECH_RMS; one dot product (np.mean costs 4x more per frame)."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    return bool(samples.size) and float(np.dot(samples, samples)) >= (
        SPEECH_RMS * SPEECH_RMS * samples.size
    )

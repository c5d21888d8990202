"""The Agent: wires a Peripheral, the Live link and the tools, and decides policy.

It is the one place that knows all three: media goes up, model audio goes to
the speaker, an interruption empties the speaker and makes pending tool
answers silent, tool calls go to the dispatcher and their answers go back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from typing_extensions import override

from daemon.live.calls import FunctionCall
from daemon.live.events import (
    InputTranscript,
    Interrupted,
    LinkStatus,
    LiveEvent,
    ModelAudio,
    OutputTranscript,
    TokenUsage,
    ToolCallCancelled,
    ToolCallRequest,
    TurnComplete,
)
from daemon.live.link import LiveLink
from daemon.media.held_sink import EarlyRun, HeldSink
from daemon.media.level import mean_square
from daemon.media.types import AudioChunk, VideoFrame
from daemon.ops.metrics import Metrics
from daemon.ops.state import StateStore
from daemon.ops.switches import SWITCHES, saved_switches
from daemon.peripherals.base import CameraUnavailable, MediaSink, Peripheral
from daemon.tools.dispatch import ToolDispatcher
from daemon.tools.registry import Tool, ToolError, ToolRegistry
from daemon.tools.status import status_tool

log = logging.getLogger(__name__)

SPEECH_RMS = 500  # of 32767: well above room noise, well below speech
ONSET_RMS = 300  # speech begins (the fake Live server's own end-of-speech level)
ONSET_GAP_SECONDS = 0.35  # quiet this long before a loud chunk: a new utterance begins
ECHO_TAIL_SECONDS = 0.3  # a speaker-in-the-room microphone stays gated this long after playback
SPEECH_HOLD_SECONDS = 3.0
LOOK_SECONDS = 4.0
PHOTO_MAX_AGE = 60.0  # an older frame is not "what the user is looking at" for a task
LOOK_DESCRIPTION = (
    "Take a photo with the user's glasses camera now and see it. Use when the user asks "
    "about what they are looking at."
)

LAST_TEXT_CHARS = 500  # the last utterance kept for agent_status and Home Assistant
_MODEL_WORDS = frozenset(("background_task", "background_task_result"))  # status texts

EventObserver = Callable[[LiveEvent], None]
CallObserver = Callable[[FunctionCall, str, dict[str, Any] | None], None]
TextFilter = Callable[[str], str]


class ConversationObserver(Protocol):
    """Who follows the turns of the conversation (daemon.home.consent.ConsentTracker).

    Times are time.monotonic(); `user_onset` gets the capture time of the first loud
    chunk after a quiet gap, `trusted` whether it came from the user's own device.
    """

    def model_speaking(self, now: float) -> None:
        """Model audio arrived: the model is talking."""

    def model_acting(self, now: float) -> None:
        """The model called a tool: it reacted to what the user said."""

    def model_turn_done(self, now: float, playback_left: float) -> None:
        """The model's turn is complete; its audio plays `playback_left` seconds more."""

    def model_interrupted(self, now: float) -> None:
        """The model was cut off (barge-in); its queued audio was dropped."""

    def user_onset(self, at: float, trusted: bool) -> None:
        """A loud chunk after a quiet gap: an utterance began at capture time `at`."""

    def user_words(self, text: str, finished: bool, now: float) -> None:
        """A fragment of the user's transcript; `finished` ends the utterance."""

    def user_tap(self, at: float, trusted: bool) -> None:
        """The user tapped the device at `at`."""

    def session_fresh(self, now: float) -> None:
        """A Live session began that did not resume: the model lost what was said."""


class Road(Protocol):
    """The fallback road (daemon.tasks.fallback.FallbackRoad), as the Agent feeds it."""

    @property
    def active(self) -> bool:
        """Whether microphone audio goes to it instead of the Live link."""
        ...

    def audio(self, chunk: AudioChunk) -> None:
        """Microphone audio while it is active."""

    def speech_ended(self) -> None:
        """The peripheral's own voice detector heard the end of speech."""

    def withhold_unsent(self) -> int:
        """The user muted: forget what was heard but not yet asked about."""
        ...


class Agent(MediaSink):
    """Runs one conversation: media up, the model's voice down, tool calls out, and the policy."""

    def __init__(
        self,
        link: LiveLink,
        peripheral: Peripheral,
        registry: ToolRegistry,
        metrics: Metrics,
        *,
        on_event: EventObserver | None = None,
        on_call: CallObserver | None = None,
        state: StateStore | None = None,
        early: EarlyRun | None = None,
    ) -> None:
        """`early`: the peripheral already started (the glasses connect while the SDK
        imports); its held media is handed to this Agent when it runs."""
        self.link = link
        self.peripheral = peripheral
        self._early = early
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
        self.usage = TokenUsage()
        self._state = state
        # The user's switches survive a restart: a restart never turns the microphone on.
        self.mic_muted, self.camera_enabled = saved_switches(state)
        if self.mic_muted or not self.camera_enabled:
            log.info("restored: microphone %s, camera %s",
                     "muted" if self.mic_muted else "on", "on" if self.camera_enabled else "off")
        self._user_text = ""
        self._model_text = ""
        self._observers: list[ConversationObserver] = []
        self.text_filter: TextFilter | None = None  # e.g. hides a spoken PIN
        self._echo_until = 0.0
        self._model_turn_open = False
        self._last_speech_at = -1e9
        self._last_voice_at = -1e9
        self._frame_wanted_until = 0.0
        self._frame_sent = asyncio.Event()
        self._last_frame: VideoFrame | None = None  # for a background task's photo
        # More of the status (the background tasks' newest state and result, for HA).
        self.status_extras: list[Callable[[], dict[str, Any]]] = []
        self.road: Road | None = None  # daemon.tasks.fallback, with [interactions] fallback
        self.last_tap_at = -1e9
        self._user_turn_open = False
        if not self.camera_enabled:
            peripheral.set_camera_enabled(False)
        metrics.add_status_source("peripheral", lambda: self.peripheral.status())
        self._overflow_counted = 0.0
        metrics.before_render(self._count_overflow)
        registry.register(status_tool(self.status))
        if peripheral.has_camera:
            registry.register(look_tool(self._look))
        registry.add_listener(link.tools_changed)

    # -- MediaSink -------------------------------------------------------------
    @override
    def audio(self, chunk: AudioChunk) -> None:
        """Microphone audio goes up: withheld while muted, zeroed while the speaker may echo."""
        self.metrics.peripheral_audio.inc()
        if self.mic_muted:
            self.metrics.uplink_withheld.labels("audio").inc()
            return
        if self.peripheral.hears_own_speaker and self._echo_gated():
            # No echo canceller yet: the model must not hear (or answer) its own voice.
            self.metrics.uplink_withheld.labels("echo_gate").inc()
            chunk = AudioChunk(bytes(len(chunk.pcm)), chunk.rate, chunk.captured_at)
        else:
            energy = mean_square(chunk.pcm)  # no numpy: glasses at 16 kHz never load it
            if energy >= ONSET_RMS * ONSET_RMS:
                if chunk.captured_at - self._last_voice_at > ONSET_GAP_SECONDS:
                    trusted = self.peripheral.input_trusted
                    for obs in self._observers:
                        obs.user_onset(chunk.captured_at, trusted)
                self._last_voice_at = chunk.captured_at
                if energy >= SPEECH_RMS * SPEECH_RMS:
                    self._last_speech_at = chunk.captured_at
        if self.road is not None and self.road.active:  # turn-based while Live is down
            self.road.audio(chunk)
            return
        self.link.send_audio(chunk)

    def _echo_gated(self) -> bool:
        now = time.monotonic()
        if self.peripheral.playback_pending() > 0:
            self._echo_until = now + ECHO_TAIL_SECONDS
        return now < self._echo_until

    @override
    def video(self, frame: VideoFrame) -> None:
        """Frames go up while the user talks and the model listens, or when asked for.

        The model hears all video in its turn coverage, so idle frames cost tokens
        and can prompt unwanted remarks.
        """
        self.metrics.peripheral_video.inc()
        if not self.camera_enabled:
            self.metrics.uplink_withheld.labels("video").inc()
            return
        self._last_frame = frame
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

    # -- background tasks (daemon.tasks: the Agent is their Conversation) ----------
    def quiet_for(self) -> float:
        """Seconds since the user or the model last spoke; 0 while either does, a call
        runs, the speaker plays or the link is down: when a task's result may be said."""
        if (self.model_active or self.dispatcher.in_flight or not self.link.connected
                or self.peripheral.playback_pending() > 0):
            return 0.0
        return max(0.0, time.monotonic() - max(self.last_activity, self._last_voice_at))

    def say(self, text: str) -> asyncio.Future[None]:
        """Give the model text to answer aloud; done once it is on the socket."""
        return self.link.send_text(text)

    def camera_photo(self) -> bytes | None:
        """The newest camera frame (JPEG) if it is recent, unless the camera is off."""
        frame = self._last_frame
        if frame is None or not self.camera_enabled \
                or time.monotonic() - frame.captured_at > PHOTO_MAX_AGE:
            return None
        return frame.jpeg

    def set_mic_muted(self, muted: bool) -> None:
        """The user muted the microphone: nothing it hears leaves the device."""
        if muted:  # also what waits from before (a reconnect, the fallback road's turns)
            self.link.withhold_unsent(audio=True)
            if self.road is not None and (n := self.road.withhold_unsent()):
                self.metrics.uplink_withheld.labels("fallback_utterance").inc(n)
        if muted and not self.mic_muted:
            self.link.end_audio_stream()
        changed = muted != self.mic_muted
        if changed:
            log.info("microphone %s", "muted" if muted else "on")
        self.mic_muted = muted
        if changed:  # a flood of "mute" over MQTT must not wear the SD card
            self._save_switches()

    def set_camera_enabled(self, enabled: bool) -> None:
        """The user's camera switch: frames are withheld here and capture stops there."""
        changed = enabled != self.camera_enabled
        if changed:
            log.info("camera %s", "on" if enabled else "off")
        self.camera_enabled = enabled
        self.peripheral.set_camera_enabled(enabled)
        if not enabled:  # no frame from before the switch goes up, nor into a task
            self.link.withhold_unsent(video=True)
            self._last_frame = None
            self._frame_wanted_until = 0.0
        if changed:
            self._save_switches()

    def _count_overflow(self) -> None:
        """The peripheral's playback overflow (seconds it could not queue) into the one
        counter of discarded model audio, beside what an interruption dropped."""
        playback = self.peripheral.status().get("playback")
        dropped = playback.get("dropped_seconds") if isinstance(playback, dict) else None
        total = dropped.get("overflow") if isinstance(dropped, dict) else None
        if isinstance(total, int | float) and total > self._overflow_counted:
            self.metrics.playback_dropped.labels("overflow").inc(total - self._overflow_counted)
            self._overflow_counted = float(total)

    def _save_switches(self) -> None:
        if self._state is not None:
            self._state.save(
                SWITCHES,
                {"microphone_muted": self.mic_muted, "camera_enabled": self.camera_enabled},
            )

    @override
    def input_paused(self) -> None:
        self.input_done = True
        self.link.end_audio_stream()

    @override
    def backlog_seconds(self) -> float:
        return self.link.replay_seconds

    @override
    def speech_ended(self) -> None:
        if self.road is not None and self.road.active:
            self.road.speech_ended()
            return
        self.link.end_audio_stream()

    @override
    def user_tap(self) -> None:
        self.last_tap_at = now = time.monotonic()
        self.metrics.peripheral_taps.inc()
        trusted = self.peripheral.input_trusted
        for obs in self._observers:
            obs.user_tap(now, trusted)

    def add_observer(self, observer: ConversationObserver) -> None:
        """Follow the conversation's turns (the home's confirmation of sensitive actions)."""
        self._observers.append(observer)

    def taps_possible(self) -> bool:
        """Whether the user can tap to confirm: a device with a tap source."""
        return self.peripheral.can_tap

    # -- running -----------------------------------------------------------------
    async def run(self, *, exit_when_idle: float | None = None) -> None:
        """Run until cancelled, or (demo) until input ended and all went quiet."""
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.dispatcher.run(), name="tools"),
                tg.create_task(self.link.run(), name="live-link"),
                tg.create_task(self._pump(), name="events"),
                tg.create_task(self._run_peripheral(), name="peripheral"),
            ]
            if exit_when_idle is not None:
                await self._until_idle(exit_when_idle)
                for t in tasks:
                    t.cancel()

    async def _run_peripheral(self) -> None:
        if self._early is not None:
            await self._early.join(self, on_attached=self._count_early_drops)
        else:
            await self.peripheral.run(self)

    def _count_early_drops(self, held: HeldSink) -> None:
        dropped = self.metrics.peripheral_dropped_before_start
        dropped.labels("media").inc(held.dropped)
        dropped.labels("tap").inc(held.taps_dropped)

    async def _until_idle(self, quiet: float) -> None:
        # Its own clock: marking `last_activity` while the input streams would tell
        # `quiet_for` the user never stops talking, and no task result could be said.
        idle_since = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            busy = (
                not self.input_done
                or self.model_active
                or self.dispatcher.in_flight
                or self.link.replay_seconds > 0
                or self.peripheral.playback_pending() > 0
            )
            now = time.monotonic()
            if busy:
                idle_since = now
            elif now - max(idle_since, self.last_activity) >= quiet:
                return

    async def _pump(self) -> None:
        while True:
            event = await self.link.next_event()
            try:
                self._handle(event)
                if self._on_event is not None:
                    self._on_event(event)
            except Exception:
                # One bad message must never end the conversation (the link validates
                # what it can; this is the last line).
                self.metrics.agent_event_errors.labels(type(event).__name__).inc()
                log.exception("handling a %s failed; dropped", type(event).__name__)

    def _handle(self, event: LiveEvent) -> None:
        self.last_activity = time.monotonic()
        match event:
            case ModelAudio(pcm=pcm, rate=rate):
                self._model_audio(pcm, rate)
            case Interrupted():
                self._interrupted()
            case TurnComplete():
                self._turn_complete()
            case ToolCallRequest(calls=calls):
                self._close_user_turn()
                for obs in self._observers:
                    obs.model_acting(time.monotonic())
                self.dispatcher.submit(calls)
            case ToolCallCancelled(ids=ids):
                self.dispatcher.cancel(ids)
            case InputTranscript(text=text, finished=finished):
                self._user_heard(text, finished)
            case OutputTranscript(text=text):
                self._model_speaks()
                self._model_text = _append(self._model_text, text)
                self.last_model_text = self._shown(self._model_text)  # it may say a PIN back
            case TokenUsage():
                self.usage = event
                self.metrics.tokens.labels("prompt").inc(event.prompt_tokens)
                self.metrics.tokens.labels("response").inc(event.response_tokens)
            case LinkStatus(state="connected", resumed=False):
                self.model_active = False
                for obs in self._observers:
                    obs.session_fresh(time.monotonic())
            case _:
                pass

    def _model_audio(self, pcm: bytes, rate: int) -> None:
        self._model_speaks()
        for obs in self._observers:
            obs.model_speaking(time.monotonic())
        self.peripheral.play(pcm, rate)
        self.metrics.playback_seconds.inc(len(pcm) / (2 * rate))

    def _interrupted(self) -> None:
        """Barge-in: the speaker is emptied and answers to running tool calls go silent."""
        self.model_active = False
        self._model_turn_open = False
        for obs in self._observers:
            obs.model_interrupted(time.monotonic())
        dropped = self.peripheral.flush_playback()
        if dropped:
            self.metrics.playback_dropped.labels("interrupted").inc(dropped)
        self.dispatcher.mark_interrupted()

    def _turn_complete(self) -> None:
        self.model_active = False
        self._close_user_turn()
        self._model_turn_open = False
        left = self.peripheral.playback_pending()
        for obs in self._observers:
            obs.model_turn_done(time.monotonic(), left)

    def _user_heard(self, text: str, finished: bool) -> None:
        """A transcript fragment: the first after the model answered starts a new utterance."""
        for obs in self._observers:
            obs.user_words(text, finished, time.monotonic())
        if not self._user_turn_open:
            self._user_turn_open = True
            self._user_text = ""
        self._user_text = _append(self._user_text, text)
        self.last_user_text = self._shown(self._user_text)

    def _close_user_turn(self) -> None:
        """The model answers: the user's words so far were one utterance."""
        self._user_turn_open = False

    def _model_speaks(self) -> None:
        self.model_active = True
        self._close_user_turn()
        if not self._model_turn_open:
            self._model_turn_open = True
            self._model_text = ""

    def _shown(self, text: str) -> str:
        text = text.strip()
        return self.text_filter(text) if self.text_filter is not None else text

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
        for extra in self.status_extras:
            for key, value in extra().items():
                # a task's name and summary are the model's words: a PIN it copied
                # into them is hidden as in the transcripts
                out[key] = (self._shown(value) if isinstance(value, str) and key in
                            _MODEL_WORDS else value)
        return out

    def healthy(self) -> tuple[bool, dict[str, Any]]:
        """Whether the user is served (the link up or coming up, or the fallback road
        answering while it is down), and the status /healthz shows (no conversation)."""
        status = self.status()
        for key in ("last_user_text", "last_model_text"):  # no conversation on /healthz
            status.pop(key, None)
        status["peripheral"] = self.peripheral.status()
        if self.link.problem is not None:  # e.g. a refusal being waited out, and until when
            status["live_problem"] = self.link.problem
        serving = self.road is not None and self.road.active
        return self.link.state in ("connected", "connecting") or serving, status


def look_tool(handler: Callable[[dict[str, Any]], Awaitable[str]]) -> Tool:
    """The `look` tool, offered when the peripheral has a camera."""
    return Tool("look", LOOK_DESCRIPTION, {"type": "object", "properties": {}}, handler,
                deadline=LOOK_SECONDS + 1)


def _append(text: str, piece: str) -> str:
    """Text grows by fragments but keeps only its last LAST_TEXT_CHARS: never quadratic."""
    text += piece[-LAST_TEXT_CHARS:]
    return text[-LAST_TEXT_CHARS:]

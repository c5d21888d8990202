"""The fallback road: turn-based through the Interactions API while the Live link is down.

`RoadMachine` decides the road from the link's state (hysteresis both ways).
On the fallback road the Agent hands microphone audio here instead of to the
link (nothing is left in the link's replay buffer to be answered twice); the
`UtteranceCutter` (or the peripheral's own voice detector, `speech_ended`)
cuts it; each utterance goes as WAV audio to `fallback_model`, continuing one
server-side conversation with `previous_interaction_id`. Function calls are
run locally through the same tools (a dispatcher of their own) and their
results sent back in a follow-up interaction; the answer is played: its audio
if the model spoke, else its text spoken by `tts_model`. An earcon (a falling
pair of tones) says the daemon took the fallback road, a rising one that Live
is back; then the fallback model summarises what was said and the summary goes
into the Live session as a text turn (a local note if the model cannot).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from daemon.config import InteractionsSettings
from daemon.live.calls import FunctionCall, ToolResponse
from daemon.media.earcon import EARCON_RATE, ROAD_FALLBACK, ROAD_LIVE, earcon
from daemon.media.types import AudioChunk
from daemon.tasks.client import (
    InteractionsClient,
    InteractionsError,
    Rejected,
    TurnReply,
    wav_bytes,
)
from daemon.tasks.metrics import FallbackMetrics
from daemon.tasks.road import Road, RoadMachine
from daemon.tasks.utterance import Utterance, UtteranceCutter

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.1  # how often the link's state is read
MAX_TOOL_HOPS = 4  # function-call rounds in one turn
MAX_QUEUED = 2  # utterances waiting for a turn; older ones are dropped
SUMMARY_TIMEOUT = 10.0
SYSTEM = (
    "You are a voice assistant on the user's glasses or kiosk, reached through a fallback "
    "channel while the live voice connection is down. The user's turns are audio. Answer "
    "briefly, in one or two spoken sentences, and use the tools when asked to act."
)
SUMMARY_PROMPT = (
    "Summarise this conversation so far for a colleague taking over, in at most 40 words: "
    "what the user asked, what was done, what is still open."
)
HANDOVER = (
    "The live voice connection was down for a while; meanwhile the user talked to a "
    "fallback assistant. What was said then: {summary} Carry on from there; if the user "
    "is silent, just say in a few words that the live connection is back."
)

ToolRunner = Callable[[Sequence[FunctionCall]], Awaitable[list[ToolResponse]]]


class LinkView(Protocol):
    """The Live link, as the road sees it."""

    @property
    def connected(self) -> bool:
        """Whether a Live session is up."""
        ...

    def send_text(self, text: str) -> Awaitable[None]:
        """A text turn for the Live model."""
        ...


class Speaker(Protocol):
    """Where answers and earcons are played (the peripheral)."""

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue an answer; never blocks."""

    def play_earcon(self, pcm: bytes, rate: int) -> None:
        """Queue a tone that is not an answer; never blocks."""


def road_earcon(*, live: bool) -> bytes:
    """Rising: the Live API is back; falling: the fallback road is taken."""
    return earcon(ROAD_LIVE if live else ROAD_FALLBACK, tone_s=0.12, gap_s=0.04, level=0.18)


class FallbackRoad:
    """Switches roads and runs the fallback turns (see the module)."""

    def __init__(self, settings: InteractionsSettings, client: InteractionsClient,
                 link: LinkView, speaker: Speaker, run_tools: ToolRunner,
                 declarations: Callable[[], list[dict[str, Any]]],
                 metrics: FallbackMetrics) -> None:
        self._s = settings
        self._client = client
        self._link = link
        self._speaker = speaker
        self._run_tools = run_tools
        self._declarations = declarations
        self._m = metrics
        self._machine = RoadMachine(settings.fallback_after, settings.fallback_return_after)
        self._cutter = UtteranceCutter()
        self._queue: deque[Utterance] = deque()
        self._wake = asyncio.Event()
        self._busy = False
        self.previous_id: str | None = None  # the server-side conversation, kept across spells
        self._spell_turns = 0  # turns since the fallback road was last taken
        self._notes: list[str] = []  # what to hand over if the model cannot summarise
        self.turns = 0
        self.last_overhead: float | None = None  # seconds of our own, last turn (bench)
        self.last_answer: float | None = None  # end of utterance to answer audio, last turn

    # -- the Agent's side ------------------------------------------------------------
    @property
    def active(self) -> bool:
        """On the fallback road: microphone audio comes here, not to the link."""
        return self._machine.road == "fallback"

    @property
    def road(self) -> Road:
        """"live" or "fallback"."""
        return self._machine.road

    def audio(self, chunk: AudioChunk) -> None:
        """Microphone audio on the fallback road."""
        utt = self._cutter.feed(chunk.pcm, time.monotonic())
        if utt is not None:
            self._utterance(utt)

    def speech_ended(self) -> None:
        """The peripheral's voice detector heard the end of speech."""
        utt = self._cutter.end_now(time.monotonic())
        if utt is not None:
            self._utterance(utt)

    def withhold_unsent(self) -> int:
        """The user muted: the utterance being heard and those queued for a turn are
        forgotten (one already asked about has left); returns how many were queued."""
        n = len(self._queue)
        self._queue.clear()
        self._cutter.reset()
        return n

    def status(self) -> dict[str, Any]:
        """For /healthz, agent_status and Home Assistant."""
        return {"road": self.road, "fallback_turns": self.turns}

    # -- running ---------------------------------------------------------------------
    async def run(self) -> None:
        """Watch the link and run the turns until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._turns(), name="fallback-turns")
            while True:
                changed = self._machine.update(time.monotonic(), self._link.connected,
                                               busy=self._busy or bool(self._queue))
                if changed == "fallback":
                    self._enter()
                elif changed == "live":
                    tg.create_task(self._leave(), name="fallback-handover")
                await asyncio.sleep(WATCH_SECONDS)

    def _enter(self) -> None:
        log.warning("Live link down for %.0f s: taking the fallback road (%s)",
                    self._s.fallback_after, self._s.fallback_model)
        self._m.switches.labels("fallback").inc()
        self._m.road.set(1)
        self._client.prepare()  # the SDK's interactions part, now rather than mid-turn
        self._cutter.reset()
        self._spell_turns = 0
        self._notes = []
        self._speaker.play_earcon(road_earcon(live=False), EARCON_RATE)

    async def _leave(self) -> None:
        log.info("Live link back: leaving the fallback road after %d turns", self._spell_turns)
        self._m.switches.labels("live").inc()
        self._m.road.set(0)
        self._cutter.reset()
        self._queue.clear()
        self._speaker.play_earcon(road_earcon(live=True), EARCON_RATE)
        if self._spell_turns == 0:
            self._m.summaries.labels("none").inc()
            return
        summary, how = await self._summary()
        self._m.summaries.labels(how).inc()
        await self._link.send_text(HANDOVER.format(summary=summary))

    async def _summary(self) -> tuple[str, str]:
        """The model's own summary of the spell, else the local notes."""
        if self.previous_id is not None:
            try:
                async with asyncio.timeout(SUMMARY_TIMEOUT):
                    reply = await self._client.model_turn(
                        [{"type": "text", "text": SUMMARY_PROMPT}], tools=[],
                        previous_interaction_id=self.previous_id, system=SYSTEM)
                if reply.text.strip():
                    return reply.text.strip(), "model"
            except (InteractionsError, TimeoutError) as exc:
                log.warning("fallback summary failed (%s); handing over local notes", exc)
        return " ".join(self._notes)[-600:] or "(nothing could be recorded)", "local"

    def _utterance(self, utt: Utterance) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self._m.utterances_dropped.inc()
        self._queue.append(utt)
        self._wake.set()

    async def _turns(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                utt = self._queue.popleft()
                self._busy = True
                try:
                    outcome = await self._turn(utt)
                except Exception as exc:  # a reply no check foresaw: that turn, not the road
                    log.warning("fallback turn failed: %s", type(exc).__name__)
                    outcome = "error"
                finally:
                    self._busy = False
                self._m.turns.labels(outcome).inc()

    async def _turn(self, utt: Utterance) -> str:
        """One utterance answered; the outcome for the metric."""
        waited = 0.0  # time spent waiting for the service: not our overhead
        audio = {"type": "audio", "mime_type": "audio/wav",
                 "data": _b64(wav_bytes(utt.pcm, utt.rate))}
        try:
            async with asyncio.timeout(self._s.fallback_turn_timeout):
                t = time.monotonic()
                reply = await self._ask([audio], self.previous_id)
                waited += time.monotonic() - t
                for _ in range(MAX_TOOL_HOPS):
                    if not reply.calls:
                        break
                    results = await self._tools(reply.calls)
                    t = time.monotonic()
                    reply = await self._ask(results, reply.id)
                    waited += time.monotonic() - t
                if reply.calls:  # still calling at the cap: the service waits on those calls,
                    log.warning("fallback turn stopped after %d rounds of tool calls",
                                MAX_TOOL_HOPS)  # and would refuse to go on from there
                    return "tool_limit"
                self.previous_id = reply.id
                if reply.text:
                    self._notes.append(f"Assistant said: {reply.text.strip()}")
                if not reply.pcm and reply.text.strip():
                    t = time.monotonic()
                    reply = await self._client.speak(reply.text.strip())
                    waited += time.monotonic() - t
        except TimeoutError:
            log.warning("fallback turn took over %.0f s; dropped", self._s.fallback_turn_timeout)
            return "timeout"
        except InteractionsError as exc:
            log.warning("fallback turn failed: %s", exc)
            return "error"
        if not reply.pcm:
            return "no_answer"
        self._speaker.play(reply.pcm, reply.rate)
        total = time.monotonic() - utt.ended_at
        self.last_answer, self.last_overhead = total, max(0.0, total - waited)
        self._m.answer_seconds.observe(total)
        self._m.overhead_seconds.observe(self.last_overhead)
        self.turns += 1
        self._spell_turns += 1
        return "ok"

    async def _ask(self, input_: list[dict[str, Any]], previous: str | None) -> TurnReply:
        try:
            return await self._client.model_turn(input_, tools=self._declarations(),
                                                 previous_interaction_id=previous, system=SYSTEM)
        except Rejected as exc:
            # 404: the service forgot the conversation; 400: it cannot go on from there
            # (an interaction left waiting on calls). Either way: start anew, once.
            if previous is None or previous != self.previous_id or exc.status not in (400, 404):
                raise
            log.warning("the fallback conversation cannot go on on the service (HTTP %d); "
                        "starting anew", exc.status)
            self.previous_id = None
            return await self._client.model_turn(input_, tools=self._declarations(),
                                                 previous_interaction_id=None, system=SYSTEM)

    async def _tools(self, calls: Sequence[FunctionCall]) -> list[dict[str, Any]]:
        """Run the calls through the daemon's tools; their results as function_result steps."""
        responses = {r.id: r for r in await self._run_tools(calls)}
        out: list[dict[str, Any]] = []
        for call in calls:
            resp = responses.get(call.id)
            body = resp.response if resp is not None else {"error": "no answer"}
            failed = "error" in body
            self._m.tool_calls.labels("error" if failed else "ok").inc()
            self._notes.append(f"Tool {call.name}({_short(call.args)}) -> {_short(body)}")
            out.append({"type": "function_result", "call_id": call.id, "name": call.name,
                        "result": _short(body, 4000), "is_error": failed})
        return out


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _short(value: Any, limit: int = 200) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"

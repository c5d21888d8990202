"""A fallback turn whose model still calls tools at the cap of rounds ends there, and
the conversation goes on from the last completed interaction: the service (the fake's
store, as the real one) refuses to go on from one still waiting on calls (HTTP 400),
and a conversation it cannot go on from is started anew rather than failing every
later turn (review of 2026-12-06). The road runs for real against the fake's store; the
client's HTTP is a stand-in that calls the store directly."""
from __future__ import annotations

import math
from array import array
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.config import InteractionsSettings
from daemon.live.calls import FunctionCall, ToolResponse
from daemon.tasks.client import Rejected, TurnReply
from daemon.tasks.fallback import FallbackRoad
from daemon.tasks.metrics import FallbackMetrics
from daemon.tasks.utterance import Utterance
from simulator.interactions import turns
from simulator.interactions.store import ApiError, InteractionStore, TurnState
from simulator.interactions.turns import ModelTurn


class LoopingStore(InteractionStore):
    """A model that answers every function result with another call (a confused model)."""

    def _model_turn(self, item: Any, now: float) -> bool:
        if turns.function_results(item.body.get("input")) and self.keep_calling:
            state = TurnState(ModelTurn(reply="x", tool_calls=(("agent_status", {}),)), 0)
            item.turn = state
            item.steps = turns.call_steps(state, next(self._call_ids))
            item.status = "requires_action"
            return True
        return super()._model_turn(item, now)


class StoreClient:
    def __init__(self, store: LoopingStore) -> None:
        self.store = store

    async def model_turn(self, input_: list[dict[str, Any]], *, tools: Any,
                         previous_interaction_id: str | None, system: str) -> TurnReply:
        body = {"model": "m", "input": input_, "response_modalities": ["text"]}
        if previous_interaction_id is not None:
            body["previous_interaction_id"] = previous_interaction_id
        try:
            item = self.store.create(body, 0.0)
        except ApiError as exc:
            raise Rejected(f"create: HTTP {exc.status}: {exc}", exc.status) from None
        calls = tuple(FunctionCall(s["id"], s["name"], s["arguments"])
                      for s in item.steps or [] if s["type"] == "function_call")
        text = " ".join(c.get("text", "") for s in item.steps or [] if s["type"] == "model_output"
                        for c in s["content"] if c.get("type") == "text")
        return TurnReply(item.id, item.status, calls, text, b"", 0)

    async def speak(self, text: str) -> TurnReply:
        return TurnReply("tts", "completed", (), "", b"\0\0" * 100, 24_000)


class Link:
    connected = False

    async def send_text(self, text: str) -> None: ...


class Speaker:
    def play(self, pcm: bytes, rate: int) -> None: ...
    def play_earcon(self, pcm: bytes, rate: int) -> None: ...


def speech() -> Utterance:
    pcm = array("h", (int(6000 * math.sin(2 * math.pi * 300 * i / 16000))
                      for i in range(8000))).tobytes()
    return Utterance(pcm, 16_000, 0.0)


def road_on(store: LoopingStore) -> FallbackRoad:
    async def run_tools(calls: Any) -> list[ToolResponse]:
        return [ToolResponse(c.id, c.name, {"ok": True}) for c in calls]

    return FallbackRoad(InteractionsSettings(fallback=True), StoreClient(store), Link(),  # type: ignore[arg-type]
                        Speaker(), run_tools, list, FallbackMetrics(CollectorRegistry()))


async def test_a_turn_at_the_tool_call_cap_ends_and_the_next_turns_still_work() -> None:
    store = LoopingStore()
    store.keep_calling = True
    store.turn_scripts.append(ModelTurn(reply="x", tool_calls=(("agent_status", {}),)))
    road = road_on(store)
    assert await road._turn(speech()) == "tool_limit"  # noqa: SLF001 - one turn, no timing
    assert road.previous_id is None  # not the interaction left waiting on calls
    store.keep_calling = False  # the model behaves again
    assert [await road._turn(speech()) for _ in range(3)] == ["ok", "ok", "ok"]  # noqa: SLF001


async def test_a_conversation_the_service_cannot_go_on_from_is_started_anew() -> None:
    store = LoopingStore()
    store.keep_calling = True
    store.turn_scripts.append(ModelTurn(reply="x", tool_calls=(("agent_status", {}),)))
    road = road_on(store)
    client = road._client  # noqa: SLF001 - the interaction a capped turn used to leave
    done = await client.model_turn([{"type": "text", "text": "what is on?"}], tools=[],
                                   previous_interaction_id=None, system="")
    waiting = await client.model_turn(
        [{"type": "function_result", "call_id": "c1", "name": "agent_status", "result": "{}",
          "is_error": False}], tools=[], previous_interaction_id=done.id, system="")
    assert waiting.status == "requires_action"
    road.previous_id = waiting.id  # as an older daemon's capped turn left it
    store.keep_calling = False
    assert await road._turn(speech()) == "ok"  # noqa: SLF001 - one turn, no timing
    assert road.previous_id is not None and road.previous_id != waiting.id

"""The fake's interactions and their lives: pure, with time passed in.

A background interaction follows its :class:`TaskScript`: it is ``in_progress``
until its duration has passed (seen lazily, at the next read) or, with no
duration, until a test calls :meth:`InteractionStore.finish`; then it is
``completed`` (an answer conforming to the requested schema) or ``failed``
(with ``errors``). ``cancel`` ends an unfinished one as ``cancelled``.
``previous_interaction_id`` must name a completed interaction, as the service
requires for a continuation.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from daemon.errors import EdgeAgentError
from simulator.interactions import schema_fill, turns
from simulator.interactions.turns import ModelTurn, TurnState

TERMINAL = frozenset({"completed", "failed", "cancelled"})


class Outcome(StrEnum):
    """How a scripted interaction ends."""

    COMPLETE = "complete"
    FAIL = "fail"


@dataclass(frozen=True)
class TaskScript:
    """What the next interaction does.

    duration_s: how long it runs; None = until :meth:`InteractionStore.finish`.
    answer: a fixed answer (returned verbatim, valid or not, to test a client's
        checks); None = one generated from the request's schema.
    transient_errors: the first N reads of it answer 503 (a flaky backend).
    """

    duration_s: float | None = 0.2
    outcome: Outcome = Outcome.COMPLETE
    answer: Any = None
    error_message: str = "The agent could not complete the research."
    transient_errors: int = 0


class ApiError(EdgeAgentError):
    """A request the service refuses: HTTP ``status`` and Google's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StoredInteraction:
    """One interaction as the fake holds it."""

    id: str
    created_at: float
    created_iso: str
    body: dict[str, Any]
    script: TaskScript
    status: str = "in_progress"
    finished_at: float | None = None
    answer_text: str | None = None
    error: str | None = None
    reads: int = 0
    transient_left: int = 0
    turn: TurnState | None = None  # a spoken turn (simulator.interactions.turns)
    steps: list[dict[str, Any]] | None = None  # a foreground model turn's output

    @property
    def background(self) -> bool:
        """Whether the client asked for a background run."""
        return bool(self.body.get("background"))

    @property
    def previous_interaction_id(self) -> str | None:
        """The interaction this one continues."""
        prev = self.body.get("previous_interaction_id")
        return prev if isinstance(prev, str) else None


@dataclass
class InteractionStore:
    """Every interaction by id, and the scripts the next ones will follow."""

    default_script: TaskScript = field(default_factory=TaskScript)
    interactions: dict[str, StoredInteraction] = field(default_factory=dict)
    deleted: dict[str, StoredInteraction] = field(default_factory=dict)  # as they ended
    _scripts: deque[TaskScript] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    turn_scripts: deque[ModelTurn] = field(default_factory=deque)
    _call_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def queue(self, *scripts: TaskScript) -> None:
        """The next ``len(scripts)`` creations follow these, in order."""
        self._scripts.extend(scripts)

    def create(self, body: Any, now: float) -> StoredInteraction:
        """Check a create request and store the new interaction."""
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object.")
        _check_target(body)
        if body.get("input") in (None, "", []):
            raise ApiError(400, "input is required.")
        _check_format(body)
        prev = body.get("previous_interaction_id")
        if prev is not None:
            self._check_previous(prev, now, turns.function_results(body.get("input")))
        script = self._scripts.popleft() if self._scripts else self.default_script
        ident = f"v1_fake{next(self._ids):06d}"
        iso = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        item = StoredInteraction(ident, now, iso, dict(body), script,
                                 transient_left=script.transient_errors)
        self.interactions[ident] = item
        if not item.background and not self._model_turn(item, now):
            self._settle(item, now)  # a foreground call returns its answer
        return item

    def _model_turn(self, item: StoredInteraction, now: float) -> bool:
        """A spoken turn, its function results, TTS or a summary; False if none of these."""
        body = item.body
        value = body.get("input")
        results = turns.function_results(value)
        blocks = turns.audio_blocks(value)
        prev = self.interactions.get(item.previous_interaction_id or "")
        if results and prev is not None and prev.turn is not None:
            missing = set(prev.turn.call_ids) - {str(r.get("call_id")) for r in results}
            if missing:
                raise ApiError(400, f"Missing function results for {sorted(missing)}.")
            state = TurnState(prev.turn.script, 0, reply=turns.reply_with(prev.turn.script,
                                                                            results))
            item.turn = state
            item.steps = [turns.answer_step(state.reply, body, state.script.audio_ms)]
        elif blocks:
            heard = sum(turns.heard_ms(b) for b in blocks)
            script = self.turn_scripts.popleft() if heard and self.turn_scripts else ModelTurn(
                reply="I heard you." if heard else "I did not hear anything.")
            state = TurnState(script, heard)
            item.turn = state
            if script.tool_calls and heard:
                item.steps = turns.call_steps(state, next(self._call_ids))
                for _ in script.tool_calls[1:]:
                    next(self._call_ids)
                item.status = "requires_action"
                return True
            state.reply = script.reply
            item.steps = [turns.answer_step(script.reply, body, script.audio_ms)]
        elif turns.wants_audio(body):  # text to speech
            item.steps = [turns.answer_step(input_text(value), body)]
        elif prev is not None and (prev.turn is not None or prev.steps is not None):
            said = [t.turn.reply for t in self._chain(prev) if t.turn and t.turn.reply]
            item.steps = [turns.answer_step("Earlier: " + " ".join(said), body)]
        else:
            return False
        item.status, item.finished_at = "completed", now
        return True

    def _chain(self, item: StoredInteraction) -> list[StoredInteraction]:
        """The interaction and every one it continues, oldest first."""
        out: list[StoredInteraction] = []
        node: StoredInteraction | None = item
        while node is not None and len(out) < 1000:
            out.append(node)
            node = self.interactions.get(node.previous_interaction_id or "")
        return out[::-1]

    def read(self, ident: str, now: float) -> StoredInteraction:
        """The interaction as it is at ``now`` (ApiError 404 if unknown or deleted)."""
        item = self._find(ident)
        item.reads += 1
        if item.transient_left > 0:
            item.transient_left -= 1
            raise ApiError(503, "The service is currently unavailable.")
        self._advance(item, now)
        return item

    def cancel(self, ident: str, now: float) -> StoredInteraction:
        """End an unfinished background interaction as cancelled."""
        item = self._find(ident)
        self._advance(item, now)
        if item.status in TERMINAL:
            raise ApiError(400, f"Interaction is already {item.status}; it cannot be cancelled.")
        item.status = "cancelled"
        item.finished_at = now
        return item

    def delete(self, ident: str) -> None:
        """Forget an interaction (ApiError 404 if unknown)."""
        self._find(ident)
        self.deleted[ident] = self.interactions.pop(ident)

    def finish(self, ident: str, now: float, outcome: Outcome | None = None) -> None:
        """End a held (or any unfinished) interaction now, as scripted or as ``outcome``."""
        item = self._find(ident)
        if item.status not in TERMINAL:
            self._settle(item, now, outcome)

    def _find(self, ident: str) -> StoredInteraction:
        item = self.interactions.get(ident)
        if item is None:
            raise ApiError(404, f"Interaction {ident} not found.")
        return item

    def _check_previous(self, prev: Any, now: float, results: list[Any]) -> None:
        if not isinstance(prev, str) or prev not in self.interactions:
            raise ApiError(404, f"Previous interaction {prev} not found.")
        before = self.interactions[prev]
        self._advance(before, now)
        if before.status != "completed" and not (results and before.status == "requires_action"):
            raise ApiError(400, f"Previous interaction {prev} is {before.status}, "
                                "not completed.")

    def _advance(self, item: StoredInteraction, now: float) -> None:
        duration = item.script.duration_s
        if item.status == "in_progress" and duration is not None \
                and now >= item.created_at + duration:
            self._settle(item, now)

    def _settle(self, item: StoredInteraction, now: float, outcome: Outcome | None = None) -> None:
        item.finished_at = now
        if (outcome or item.script.outcome) is Outcome.FAIL:
            item.status = "failed"
            item.error = item.script.error_message
            return
        item.status = "completed"
        item.answer_text = self._answer(item)

    def _answer(self, item: StoredInteraction) -> str:
        if item.script.answer is not None:
            answer = item.script.answer
            return answer if isinstance(answer, str) else json.dumps(answer)
        topic = input_text(item.body.get("input"))
        prev = item.previous_interaction_id
        if prev is not None and prev in self.interactions:
            earlier = input_text(self.interactions[prev].body.get("input"))
            topic = f"{topic} (following up on: {earlier})"
        schema = response_schema(item.body)
        if schema is None:
            return f"Here is what I found about {topic}."
        return json.dumps(schema_fill.fill(schema, topic))


def _check_target(body: dict[str, Any]) -> None:
    has_model, has_agent = bool(body.get("model")), bool(body.get("agent"))
    if has_model == has_agent:
        raise ApiError(400, "Exactly one of model or agent must be set.")
    if has_agent and not body.get("background"):
        raise ApiError(400, "Agent interactions must run in the background (background=true).")


def _check_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if isinstance(fmt, dict) and fmt.get("type") == "text":
        if "schema" in fmt and fmt.get("mime_type") != "application/json":
            raise ApiError(400, "response_format.schema needs mime_type application/json.")
    elif body.get("response_mime_type") != "application/json":
        raise ApiError(400, "response_mime_type application/json is required with "
                            "response_format.")
    schema = response_schema(body)
    if schema is not None:
        try:
            schema_fill.check_schema(schema)
        except schema_fill.SchemaError as exc:
            raise ApiError(400, str(exc)) from None


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a create body asks the answer to follow (either spelling)."""
    fmt = body.get("response_format")
    if isinstance(fmt, list):
        fmt = next((f for f in fmt if isinstance(f, dict) and f.get("type") == "text"), None)
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "text":
        schema = fmt.get("schema")
        return schema if isinstance(schema, dict) else None
    return fmt


def input_text(value: Any) -> str:
    """The text parts of an ``input`` (a string, content list or steps), joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("type") == "text":
            return str(value.get("text", ""))
        return input_text(value.get("content"))
    if isinstance(value, list):
        return " ".join(t for t in (input_text(v) for v in value) if t)
    return ""


def to_json(item: StoredInteraction) -> dict[str, Any]:
    """The interaction resource as the service returns it."""
    body = item.body
    out: dict[str, Any] = {"id": item.id, "status": item.status,
                           "created": item.created_iso, "updated": item.created_iso}
    for key in ("agent", "model", "previous_interaction_id", "response_format",
                "response_mime_type"):
        if body.get(key) is not None:
            out[key] = body[key]
    if item.steps is not None:
        out["steps"] = item.steps
    elif item.status == "completed" and item.answer_text is not None:
        out["steps"] = [{"type": "model_output",
                         "content": [{"type": "text", "text": item.answer_text}]}]
        out["usage"] = {"total_input_tokens": 12, "total_output_tokens": 48,
                        "total_tokens": 60}
    if item.status == "failed":
        out["errors"] = [{"code": "https://example.org/errors/agent-failed",
                          "message": item.error or "failed"}]
    return out

"""The fake Interactions service's pure parts: HTTP heads, the interactions' lives,
and answers that conform to a response schema.

Served on the fake Live port and driven by the real SDK over TLS:
tests/integration/test_background_tasks.py.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from daemon.tasks.result import RESULT_SCHEMA
from simulator.interactions import ApiError, InteractionStore, Outcome, TaskScript
from simulator.interactions.http import (
    HttpError,
    HttpResponse,
    content_length,
    parse_head,
    path_of,
    render,
)
from simulator.interactions.schema_fill import SchemaError, check_schema, fill
from simulator.interactions.store import input_text, response_schema, to_json

AGENT = "deep-research-pro-preview-12-2025"
FORMAT = {"type": "text", "mime_type": "application/json", "schema": RESULT_SCHEMA}


def _body(**extra: Any) -> dict[str, Any]:
    return {"agent": AGENT, "input": "heat pumps for a 1930s house", "background": True,
            **extra}


# -- HTTP ------------------------------------------------------------------------


def test_head_is_parsed_with_lower_case_headers_and_query() -> None:
    req = parse_head(b"GET /v1beta/interactions/v1_x?stream=false HTTP/1.1\r\n"
                     b"Host: h\r\nX-Goog-Api-Key: k\r\n\r\n")
    assert (req.method, req.path) == ("GET", "/v1beta/interactions/v1_x")
    assert req.query == {"stream": ["false"]}
    assert req.headers["x-goog-api-key"] == "k"
    assert path_of(b"POST /v1beta/interactions HTTP/1.1\r\n") == "/v1beta/interactions"
    assert path_of(b"garbage") == ""


@pytest.mark.parametrize("head", [b"GET /\r\n\r\n", b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
                                  b"GET / SPDY/3\r\n\r\n"])
def test_malformed_heads_are_400(head: bytes) -> None:
    with pytest.raises(HttpError) as err:
        parse_head(head)
    assert err.value.status == 400


def test_chunked_bodies_and_bad_lengths_are_refused() -> None:
    with pytest.raises(HttpError) as err:
        parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert err.value.status == 411
    with pytest.raises(HttpError):
        content_length(parse_head(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"))
    with pytest.raises(HttpError) as err:
        content_length(parse_head(b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"))
    assert err.value.status == 413


def test_response_renders_json_with_length() -> None:
    raw = render(HttpResponse(404, {"error": {"code": 404}}), keep_alive=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"Connection: close" in head
    assert json.loads(body) == {"error": {"code": 404}}


# -- the interactions' lives -------------------------------------------------------


def test_background_task_runs_for_its_duration_then_completes_to_the_schema() -> None:
    store = InteractionStore(TaskScript(duration_s=5.0))
    item = store.create(_body(response_format=FORMAT), now=100.0)
    assert store.read(item.id, now=104.9).status == "in_progress"
    done = store.read(item.id, now=105.0)
    assert done.status == "completed"
    assert done.answer_text is not None
    answer = json.loads(done.answer_text)
    jsonschema.validate(answer, RESULT_SCHEMA)
    assert "heat pumps" in answer["spoken_summary"]
    out = to_json(done)
    assert out["steps"][0]["content"][0]["text"] == done.answer_text


def test_held_task_waits_for_finish_and_can_fail() -> None:
    store = InteractionStore()
    store.queue(TaskScript(duration_s=None), TaskScript(duration_s=None, outcome=Outcome.FAIL))
    held = store.create(_body(), now=0.0)
    doomed = store.create(_body(), now=0.0)
    assert store.read(held.id, now=1e9).status == "in_progress"
    store.finish(held.id, now=1.0)
    store.finish(doomed.id, now=1.0)
    assert store.read(held.id, now=1.0).status == "completed"
    failed = store.read(doomed.id, now=1.0)
    assert failed.status == "failed"
    assert to_json(failed)["errors"][0]["message"]


def test_cancel_ends_a_running_task_and_refuses_a_finished_one() -> None:
    store = InteractionStore(TaskScript(duration_s=10.0))
    item = store.create(_body(), now=0.0)
    assert store.cancel(item.id, now=1.0).status == "cancelled"
    assert store.read(item.id, now=99.0).status == "cancelled"  # never completes later
    with pytest.raises(ApiError) as err:
        store.cancel(item.id, now=2.0)
    assert err.value.status == 400


def test_delete_forgets_and_unknown_ids_are_404() -> None:
    store = InteractionStore()
    item = store.create(_body(), now=0.0)
    store.delete(item.id)
    for call in (lambda: store.read(item.id, 1.0), lambda: store.delete(item.id),
                 lambda: store.cancel("v1_nope", 1.0)):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404


def test_transient_errors_answer_503_first() -> None:
    store = InteractionStore()
    store.queue(TaskScript(duration_s=0.0, transient_errors=2))
    item = store.create(_body(), now=0.0)
    for _ in range(2):
        with pytest.raises(ApiError) as err:
            store.read(item.id, now=1.0)
        assert err.value.status == 503
    assert store.read(item.id, now=1.0).status == "completed"


def test_previous_interaction_must_exist_and_be_completed() -> None:
    store = InteractionStore(TaskScript(duration_s=10.0))
    first = store.create(_body(), now=0.0)
    with pytest.raises(ApiError) as err:
        store.create(_body(previous_interaction_id="v1_unknown"), now=1.0)
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        store.create(_body(previous_interaction_id=first.id), now=1.0)
    assert err.value.status == 400
    follow = store.create(_body(input="and the cost?", previous_interaction_id=first.id),
                          now=10.0)
    assert follow.previous_interaction_id == first.id
    done = store.read(follow.id, now=20.0)
    assert done.answer_text is not None and "heat pumps" in done.answer_text


@pytest.mark.parametrize("body", [
    {"input": "x", "background": True},  # neither model nor agent
    {"agent": AGENT, "model": "m", "input": "x", "background": True},
    {"agent": AGENT, "input": "x"},  # agents run in the background only
    {"model": "m"},  # no input
    {"model": "m", "input": "x", "response_format": {"type": "object"}},  # no mime type
    {"model": "m", "input": "x", "response_format": {"type": "text", "schema": {}}},
    {"model": "m", "input": "x", "response_mime_type": "application/json",
     "response_format": {"type": "objekt"}},  # not a schema
])
def test_bad_creates_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as err:
        InteractionStore().create(body, now=0.0)
    assert err.value.status == 400


def test_bare_schema_with_mime_type_is_honoured_and_answers_verbatim() -> None:
    store = InteractionStore()
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}},
              "required": ["n"]}
    item = store.create({"model": "m", "input": "count", "response_format": schema,
                         "response_mime_type": "application/json"}, now=0.0)
    assert item.status == "completed"  # foreground: answered at once
    assert json.loads(item.answer_text or "") == {"n": 3}
    store.queue(TaskScript(answer="not json"))
    odd = store.create(_body(response_format=FORMAT), now=0.0)
    store.finish(odd.id, now=1.0)
    assert store.read(odd.id, now=1.0).answer_text == "not json"


def test_input_text_reads_every_shape() -> None:
    assert input_text("a") == "a"
    steps = [{"type": "user_input", "content": [{"type": "text", "text": "b"},
                                                {"type": "image", "data": "AAAA"}]}]
    assert input_text(steps) == "b"
    assert response_schema({"response_format": [FORMAT]}) == RESULT_SCHEMA


# -- schema-conforming answers -------------------------------------------------------


def test_fill_follows_refs_enums_and_item_bounds() -> None:
    schema = {"$defs": {"S": {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}},
                              "required": ["kind"]}},
              "type": "object",
              "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/S"},
                                       "minItems": 4, "maxItems": 5},
                             "ok": {"type": ["boolean", "null"]}}}
    value = fill(schema, "topic")
    assert value["items"] == [{"kind": "a"}] * 4
    assert value["ok"] is True
    jsonschema.validate(value, schema)


def test_unanswerable_schemas_are_refused() -> None:
    with pytest.raises(SchemaError):
        check_schema(["not", "an", "object"])
    with pytest.raises(SchemaError):
        fill({"$ref": "https://elsewhere/schema"}, "t")

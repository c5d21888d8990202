"""A fake of Gemini's Interactions API (REST) for the SDK's ``client.aio.interactions``.

It speaks what google-genai sends: ``POST /{v}/interactions`` (create, with
``background``, ``previous_interaction_id``, ``response_format`` in either
spelling: ``{"type": "text", "mime_type": "application/json", "schema": ...}``
or a bare schema with ``response_mime_type``), ``GET /{v}/interactions/{id}``,
``POST /{v}/interactions/{id}/cancel`` and ``DELETE /{v}/interactions/{id}``,
with Google's error bodies and the ``x-goog-api-key`` check. It is served on
the fake Live server's port (``FakeLiveServer(http_router=FakeInteractions())``).

Background interactions follow scripts (:class:`TaskScript`): take a given
time or wait for :meth:`FakeInteractions.finish`, complete or fail, answer
503 for a few reads; a completed one carries JSON that conforms to the
requested schema (``schema_fill``). Parts: ``http`` (HTTP/1.1, pure),
``store`` (the interactions' lives, pure), ``schema_fill``, ``service``.
"""

from simulator.interactions.service import FakeInteractions, RequestRecord
from simulator.interactions.store import (
    ApiError,
    InteractionStore,
    Outcome,
    StoredInteraction,
    TaskScript,
)
from simulator.interactions.turns import ModelTurn

__all__ = [
    "ApiError",
    "FakeInteractions",
    "InteractionStore",
    "ModelTurn",
    "Outcome",
    "RequestRecord",
    "StoredInteraction",
    "TaskScript",
]

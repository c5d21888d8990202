"""The Live API's wire format as the fake reads it: strict where the service is strict.

Pure functions over parsed JSON: the endpoint path, the message kinds, the
fields each may carry (an unknown one is a 1007 close, as on the service),
blobs in either base64 alphabet, keys in snake_case or camelCase.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from daemon.errors import EdgeAgentError
from simulator.live_server.records import ConnectionRecord

JsonDict = dict[str, Any]

PATH_RE = re.compile(
    r"/ws/google\.ai\.generativelanguage\.([A-Za-z0-9_]+)\.GenerativeService\.BidiGenerateContent"
)
_AUDIO_MIME_RE = re.compile(r"audio/pcm\s*(?:;\s*rate\s*=\s*(\d+))?\s*", re.IGNORECASE)
_MAX_REASON_BYTES = 123  # RFC 6455: control frame payload 125 minus the code

DEFAULT_REASONS: dict[int, str] = {
    1000: "",
    1001: "Going away",
    1007: "Request contains an invalid argument.",
    1008: "Request violates a policy.",
    1011: "Internal error encountered.",
}


class ProtocolError(EdgeAgentError, ValueError):
    """The client broke the protocol; close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str, *, invalid: Any = None) -> None:
        """``invalid``: what to record of a message that could not be read at all."""
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.invalid = invalid


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def field(obj: Mapping[str, Any], name: str) -> Any:
    """Look up a snake_case field under its snake or camel spelling."""
    if name in obj:
        return obj[name]
    return obj.get(_camel(name))


def check_fields(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuse a field the service does not know, with the service's own words."""
    for key in obj:
        if _snake(key) not in allowed:
            raise ProtocolError(
                1007,
                f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': '
                "Cannot find field.",
            )


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (the SDK sends URL-safe)."""
    s = "".join(text.split()).replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


def duration(seconds: float) -> str:
    """Format seconds like proto JSON Duration: "2s", "1.5s", "0.25s"."""
    s = f"{max(seconds, 0.0):.9f}".rstrip("0").rstrip(".")
    return f"{s}s"


def clip_reason(reason: str) -> str:
    """A close reason cut to what fits in a close frame."""
    data = reason.encode("utf-8")
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[:_MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def model_id(model: str) -> str:
    """A model name without its ``models/`` prefix."""
    return model.removeprefix("models/")


def _both_spellings(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        out[name] = out[_camel(name)] = name
    return out


KINDS = _both_spellings(
    ("setup", "client_content", "realtime_input", "tool_response", "context_update")
)
"""A client message's one top-level key (either spelling) -> its kind."""

REALTIME_FIELDS = frozenset(
    {"audio", "video", "text", "audio_stream_end", "activity_start", "activity_end",
     "media_chunks"}
)
_BLOB_FIELDS = frozenset({"data", "mime_type", "display_name"})
CLIENT_CONTENT_FIELDS = frozenset({"turns", "turn_complete"})
TOOL_RESPONSE_FIELDS = frozenset({"function_responses"})
FUNCTION_RESPONSE_FIELDS = frozenset(
    {"id", "name", "response", "scheduling", "will_continue", "parts"}
)
CONTEXT_UPDATE_FIELDS = frozenset({"system_instruction", "tools"})


def parse(raw: str | bytes) -> JsonDict:
    """A client message as a JSON object; ProtocolError (with what to record) if not."""
    try:
        msg = json.loads(raw)
    except ValueError:
        text = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
        raise ProtocolError(1007, "Invalid JSON payload received.",
                            invalid={"_raw": text[:200]}) from None
    if not isinstance(msg, dict):
        raise ProtocolError(1007, "Invalid JSON payload received: expected an object.",
                            invalid={"_raw": msg})
    return msg


def kind_of(msg: JsonDict) -> str:
    """The kind of a client message: exactly one known top-level key."""
    if len(msg) != 1:
        raise ProtocolError(
            1007,
            "Invalid JSON payload received: exactly one of setup, clientContent, "
            "realtimeInput, toolResponse, contextUpdate is required.",
        )
    key = next(iter(msg))
    kind = KINDS.get(key)
    if kind is None:
        raise ProtocolError(
            1007, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
        )
    return kind


def is_tool_response(data: bytes) -> bool:
    """True for a whole frame that holds one toolResponse message."""
    try:
        msg = json.loads(data)
    except ValueError:
        return False
    if not isinstance(msg, dict) or len(msg) != 1:
        return False
    return KINDS.get(next(iter(msg))) == "tool_response"


def blob(obj: Any, where: str) -> tuple[str, bytes]:
    """A Blob's mime type and decoded data."""
    if not isinstance(obj, dict):
        raise ProtocolError(1007, f"Invalid value at '{where}': must be a Blob object")
    check_fields(obj, _BLOB_FIELDS, where)
    mime = field(obj, "mime_type")
    data = field(obj, "data")
    if not isinstance(mime, str) or not mime:
        raise ProtocolError(1007, f"{where}.mime_type is required")
    if not isinstance(data, str):
        raise ProtocolError(1007, f"{where}.data is required (base64)")
    try:
        return mime, decode_base64(data)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            1007, f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
        ) from None


def audio_rate(mime: str, where: str) -> int:
    """The sample rate of ``audio/pcm[;rate=N]`` (16 kHz when unnamed), within 8-48 kHz."""
    m = _AUDIO_MIME_RE.fullmatch(mime)
    if m is None:
        raise ProtocolError(1007, f"Unsupported mime type at '{where}': {mime[:40]}")
    rate = int(m.group(1)) if m.group(1) else 16_000
    if not 8_000 <= rate <= 48_000:
        raise ProtocolError(1007, f"Unsupported sample rate at '{where}': {rate}")
    return rate


def read_setup(
    msg: JsonDict, kind: str, rec: ConnectionRecord, models: frozenset[str] | None
) -> JsonDict:
    """Check the first message and note what it asked for in ``rec``; returns the setup.

    Fields are noted as they are read, so a refused setup's record shows how
    far it got (its model, its handle).
    """
    if kind != "setup":
        raise ProtocolError(1007, "The first message must be setup.")
    setup = next(iter(msg.values()))
    if not isinstance(setup, dict):
        raise ProtocolError(1007, "Invalid value at 'setup': must be an object")
    rec.setup = setup
    model = field(setup, "model")
    if not isinstance(model, str) or not model:
        raise ProtocolError(1007, "setup.model is required")
    rec.model = model
    if models is not None and model_id(model) not in models:
        raise ProtocolError(
            1008,
            f"models/{model_id(model)} is not found for API version {rec.api_version}, "
            "or is not supported for bidiGenerateContent.",
        )
    resumption = field(setup, "session_resumption")
    handle: str | None = None
    if resumption is not None:
        if not isinstance(resumption, dict):
            raise ProtocolError(1007, "Invalid value at 'setup.session_resumption'")
        value = field(resumption, "handle")
        if value is not None and not isinstance(value, str):
            raise ProtocolError(1007, "Invalid value at 'setup.session_resumption.handle'")
        handle = value or None
    rec.requested_handle = handle
    return setup


def realtime_media(body: JsonDict) -> list[tuple[str, bytes, str]]:
    """The blobs of a realtimeInput, in order: (mime type, data, where in the message)."""
    check_fields(body, REALTIME_FIELDS, "realtime_input")
    media: list[tuple[str, bytes, str]] = []
    chunks = field(body, "media_chunks")
    if chunks is not None:
        if not isinstance(chunks, list):
            raise ProtocolError(1007, "Invalid value at 'realtime_input.media_chunks'")
        for i, item in enumerate(chunks):
            where = f"realtime_input.media_chunks[{i}]"
            mime, data = blob(item, where)
            media.append((mime, data, where))
    for name in ("audio", "video"):
        value = field(body, name)
        if value is not None:
            mime, data = blob(value, f"realtime_input.{name}")
            if name == "audio" and not mime.lower().startswith("audio/"):
                raise ProtocolError(1007, f"realtime_input.audio: not audio: {mime[:40]}")
            if name == "video" and not mime.lower().startswith("image/"):
                raise ProtocolError(1007, f"realtime_input.video: not an image: {mime[:40]}")
            media.append((mime, data, f"realtime_input.{name}"))
    return media


def client_content(body: JsonDict) -> tuple[list[str], bool | None]:
    """The texts of a clientContent's turns, and its turn_complete flag."""
    check_fields(body, CLIENT_CONTENT_FIELDS, "client_content")
    turns = field(body, "turns")
    texts: list[str] = []
    if turns is not None:
        if not isinstance(turns, list):
            raise ProtocolError(1007, "Invalid value at 'client_content.turns'")
        for i, content in enumerate(turns):
            parts = field(content, "parts") if isinstance(content, dict) else None
            if not isinstance(parts, list):
                raise ProtocolError(1007, f"Invalid value at 'client_content.turns[{i}]'")
            texts.extend(
                p["text"] for p in parts
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    complete = field(body, "turn_complete")
    if complete is not None and not isinstance(complete, bool):
        raise ProtocolError(1007, "Invalid value at 'client_content.turn_complete'")
    return texts, complete


def function_responses(body: JsonDict) -> list[Any]:
    """The list of a toolResponse's functionResponses (each checked by function_response)."""
    check_fields(body, TOOL_RESPONSE_FIELDS, "tool_response")
    responses = field(body, "function_responses")
    if not isinstance(responses, list):
        raise ProtocolError(1007, "Invalid value at 'tool_response.function_responses'")
    return responses


def function_response(fr: Any, i: int) -> tuple[str | None, str | None, Any, str | None]:
    """One functionResponse: (id, name, response, scheduling), a non-string id as None."""
    if not isinstance(fr, dict):
        raise ProtocolError(1007, f"Invalid value at 'tool_response.function_responses[{i}]'")
    check_fields(fr, FUNCTION_RESPONSE_FIELDS, f"tool_response.function_responses[{i}]")
    call_id, name = field(fr, "id"), field(fr, "name")
    scheduling = field(fr, "scheduling")
    return (
        call_id if isinstance(call_id, str) else None,
        name if isinstance(name, str) else None,
        field(fr, "response"),
        scheduling if isinstance(scheduling, str) else None,
    )

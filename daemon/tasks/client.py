"""The Interactions API through google-genai: create, get, cancel, delete, and nothing more.

The SDK's own retries are off (`attempts=1`): the poller paces retries itself,
counts them, and bounds the total time. Errors come back as two kinds only:
`Transient` (try again later: 429, 5xx, a dropped connection, a timeout) and
`Rejected` (the service said no for good: any other 4xx, including 404 for an
interaction it no longer knows).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from daemon.config import InteractionsSettings, LiveSettings
from daemon.errors import EdgeAgentError
from daemon.live.calls import FunctionCall
from daemon.ops.logsetup import clip
from daemon.tasks.result import RESULT_SCHEMA

if TYPE_CHECKING:
    from google import genai

DONE = frozenset({"completed"})
FAILED = frozenset({"failed", "cancelled", "incomplete", "budget_exceeded"})


class InteractionsError(EdgeAgentError):
    """A call to the Interactions API did not succeed."""


class Transient(InteractionsError):
    """Worth another try later."""


class Rejected(InteractionsError):
    """The service refused for good (status in `status`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Snapshot:
    """An interaction as last read: its status, and its text or error when it ended."""

    id: str
    status: str
    text: str = ""
    error: str = ""


@dataclass(frozen=True)
class TurnReply:
    """A foreground interaction's answer: function calls to run, or audio and/or text."""

    id: str
    status: str
    calls: tuple[FunctionCall, ...]
    text: str
    pcm: bytes
    rate: int


@dataclass(frozen=True)
class Endpoint:
    """Where the Interactions API is: the Live link's endpoint unless configured apart."""

    base_url: str
    api_version: str
    ca_file: str | None

    @classmethod
    def of(cls, s: InteractionsSettings, live: LiveSettings) -> Endpoint:
        """`[interactions]` where set, else `[live]`."""
        ca = s.ca_file if s.ca_file is not None else live.ca_file
        return cls(
            base_url=(s.base_url if s.base_url is not None else live.base_url).rstrip("/"),
            api_version=s.api_version or live.api_version,
            ca_file=str(ca) if ca is not None else None,
        )


class InteractionsClient:
    """Background interactions for tasks; one HTTP client, made on first use."""

    def __init__(self, settings: InteractionsSettings, endpoint: Endpoint,
                 api_key: SecretStr) -> None:
        self._s = settings
        self._endpoint = endpoint
        self._key = api_key
        self._client: genai.Client | None = None

    def prepare(self) -> None:
        """Build the SDK client now (its import takes most of a second on a Pi), so the
        first task's create is not the one that waits for it."""
        self._api()

    def _api(self) -> Any:
        if self._client is None:
            from google import genai  # lazy: the SDK costs ~0.3 s to import
            from google.genai import types

            logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per poll
            logging.getLogger("httpx").setLevel(logging.WARNING)
            ctx = ssl.create_default_context()
            if self._endpoint.ca_file is not None:
                ctx.load_verify_locations(cafile=self._endpoint.ca_file)
            self._client = genai.Client(
                api_key=self._key.get_secret_value(),
                http_options=types.HttpOptions(
                    base_url=self._endpoint.base_url or None,
                    api_version=self._endpoint.api_version,
                    timeout=int(self._s.request_timeout * 1000),
                    retry_options=types.HttpRetryOptions(attempts=1),
                    async_client_args={"verify": ctx},
                ),
            )
        return self._client.aio.interactions

    async def create(self, prompt: str, *, image: bytes | None = None,
                     previous_interaction_id: str | None = None) -> Snapshot:
        """Start a background interaction asking for the structured result."""
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if image is not None:
            content.append({"type": "image", "mime_type": "image/jpeg",
                            "data": base64.b64encode(image).decode("ascii")})
        kwargs: dict[str, Any] = {
            "input": content,
            "background": True,
            "response_format": {"type": "text", "mime_type": "application/json",
                                "schema": RESULT_SCHEMA},
        }
        if self._s.agent:
            kwargs["agent"] = self._s.agent
        else:
            kwargs["model"] = self._s.model
        if previous_interaction_id is not None:
            kwargs["previous_interaction_id"] = previous_interaction_id
        return _snapshot(await self._call("create", **kwargs))

    async def get(self, interaction_id: str) -> Snapshot:
        """The interaction's status now."""
        return _snapshot(await self._call("get", id=interaction_id))

    async def cancel(self, interaction_id: str) -> None:
        """Ask the service to stop it."""
        await self._call("cancel", id=interaction_id)

    async def delete(self, interaction_id: str) -> None:
        """Forget it on the service."""
        await self._call("delete", id=interaction_id)

    # -- the fallback road: foreground turns (daemon.tasks.fallback) ----------------
    async def model_turn(self, input_: list[dict[str, Any]], *, tools: list[dict[str, Any]],
                         previous_interaction_id: str | None, system: str) -> TurnReply:
        """One foreground turn of the fallback conversation: the user's audio (or the
        tools' results) in; function calls, or the answer (audio or text), out."""
        kwargs: dict[str, Any] = {
            "model": self._s.fallback_model, "input": input_, "system_instruction": system,
            "response_modalities": ["audio"] if self._s.fallback_audio_out else ["text"],
        }
        if tools:
            kwargs["tools"] = [_function(d) for d in tools]
        if previous_interaction_id is not None:
            kwargs["previous_interaction_id"] = previous_interaction_id
        return _reply(await self._call("create", **kwargs))

    async def speak(self, text: str) -> TurnReply:
        """Text to speech through a TTS model (the fallback model answered in text)."""
        return _reply(await self._call("create", model=self._s.tts_model, input=text,
                                       response_modalities=["audio"], store=False))

    async def _call(self, method: str, **kwargs: Any) -> Any:
        from google.genai import _interactions_errors as errors

        try:
            async with asyncio.timeout(self._s.request_timeout + 5.0):
                return await getattr(self._api(), method)(**kwargs)
        except TimeoutError:
            raise Transient(f"{method}: no answer in time") from None
        except errors.APIStatusError as exc:
            status = int(exc.status_code or 0)
            if status == 429 or status >= 500 or status == 408:
                raise Transient(f"{method}: HTTP {status}") from None
            raise Rejected(f"{method}: HTTP {status}: {_message(exc)}", status) from None
        except errors.APIError as exc:  # connection refused, reset, TLS
            raise Transient(f"{method}: {type(exc).__name__}") from None
        except OSError as exc:
            raise Transient(f"{method}: {exc.strerror or exc}") from None


def _message(exc: Any) -> str:
    """The service's reason, scrubbed: it is stored, shown to the model and published to
    Home Assistant, and a proxy or an echoing server may quote the key."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return clip(str(err["message"]), 200)
    return clip(str(exc), 200)


def _function(declaration: dict[str, Any]) -> dict[str, Any]:
    """A tool as the Interactions API declares it (the registry's form, minus Live's
    `blocking`)."""
    return {"type": "function", "name": declaration["name"],
            "description": declaration.get("description", ""),
            "parameters": declaration.get("parameters") or {"type": "object"}}


def _reply(interaction: Any) -> TurnReply:
    calls: list[FunctionCall] = []
    steps = getattr(interaction, "steps", None) or []
    for step in steps:  # the calls after the last user input are this turn's
        if getattr(step, "type", None) == "user_input":
            calls = []
        elif getattr(step, "type", None) == "function_call":
            args = getattr(step, "arguments", None)
            calls.append(FunctionCall(str(getattr(step, "id", "")), str(getattr(step, "name", "")),
                                      dict(args) if isinstance(args, dict) else {}))
    pcm, rate = b"", 0
    audio = getattr(interaction, "output_audio", None)
    if audio is not None and getattr(audio, "data", None):
        pcm, rate = decode_audio(str(audio.data), str(getattr(audio, "mime_type", "") or ""),
                                 getattr(audio, "sample_rate", None))
    return TurnReply(str(getattr(interaction, "id", "") or ""),
                     str(getattr(interaction, "status", "") or ""), tuple(calls),
                     str(getattr(interaction, "output_text", "") or ""), pcm, rate)


MAX_ANSWER_AUDIO_BYTES = 2 * 48_000 * 180  # three minutes at the highest rate taken
ANSWER_RATES = range(8_000, 48_001)


def decode_audio(data: str, mime_type: str, sample_rate: int | None) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate from an audio block: raw L16 (rate from the block or
    its mime type, else 24 kHz, the models' voice) or WAV. Anything else, or a rate no
    speaker plays, is an `InteractionsError`: one bad answer costs that turn only."""
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error
        raise InteractionsError("answer audio is not base64") from None
    if len(raw) > MAX_ANSWER_AUDIO_BYTES:
        raise InteractionsError(f"answer audio is too long ({len(raw)} bytes)")
    if raw[:4] == b"RIFF" or mime_type.startswith(("audio/wav", "audio/x-wav")):
        pcm, rate = _wav(raw)
    else:
        rate = sample_rate if isinstance(sample_rate, int) else 24_000
        for part in mime_type.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "rate" and value.isascii() and value.isdigit():
                rate = int(value[:6])
        pcm = raw[: len(raw) - len(raw) % 2]
    if rate not in ANSWER_RATES:
        raise InteractionsError(f"answer audio at {rate} Hz cannot be played")
    return pcm, rate


def _wav(raw: bytes) -> tuple[bytes, int]:
    import io
    import wave

    try:
        with wave.open(io.BytesIO(raw)) as wf:
            if wf.getsampwidth() != 2 or wf.getnchannels() != 1:
                raise InteractionsError("answer audio is not 16-bit mono")
            return wf.readframes(wf.getnframes()), wf.getframerate()
    except (wave.Error, EOFError, ValueError) as exc:
        raise InteractionsError(f"answer audio is not a readable WAV ({exc})") from None


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """PCM in a WAV container: the audio form every model accepts as input."""
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm)
    return buf.getvalue()


def _snapshot(interaction: Any) -> Snapshot:
    status = str(getattr(interaction, "status", "") or "")
    text = ""
    if status in DONE:
        text = str(getattr(interaction, "output_text", "") or "")
    error = ""
    errs = getattr(interaction, "errors", None)
    if errs:
        error = clip("; ".join(str(getattr(e, "message", "") or "") for e in errs), 300)
    return Snapshot(str(getattr(interaction, "id", "") or ""), status, text, error)

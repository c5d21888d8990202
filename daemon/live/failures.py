"""Why a Live connection failed or ended, in a line for people and a reason for metrics.

Kept apart from the link so the one decision that stops the daemon (a refusal
of the first connection) can be read, and tested, on its own.
"""

from __future__ import annotations

from google.genai import errors as genai_errors

from daemon.config import LiveSettings
from daemon.errors import EdgeAgentError
from daemon.ops.logsetup import clip


class LiveFatalError(EdgeAgentError, ConnectionError):
    """Retrying soon cannot help (rejected key, unknown model, wrong endpoint, setup).

    The message is one line naming the setting to fix; `kind` is the metric
    reason. Raised out of LiveLink.run only for the first connection after start.
    """

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.kind = kind


class ConnectFailed(EdgeAgentError, ConnectionError):
    """A connection attempt failed in a way worth retrying with backoff.

    `kind` is the metric reason (unreachable, setup_timeout, resume_refused, ...).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def close_text(exc: genai_errors.APIError) -> str:
    """The close reason the server gave (the SDK keeps a close's reason in `details`)."""
    text = exc.message or (exc.details if isinstance(exc.details, str) else "") or str(exc)
    return clip(text.replace("\n", " "), 200)  # scrubbed before it is cut


def close_reason(code: int) -> str:
    """The metric reason for a connection closed with this code."""
    return f"closed:{code}"


def brief(exc: BaseException) -> str:
    """An exception in one short line: its type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return clip(f"{type(exc).__name__}: {text}", 200) if text else type(exc).__name__


def classify_status(status: int, s: LiveSettings) -> Exception:
    """An HTTP status that refused the WebSocket handshake."""
    if status in (401, 403):
        return LiveFatalError(f"GEMINI_API_KEY: rejected by the Live API (HTTP {status})",
                              f"http_{status}")
    if status == 404:
        return LiveFatalError(
            f"live.base_url: no Live endpoint at {s.base_url or 'the default URL'} "
            f"for api_version {s.api_version} (HTTP 404)",
            "http_404",
        )
    return ConnectFailed("http_error", f"handshake refused with HTTP {status}")


def classify_setup_close(exc: genai_errors.APIError, resuming: bool, s: LiveSettings) -> Exception:
    """A close before setup completed: a refusal when the same setup cannot succeed soon.

    A rejected key and an unknown model are refusals; so is 1007 (invalid
    argument) on a fresh setup, which carries our own settings and the tools.
    1007 on a resume means the handle is bad: start fresh; so does a 1008 "not
    found" on a resume that does not name a model (its session is gone: a
    handle stored by a previous run must never stop the daemon as if the
    model were wrong). Anything else,
    notably a 1008 policy close (seen in the field on some function-call
    shapes, and passing), is retried with backoff.
    """
    code = exc.code
    text = close_text(exc)
    lowered = text.lower()
    if "api key not valid" in lowered or "api_key_invalid" in lowered:
        return LiveFatalError(f"GEMINI_API_KEY: rejected by the Live API ({code}: {text[:160]})",
                              "key_rejected")
    if code == 1008 and "not found" in lowered and (not resuming or "model" in lowered):
        return LiveFatalError(f"live.model: {s.model!r} is not available ({text[:160]})",
                              "model_unavailable")
    if resuming and (code == 1007 or (code == 1008 and "not found" in lowered)):
        # The handle is bad (or its session gone): not the key, not the model.
        return ConnectFailed("resume_refused", f"close {code} during setup: {text[:160]}")
    if code == 1007:
        return LiveFatalError(
            f"{_setup_key(lowered)}: the Live API rejected the session setup "
            f"(1007: {text[:160]})",
            "setup_rejected",
        )
    return ConnectFailed("setup_closed", f"server closed during setup ({code}: {text[:160]})")


_SETUP_FIELDS = (  # a field named in a 1007 reason -> the setting that put it in the setup
    ("voice", "live.voice"),
    ("language", "live.language"),
    ("systeminstruction", "live.system_instruction"),
    ("contextwindowcompression", "live.compression_trigger_tokens"),
    ("model", "live.model"),
)


def _setup_key(reason: str) -> str:
    """The setting a setup rejection points at, else the [live] section as a whole."""
    flat = reason.replace("_", "")  # the service names fields in either case style
    return next((key for word, key in _SETUP_FIELDS if word in flat), "live")

"""Is the API key accepted by the Live endpoint? One real connect and setup, as the link does.

Why a real setup and not a REST call: the key, the endpoint (`live.base_url`, its
CA, `live.api_version`) and the model are only proven together by the same
google-genai `client.aio.live.connect` the daemon uses, with the same setup it
sends (without the home's tools, which only exist once MQTT has been read). The
session is closed (1000) at once. The server's HTTP `Date` header comes back with
the answer, so the clock check can compare with it for free.

`classify` is pure: each way a connect fails becomes one line and one thing to do.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import websockets
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr

from daemon.config import LiveSettings
from daemon.doctor.report import Check
from daemon.live import wire
from daemon.live.failures import ConnectFailed, brief, classify_setup_close
from daemon.live.socket_door import sdk_websocket
from daemon.ops.logsetup import clip

NAME = "Live API"
LIVE_TIMEOUT = 8.0
KEY_ADVICE = ("put a valid Gemini API key in GEMINI_API_KEY, or under systemd in the "
              "credential gemini_api_key")
TLS_ADVICE = ("check the clock (timedatectl; TLS fails on a wrong clock) and live.ca_file "
              "(the CA that signed a private endpoint's certificate)")
NET_ADVICE = ("check the network, DNS and a firewall (the unit's IPAddressDeny=), and "
              "live.base_url")


@dataclass(frozen=True, slots=True)
class LiveResult:
    """The check, and the server's clock (epoch seconds) when it answered at all."""

    check: Check
    server_time: float | None = None


def endpoint(s: LiveSettings) -> str:
    """Where the link connects, for people."""
    return s.base_url.rstrip("/") or "Google's Live endpoint"


def http_date(headers: Any) -> float | None:
    """The `Date` header of an HTTP response as epoch seconds; None if absent or odd."""
    try:
        value = headers.get("Date") if headers is not None else None
        return email.utils.parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError, AttributeError):
        return None


async def check_live(s: LiveSettings, key: SecretStr, limit: float = LIVE_TIMEOUT) -> LiveResult:
    """Connect and set up one session with the configured model; close it at once."""
    limit = min(limit, s.connect_timeout)
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            server_time = await _set_up_once(s, key, limit)
    except websockets.exceptions.InvalidStatus as exc:
        return LiveResult(classify(exc, s, limit), http_date(exc.response.headers))
    except Exception as exc:  # every other way it fails is one line too
        return LiveResult(classify(exc, s, limit))
    took = time.monotonic() - started
    return LiveResult(
        Check.ok(NAME, f"key accepted; a session with {s.model} set up at {endpoint(s)} "
                       f"({s.api_version}) in {took:.1f} s"),
        server_time,
    )


async def _set_up_once(s: LiveSettings, key: SecretStr, limit: float) -> float | None:
    async with _client(s, key, limit).aio.live.connect(
        model=s.model, config=wire.connect_config(s, [], None)
    ) as session:
        ws = sdk_websocket(session)
        response = ws.response if ws is not None else None
        return http_date(response.headers) if response is not None else None


def _client(s: LiveSettings, key: SecretStr, limit: float) -> genai.Client:
    """The client as `daemon.live.link` builds it: same URL, version, CA and socket options."""
    ctx = ssl.create_default_context()
    if s.ca_file is not None:
        ctx.load_verify_locations(cafile=str(s.ca_file))
    return genai.Client(
        api_key=key.get_secret_value(),
        http_options=types.HttpOptions(
            base_url=s.base_url.rstrip("/") or None,
            api_version=s.api_version,
            async_client_args={"ssl": ctx, "ping_interval": None, "open_timeout": limit,
                               "close_timeout": 2.0, "compression": None},
        ),
    )


def classify(exc: BaseException, s: LiveSettings, limit: float) -> Check:
    """A failed connect as one FAIL line and what to do about it."""
    where = endpoint(s)
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return _status(exc.response.status_code, _body(exc.response.body), s)
    if isinstance(exc, genai_errors.APIError):
        return _setup_closed(exc, s)
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or brief(exc)
        return Check.fail(NAME, f"TLS: the certificate of {where} was not accepted ({why})",
                          TLS_ADVICE)
    if isinstance(exc, ssl.SSLError):
        return Check.fail(NAME, f"TLS handshake with {where} failed ({brief(exc)})",
                          "check that live.base_url is the https:// URL of a Live endpoint; "
                          + TLS_ADVICE)
    if isinstance(exc, TimeoutError):
        return Check.fail(NAME, f"no answer from {where} within {limit:.0f} s", NET_ADVICE)
    if isinstance(exc, socket.gaierror):
        return Check.fail(NAME, f"cannot resolve the host of {where} ({brief(exc)})", NET_ADVICE)
    if isinstance(exc, OSError):
        return Check.fail(NAME, f"cannot reach {where} ({brief(exc)})", NET_ADVICE)
    if isinstance(exc, websockets.exceptions.WebSocketException):
        return Check.fail(NAME, f"{where} does not speak the Live protocol ({brief(exc)})",
                          "check live.base_url and live.api_version")
    return Check.fail(NAME, f"the connect failed unexpectedly ({brief(exc)})",
                      "run `edge-agent run --log-level debug` to see more")


def _body(body: bytes | bytearray | None) -> str:
    text = bytes(body or b"").decode("utf-8", "replace").strip().splitlines()
    return clip(text[0], 160) if text else ""


def _status(status: int, body: str, s: LiveSettings) -> Check:
    said = f"HTTP {status}: {body}" if body else f"HTTP {status}"
    if status in (401, 403):
        return Check.fail(NAME, f"the key was refused by {endpoint(s)} ({said})", KEY_ADVICE)
    if status == 404:
        return Check.fail(NAME, f"no Live endpoint at {endpoint(s)} for api_version "
                                f"{s.api_version} ({said})",
                          "check live.base_url and live.api_version")
    return Check.fail(NAME, f"{endpoint(s)} refused the connection ({said})",
                      "try again later; if it stays, check live.base_url")


def _setup_closed(exc: genai_errors.APIError, s: LiveSettings) -> Check:
    """A close before setup completed, judged as the link judges it."""
    verdict = classify_setup_close(exc, False, s)
    kind = getattr(verdict, "kind", "")
    if kind == "key_rejected":
        return Check.fail(NAME, f"the key was refused by {endpoint(s)} ({verdict})", KEY_ADVICE)
    if kind == "model_unavailable":
        return Check.fail(NAME, str(verdict),
                          "set live.model to a Live model this key may use")
    if kind == "setup_rejected":
        setting = str(verdict).split(":", 1)[0]
        return Check.fail(NAME, str(verdict), f"fix {setting} (the server's reason names it)")
    detail = verdict.detail if isinstance(verdict, ConnectFailed) else str(verdict)
    return Check.fail(NAME, f"{detail} (model {s.model})",
                      "check live.model and the [live] settings; if they are right, "
                      "try again later")

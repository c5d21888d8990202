"""How the doctor words each way a Live connect fails: the refused key, the endpoint
that is not there, TLS (with the clock), a setup the server rejected, the network."""

from __future__ import annotations

import socket
import ssl

import pytest
from google.genai import errors as genai_errors
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.http11 import Response

from daemon.config import LiveSettings
from daemon.doctor.live import KEY_ADVICE, classify, endpoint, http_date

S = LiveSettings(base_url="https://live.example:8443/", model="gemini-3.8-live")


def _status(code: int, body: bytes = b"") -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers({"Date": "Fri, 04 Dec 2026 20:22:26 GMT"}),
                                  body))


def test_a_refused_key() -> None:
    check = classify(_status(403, b"API key not valid. Please pass a valid API key.\n"), S, 8)
    assert check.status == "fail"
    assert check.detail == ("the key was refused by https://live.example:8443 "
                            "(HTTP 403: API key not valid. Please pass a valid API key.)")
    assert check.advice == KEY_ADVICE
    assert classify(_status(401), S, 8).detail.startswith("the key was refused")
    closed = genai_errors.APIError(1008, "API key not valid. Please pass a valid API key.")
    assert classify(closed, S, 8).detail.startswith(
        "the key was refused by https://live.example:8443 (GEMINI_API_KEY: rejected")


def test_no_endpoint_and_other_statuses() -> None:
    check = classify(_status(404), S, 8)
    assert check.detail == ("no Live endpoint at https://live.example:8443 for api_version "
                            "v1beta (HTTP 404)")
    assert "live.base_url and live.api_version" in check.advice
    assert classify(_status(503), S, 8).detail.endswith("refused the connection (HTTP 503)")


def test_setup_rejections_name_the_setting() -> None:
    model = classify(genai_errors.APIError(1008, "models/x is not found for API version"), S, 8)
    assert model.detail.startswith("live.model: 'gemini-3.8-live' is not available")
    assert model.advice.startswith("set live.model")
    voice = classify(genai_errors.APIError(1007, "Invalid voice_name: Nobody"), S, 8)
    assert voice.detail.startswith("live.voice: the Live API rejected the session setup (1007")
    assert voice.advice.startswith("fix live.voice")
    other = classify(genai_errors.APIError(1011, "Internal error"), S, 8)
    assert other.detail.startswith("server closed during setup (1011: Internal error)")
    assert "gemini-3.8-live" in other.detail and "live.model" in other.advice


def test_tls_points_at_the_clock_and_the_ca() -> None:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate has "
                                          "expired")
    exc.verify_message = "certificate has expired"
    check = classify(exc, S, 8)
    assert check.detail == ("TLS: the certificate of https://live.example:8443 was not accepted "
                            "(certificate has expired)")
    assert "clock" in check.advice and "live.ca_file" in check.advice
    plain = classify(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), S, 8)
    assert plain.detail.startswith("TLS handshake with https://live.example:8443 failed")


@pytest.mark.parametrize(("exc", "start"), [
    (TimeoutError(), "no answer from https://live.example:8443 within 8 s"),
    (ConnectionRefusedError(111, "Connect call failed"),
     "cannot reach https://live.example:8443 (ConnectionRefusedError"),
    (socket.gaierror(-2, "Name or service not known"), "cannot resolve the host of"),
    (InvalidURI("ftp://x", "scheme isn't ws or wss"), "https://live.example:8443 does not speak"),
    (RuntimeError("surprise"), "the connect failed unexpectedly (RuntimeError: surprise)"),
])
def test_the_network(exc: BaseException, start: str) -> None:
    check = classify(exc, S, 8)
    assert check.status == "fail" and check.detail.startswith(start), check.detail
    assert check.advice


def test_endpoint_and_server_date() -> None:
    assert endpoint(LiveSettings()) == "Google's Live endpoint"
    assert http_date(Headers({"Date": "Fri, 04 Dec 2026 20:22:26 GMT"})) == 1796415746.0
    assert http_date(Headers({"Date": "yesterday"})) is None
    assert http_date(Headers()) is None
    assert http_date(None) is None

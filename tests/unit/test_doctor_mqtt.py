"""How the doctor words the broker's answers: the step that failed (TCP, TLS, login by
CONNACK code) and whether any device announced itself under the discovery prefix."""

from __future__ import annotations

import socket
import ssl

import pytest

from daemon.config import MqttSettings
from daemon.doctor.mqtt import LOGIN_ADVICE, classify_connack, classify_reach, discovery_check

M = MqttSettings(host="broker.lan", port=1883, username="edge", client_id="edge-agent-pi")


@pytest.mark.parametrize(("code", "start"), [
    (134, "the broker at broker.lan:1883 refused the login of user 'edge': bad user name or "
          "password"),
    (4, "the broker at broker.lan:1883 refused the login of user 'edge': bad user name"),
    (135, "the broker at broker.lan:1883 did not authorise user 'edge'"),
    (5, "the broker at broker.lan:1883 did not authorise user 'edge'"),
])
def test_a_refused_login_names_the_user_and_the_settings(code: int, start: str) -> None:
    check = classify_connack(code, f"CONNACK {code}: x", M)
    assert check.status == "fail" and check.detail.startswith(start), check.detail
    assert check.advice == LOGIN_ADVICE


def test_other_connacks_and_anonymous() -> None:
    assert "rejected the client id" in classify_connack(133, "x", M).detail
    assert "says it is unavailable" in classify_connack(3, "x", M).detail
    assert "refused the connection (x)" in classify_connack(159, "x", M).detail
    anonymous = classify_connack(135, "x", M.model_copy(update={"username": ""}))
    assert "did not authorise anonymous (no mqtt.username)" in anonymous.detail


@pytest.mark.parametrize(("exc", "tls", "start", "advice"), [
    (ConnectionRefusedError(111, "refused"), False,
     "nothing listens at broker.lan:1883 (connection refused)", "start the broker"),
    (TimeoutError(), False, "broker.lan:1883: no answer to a TCP connection within 3 s",
     "check mqtt.host"),
    (TimeoutError(), True, "broker.lan:1883: no answer to the TLS handshake within 3 s",
     "check mqtt.host"),
    (socket.gaierror(-2, "Name or service not known"), False, "cannot resolve 'broker.lan'",
     "check mqtt.host and DNS"),
    (ssl.SSLError(1, "wrong version number"), True, "TLS handshake with broker.lan:1883 failed",
     "speaks TLS"),
    (OSError(113, "No route to host"), False, "cannot reach broker.lan:1883 (OSError",
     "the network"),
])
def test_reaching_the_broker(exc: BaseException, tls: bool, start: str, advice: str) -> None:
    check = classify_reach(exc, M, tls=tls, limit=3)
    assert check.detail.startswith(start), check.detail
    assert advice in check.advice


def test_an_untrusted_broker_certificate_points_at_the_ca_file() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    check = classify_reach(exc, M, tls=True, limit=3)
    assert check.detail == ("TLS: broker.lan:1883's certificate was not accepted "
                            "(self-signed certificate)")
    assert "mqtt.ca_file" in check.advice and "clock" in check.advice


CONFIG = b'{"name": "Lamp"}'


def test_discovery_seen_or_not() -> None:
    seen = [("homeassistant/light/lamp/config", CONFIG),
            ("homeassistant/sensor/pi/temp/config", CONFIG),
            ("homeassistant/light/gone/config", b""),  # a removed device
            ("homeassistant/light/lamp/state", b"ON")]
    check = discovery_check("homeassistant", "edge-agent-pi", seen, 2)
    assert check.status == "ok"
    assert check.detail == "2 device config(s) retained under homeassistant/"
    birth = discovery_check("ha", "edge-agent-pi", [("ha/status", b"online")], 2)
    assert birth.status == "ok" and birth.detail.startswith("Home Assistant is online")


def test_only_our_own_announcement_or_nothing_is_a_warning() -> None:
    own = [("homeassistant/switch/edge-agent-pi/microphone/config", CONFIG)]
    check = discovery_check("homeassistant", "edge-agent-pi", own, 2)
    assert check.status == "warn"
    assert check.detail.startswith("only edge-agent's own announcement under homeassistant/")
    nothing = discovery_check("my/prefix", "edge-agent-pi", [("my/prefix/status", b"offline")], 2)
    assert nothing.status == "warn"
    assert nothing.detail == ("nothing under my/prefix/ in 2 s: no device has announced "
                              "itself there")
    assert "mqtt.discovery_prefix" in nothing.advice

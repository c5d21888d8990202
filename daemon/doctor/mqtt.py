"""Does the broker work for us? Reachable, TLS, the login, and devices announced.

Step by step, so the line names the step that failed: a TCP connect, the TLS
handshake (when `mqtt.tls`), an MQTT 3.1.1 login with the configured user (the
CONNACK says whether the name or password was wrong or the user is not allowed),
then ~2 s subscribed to `<discovery_prefix>/#`: retained device configs or Home
Assistant's birth message mean discovery will find something. The doctor logs in
as `edge-agent-doctor-<pid>`, never as the daemon's client id (that would throw a
running daemon off the broker). The password is passed to the client, never
printed; the classifiers below are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from daemon.config import MqttSettings
from daemon.doctor.report import Check
from daemon.live.failures import brief

NAME = "mqtt"
DISCOVERY = "mqtt discovery"
STEP_TIMEOUT = 3.0
LISTEN = 2.0
MAX_SEEN = 10_000  # messages kept while listening (a big home has a few hundred)
_BAD_LOGIN = frozenset({4, 134})  # CONNACK: bad user name or password (3.1.1, 5)
_NOT_AUTHORISED = frozenset({5, 135})
_ID_REJECTED = frozenset({2, 133})
_UNAVAILABLE = frozenset({3, 136})
LOGIN_ADVICE = ("check mqtt.username and mqtt.password (or the credential mqtt_password) "
                "against the broker's password file and ACL")


@dataclass(slots=True)
class BrokerResult:
    """The broker's checks, and whether it let in a client without a login (if probed)."""

    checks: list[Check] = field(default_factory=list)
    takes_anonymous: bool | None = None


def where(m: MqttSettings) -> str:
    """host:port, for people."""
    return f"{m.host}:{m.port}"


def who(m: MqttSettings) -> str:
    """The login, by name only."""
    return f"user {m.username!r}" if m.username else "anonymous (no mqtt.username)"


def tls_context(m: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context `daemon.home.mqtt` uses: the system CAs or `mqtt.ca_file`."""
    if not m.tls:
        return None
    return ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)


async def check_broker(
    m: MqttSettings, *, step_timeout: float = STEP_TIMEOUT, listen: float = LISTEN,
    probe_anonymous: bool = False,
) -> BrokerResult:
    """Reach, handshake, log in, listen; stop at the first step that fails."""
    result = BrokerResult()
    failed = await _reach(m, step_timeout)
    if failed is not None:
        result.checks.append(failed)
        return result
    login, seen = await _log_in_and_listen(m, step_timeout, listen)
    result.checks.append(login)
    if login.status != "ok":
        return result
    result.checks.append(discovery_check(m.discovery_prefix, m.client_id, seen, listen))
    if probe_anonymous:
        if not m.username:
            result.takes_anonymous = True
        else:
            anonymous = m.model_copy(update={"username": "", "password": None})
            probe, _ = await _log_in_and_listen(anonymous, step_timeout, 0.0)
            result.takes_anonymous = probe.status == "ok"
    return result


async def _reach(m: MqttSettings, limit: float) -> Check | None:
    """TCP, then TLS when configured; a FAIL naming the step, or None."""
    for ctx in (None, tls_context(m)) if m.tls else (None,):
        try:
            async with asyncio.timeout(limit):
                _, writer = await asyncio.open_connection(
                    m.host, m.port, ssl=ctx, server_hostname=m.host if ctx else None
                )
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        except Exception as exc:
            return classify_reach(exc, m, tls=ctx is not None, limit=limit)
    return None


def classify_reach(exc: BaseException, m: MqttSettings, *, tls: bool, limit: float) -> Check:
    """Why the TCP connect or the TLS handshake failed, and what to do."""
    at = where(m)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Check.fail(NAME, f"TLS: {at}'s certificate was not accepted "
                                f"({exc.verify_message or brief(exc)})",
                          "check mqtt.ca_file (the CA that signed the broker's certificate) "
                          "and the clock")
    if isinstance(exc, ssl.SSLError):
        return Check.fail(NAME, f"TLS handshake with {at} failed ({brief(exc)})",
                          "check that this port speaks TLS (mqtt.port, mqtt.tls)")
    if isinstance(exc, TimeoutError):
        step = "the TLS handshake" if tls else "a TCP connection"
        return Check.fail(NAME, f"{at}: no answer to {step} within {limit:.0f} s",
                          "check mqtt.host, mqtt.port and a firewall between here and the "
                          "broker")
    if isinstance(exc, socket.gaierror):
        return Check.fail(NAME, f"cannot resolve {m.host!r} ({brief(exc)})",
                          "check mqtt.host and DNS")
    if isinstance(exc, ConnectionRefusedError):
        return Check.fail(NAME, f"nothing listens at {at} (connection refused)",
                          "start the broker (systemctl start mosquitto) or fix mqtt.host "
                          "and mqtt.port")
    return Check.fail(NAME, f"cannot reach {at} ({brief(exc)})",
                      "check mqtt.host, mqtt.port and the network")


async def _log_in_and_listen(
    m: MqttSettings, limit: float, listen: float
) -> tuple[Check, list[tuple[str, bytes]]]:
    """Log in; then, logged in, collect what arrives under the discovery prefix."""
    seen: list[tuple[str, bytes]] = []
    client = aiomqtt.Client(
        m.host, m.port,
        username=m.username or None,
        password=m.password.get_secret_value() if m.password else None,
        identifier=f"edge-agent-doctor-{os.getpid()}",
        tls_context=tls_context(m),
        protocol=aiomqtt.ProtocolVersion.V311,  # every broker speaks it; CONNACKs are plain
        clean_session=True,
        timeout=limit,
    )
    try:
        async with asyncio.timeout(2 * limit + listen), client:
            if listen > 0:
                await client.subscribe(f"{m.discovery_prefix}/#", qos=0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(listen):
                        async for msg in client.messages:
                            if len(seen) < MAX_SEEN:
                                seen.append((str(msg.topic), _payload(msg.payload)))
    except MqttConnectError as exc:
        code = getattr(exc.rc, "value", exc.rc)
        code = code if isinstance(code, int) else -1
        reason = str(exc) if isinstance(exc.rc, int) else str(exc.rc)  # paho's name for it
        return classify_connack(code, f"CONNACK {code}: {reason}", m), seen
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        return Check.fail(NAME, f"{where(m)} took the connection but the MQTT login did not "
                                f"complete ({brief(exc)})",
                          "check that mqtt.port is the broker's MQTT port and mqtt.tls matches "
                          "its listener"), seen
    tls = ", TLS verified" if m.tls else ""
    return Check.ok(NAME, f"{where(m)} reachable{tls}, logged in as {who(m)}"), seen


def _payload(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def classify_connack(code: int, text: str, m: MqttSettings) -> Check:
    """A refused login by its CONNACK code (3.1.1 and 5 numbering): name or password
    wrong, or the user not allowed; the password is never named, only the user."""
    if code in _BAD_LOGIN:
        return Check.fail(NAME, f"the broker at {where(m)} refused the login of {who(m)}: "
                                f"bad user name or password ({text})", LOGIN_ADVICE)
    if code in _NOT_AUTHORISED:
        return Check.fail(NAME, f"the broker at {where(m)} did not authorise {who(m)} ({text}): "
                                "a wrong password, an unknown user, or one it does not allow",
                          LOGIN_ADVICE)
    if code in _ID_REJECTED:
        return Check.fail(NAME, f"the broker at {where(m)} rejected the client id ({text})",
                          "check the broker's client id rules (mqtt.client_id)")
    if code in _UNAVAILABLE:
        return Check.fail(NAME, f"the broker at {where(m)} says it is unavailable ({text})",
                          "look at the broker's log; try again later")
    return Check.fail(NAME, f"the broker at {where(m)} refused the connection ({text})",
                      "look at the broker's log")


def discovery_check(
    prefix: str, own_id: str, seen: Sequence[tuple[str, bytes]], listen: float
) -> Check:
    """Retained device configs (not the daemon's own) or Home Assistant's birth message."""
    configs = others = 0
    birth = False
    for topic, payload in seen:
        if topic == f"{prefix}/status":
            birth = birth or payload.strip() == b"online"
            continue
        if not (topic.endswith("/config") and payload):
            continue
        configs += 1
        parts = topic[len(prefix) + 1:].split("/")
        if not (len(parts) == 4 and parts[1] == own_id):
            others += 1
    ha = "Home Assistant is online" if birth else ""
    if others:
        return Check.ok(DISCOVERY, f"{others} device config(s) retained under {prefix}/"
                                   + (f"; {ha}" if ha else ""))
    if birth:
        return Check.ok(DISCOVERY, f"{ha} ({prefix}/status); no device config retained yet")
    what = "only edge-agent's own announcement" if configs else "nothing"
    return Check.warn(DISCOVERY, f"{what} under {prefix}/ in {listen:.0f} s: no device has "
                                 f"announced itself there",
                      "check mqtt.discovery_prefix (Home Assistant's default is "
                      "homeassistant), or declare devices with [[mqtt.devices]]")

"""The MQTT connection without a broker: topic matching, the client id, the warning
about a password without TLS, and the bounded queue of waiting messages.

Against real mosquitto (restarts, sessions, at most once): tests/integration/test_home_mqtt.py.
"""

from __future__ import annotations

import logging

import aiomqtt
import pytest
from pydantic import SecretStr

from daemon.config import MqttSettings, default_client_id
from daemon.home.mqtt import (
    MqttConnection,
    topic_matches,
)
from daemon.home.mqtt.intake import counting_queue

pytestmark = pytest.mark.timeout(30)


@pytest.mark.timeout(30)
def test_topic_matching() -> None:
    assert topic_matches("a/b/c", "a/+/c") and topic_matches("a/b/c", "a/#")
    assert topic_matches("a", "a/#") and topic_matches("a/b", "#")
    assert not topic_matches("a/b/c", "a/+") and not topic_matches("a/b", "a/b/c")
    assert not topic_matches("$SYS/x", "#") and topic_matches("$SYS/x", "$SYS/#")


@pytest.mark.timeout(30)
def test_a_password_without_tls_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="daemon.home.mqtt")
    secret = SecretStr("hunter2-secret")
    MqttConnection(MqttSettings(host="192.0.2.7", username="edge", password=secret))
    warnings = [r for r in caplog.records if "unencrypted" in r.getMessage()]
    assert len(warnings) == 1 and "192.0.2.7" in warnings[0].getMessage()
    assert "hunter2" not in caplog.text
    caplog.clear()
    MqttConnection(MqttSettings(host="127.0.0.1", password=secret))  # never leaves the host
    MqttConnection(MqttSettings(host="192.0.2.7", password=secret, tls=True))
    MqttConnection(MqttSettings(host="192.0.2.7"))  # no password
    assert "unencrypted" not in caplog.text


@pytest.mark.timeout(30)
def test_the_default_client_id_is_this_hosts_own() -> None:
    mine = MqttSettings().client_id
    assert mine == default_client_id() == MqttSettings().client_id  # stable
    assert mine.startswith("edge-agent-") or mine == "edge-agent"
    assert default_client_id("kitchen-pi.local") == "edge-agent-kitchen-pi"
    assert default_client_id("Büro Pi!") == "edge-agent-B-ro-Pi"
    assert default_client_id("") == "edge-agent"
    assert len(default_client_id("x" * 300)) == 64
    assert MqttSettings(client_id="edge-agent").client_id == "edge-agent"  # the key stays


@pytest.mark.timeout(30)
async def test_waiting_messages_are_bounded_in_bytes_and_oversized_ones_never_wait() -> None:
    """The client's queue, before any copy or decode: a payload over its cap is dropped
    at once; the rest wait only up to a byte budget (each drop counted by reason)."""
    conn = MqttConnection(MqttSettings(host="127.0.0.1", max_discovery_bytes=4096,
                                       max_state_bytes=1024), max_queued_bytes=20_000)
    queue = counting_queue(conn.stats, conn.caps.oversized, 20_000)(maxsize=100)

    def message(topic: str, size: int) -> aiomqtt.Message:
        return aiomqtt.Message(topic, b"p" * size, 0, False, 0, None)

    queue.put_nowait(message("homeassistant/light/a/config", 4096))  # at the cap: kept
    queue.put_nowait(message("homeassistant/light/b/config", 4097))
    queue.put_nowait(message("homeassistant/light/b/other", 2000))  # not a config
    queue.put_nowait(message("some/state", 1024))
    assert queue.qsize() == 2
    assert (conn.stats.messages_oversized_discovery, conn.stats.messages_oversized_other) == (1, 1)
    for _ in range(40):
        queue.put_nowait(message("some/state", 1000))
    assert conn.stats.messages_dropped_backlog > 0 and queue.qsize() < 20
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(message("some/state", 1000))  # room again once read
    assert queue.qsize() == 1


def test_a_broker_gone_is_not_logged_as_an_error_by_the_library(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """paho says ERROR for a socket the broker reset; the supervisor already warns about
    it (the soak saw `ERROR mqtt: failed to receive on socket` at each broker restart)."""
    from daemon.home.mqtt.library_log import LIBRARY_LOG

    caplog.set_level(logging.INFO)
    LIBRARY_LOG.log(logging.ERROR, "failed to receive on socket: %s",
                    ConnectionResetError(104, "Connection reset by peer"))
    LIBRARY_LOG.log(logging.ERROR, "Caught exception in on_connect: %s", ValueError("bug"))
    levels = {r.getMessage().split(":")[0]: r.levelname for r in caplog.records}
    assert levels == {"failed to receive on socket": "INFO",
                      "Caught exception in on_connect": "ERROR"}
    caplog.clear()
    caplog.set_level(logging.WARNING)
    LIBRARY_LOG.log(logging.ERROR, "timeout on socket: %s", TimeoutError())
    assert caplog.records == []

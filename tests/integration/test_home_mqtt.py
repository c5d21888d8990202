"""The supervised MQTT connection against real mosquitto: restarts, sessions, at most once.

A small TCP proxy on loopback sits between the connection under test and the
broker, so a test can refuse reconnects for a while or swallow the broker's
replies (the PUBACK) to create "sent, but never acknowledged" on purpose.

Without a socket or a process: tests/unit/test_home_mqtt.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import paho.mqtt.client as paho
import pytest
from aiomqtt.exceptions import MqttCodeError
from pydantic import SecretStr

from daemon.config import MqttSettings
from daemon.home.mqtt import (
    MqttConnection,
    MqttMessage,
    NotPublished,
    PublishOutcome,
)
from simulator.broker import PrivateBroker
from tests.support.mqtt import Proxy, publish_raw
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(30)


def connection(port: int, client_id: str, **kw: object) -> MqttConnection:
    return MqttConnection(
        MqttSettings(host="127.0.0.1", port=port, client_id=client_id, **kw),
        backoff_initial=0.05,
        backoff_max=0.3,
        connect_timeout=1.0,
        op_timeout=5.0,
    )


class Recorder:
    def __init__(self) -> None:
        self.messages: list[MqttMessage] = []

    def __call__(self, msg: MqttMessage) -> None:
        self.messages.append(msg)

    def payloads(self, topic: str | None = None) -> list[str]:
        return [m.text() for m in self.messages if topic is None or m.topic == topic]


@pytest.mark.timeout(30)
async def test_restart_without_persistence_restores_subscriptions_and_online() -> None:
    async with PrivateBroker(persistence=False) as broker:
        rec, seen = Recorder(), Recorder()
        async with (
            connection(broker.port, "agent") as conn,
            connection(broker.port, "watcher") as watcher,
        ):
            sub = conn.subscribe("home/+/state", rec)
            watch = watcher.subscribe("edge-agent/agent/availability", seen)
            assert await conn.wait_subscribed(sub, timeout=5)
            assert await watcher.wait_subscribed(watch, timeout=5)
            await eventually(lambda: seen.payloads() == ["online"])
            await broker.restart()  # the broker forgets every subscription
            assert await conn.wait_subscribed(sub, timeout=10)
            assert await watcher.wait_subscribed(watch, timeout=10)
            await eventually(lambda: seen.payloads()[-1:] == ["online"])
            assert await watcher.publish("home/lamp/state", "ON") is PublishOutcome.ACKED
            await eventually(lambda: rec.payloads() == ["ON"])
            assert conn.stats.connects == 2 and conn.stats.disconnects == 1


@pytest.mark.timeout(30)
async def test_persistent_session_keeps_qos1_messages_across_a_broker_restart(
    broker: PrivateBroker,
) -> None:
    rec = Recorder()
    async with (
        Proxy(broker.port) as proxy,
        connection(proxy.port, "agent") as conn,
        connection(broker.port, "device") as device,
    ):
        sub = conn.subscribe("home/lamp/state", rec, qos=1)
        assert await conn.wait_subscribed(sub, timeout=5)
        proxy.accepting = False  # keep the agent away until we say so
        await broker.restart()
        await eventually(lambda: not conn.connected)
        assert await device.wait_connected(10)
        assert await device.publish("home/lamp/state", "ON", qos=1) is PublishOutcome.ACKED
        assert rec.messages == []
        proxy.accepting = True
        assert await conn.wait_connected(10)
        await eventually(lambda: rec.payloads() == ["ON"])  # queued for our session


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["broker_restart", "link_cut"])
async def test_command_is_not_published_twice_when_the_ack_is_lost(
    broker: PrivateBroker, fault: str
) -> None:
    got = Recorder()
    async with (
        Proxy(broker.port) as proxy,
        connection(proxy.port, "agent") as conn,
        connection(broker.port, "device") as device,
    ):
        sub = device.subscribe("home/garage/set", got, qos=1)
        assert await device.wait_subscribed(sub, timeout=5)
        assert await conn.wait_connected(5)
        proxy.swallow_downstream = True  # the broker's PUBACK never reaches the agent
        publish = asyncio.create_task(conn.publish("home/garage/set", "OPEN", timeout=20))
        await eventually(lambda: got.payloads() == ["OPEN"])
        # The device's PUBACK is processed before its next packet: no broker redelivery.
        assert await device.publish("home/device/ping", "1") is PublishOutcome.ACKED
        if fault == "broker_restart":
            await broker.restart()
        else:
            proxy.cut()
        proxy.swallow_downstream = False
        assert await publish is PublishOutcome.UNCONFIRMED
        assert await conn.wait_connected(10)
        assert await device.wait_subscribed(sub, timeout=10)
        # A resend would come before this marker on the same topic.
        assert await conn.publish("home/garage/set", "MARKER") is PublishOutcome.ACKED
        await eventually(lambda: "MARKER" in got.payloads())
        assert got.payloads() == ["OPEN", "MARKER"]
        assert conn.stats.publishes_unconfirmed == 1


@pytest.mark.timeout(30)
async def test_publish_while_disconnected_is_sent_once_after_reconnect_or_fails_cleanly(
    broker: PrivateBroker,
) -> None:
    got = Recorder()
    async with (
        Proxy(broker.port) as proxy,
        connection(proxy.port, "agent") as conn,
        connection(broker.port, "device") as device,
    ):
        sub = device.subscribe("cmd/#", got, qos=1)
        assert await device.wait_subscribed(sub, timeout=5)
        assert await conn.wait_connected(5)
        proxy.accepting = False
        proxy.cut()
        await eventually(lambda: not conn.connected)
        # Never handed over within its deadline: a clear error, and never sent later.
        with pytest.raises(NotPublished, match="nothing was sent"):
            await conn.publish("cmd/a", "late", timeout=0.3)
        # Cancelled while waiting: nothing sent either.
        waiting = asyncio.create_task(conn.publish("cmd/b", "cancelled", timeout=20))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Waiting within its deadline: sent once the link is back.
        pending = asyncio.create_task(conn.publish("cmd/c", "queued", timeout=20))
        await asyncio.sleep(0.2)
        proxy.accepting = True
        assert await pending is PublishOutcome.ACKED
        assert await conn.publish("cmd/d", "marker") is PublishOutcome.ACKED
        await eventually(lambda: "marker" in got.payloads())
        assert got.payloads() == ["queued", "marker"]
        assert conn.stats.publishes_not_sent == 1


@pytest.mark.timeout(30)
async def test_will_on_crash_and_offline_on_clean_stop(broker: PrivateBroker) -> None:
    seen = Recorder()
    async with connection(broker.port, "watcher") as watcher, Proxy(broker.port) as proxy:
        sub = watcher.subscribe("edge-agent/agent/availability", seen)
        assert await watcher.wait_subscribed(sub, timeout=5)
        async with connection(proxy.port, "agent") as conn:
            await eventually(lambda: seen.payloads()[-1:] == ["online"])
            proxy.accepting = False
            proxy.cut()  # the broker sees the socket die: it publishes our will
            await eventually(lambda: seen.payloads()[-1:] == ["offline"])
            proxy.accepting = True
            assert await conn.wait_connected(10)
            await eventually(lambda: seen.payloads()[-1:] == ["online"])
        await eventually(lambda: seen.payloads()[-1:] == ["offline"])  # said on clean stop
        assert seen.payloads() == ["online", "offline", "online", "offline"]


@pytest.mark.timeout(30)
async def test_handler_errors_and_cancelled_subscriptions(broker: PrivateBroker) -> None:
    good = Recorder()

    def bad(msg: MqttMessage) -> None:
        raise RuntimeError("boom")

    async with connection(broker.port, "agent") as conn:
        s1 = conn.subscribe("t/#", bad)
        s2 = conn.subscribe("t/+", good)
        assert await conn.wait_subscribed(s1, s2, timeout=5)
        await conn.publish("t/1", "a")
        # MQTT 5: the broker sends one copy per matching filter; each goes to its own.
        await eventually(lambda: good.payloads() == ["a"] and conn.stats.handler_errors == 1)
        await conn.publish("t/2", "z")
        await eventually(lambda: good.payloads() == ["a", "z"] and conn.stats.handler_errors == 2)
        barrier = Recorder()
        assert await conn.wait_subscribed(conn.subscribe("u", barrier), timeout=5)
        await conn.publish("u", "end")  # delivered after every copy of "z"
        await eventually(lambda: barrier.payloads() == ["end"])
        assert conn.stats.handler_errors == 2  # still once per message and handler
        assert good.payloads() == ["a", "z"]
        s2.cancel()
        await conn.publish("t/2", "b")
        await eventually(lambda: conn.stats.handler_errors == 3)
        assert good.payloads() == ["a", "z"]
        with pytest.raises(ValueError, match="filter"):
            conn.subscribe("a/#/b", good)
        with pytest.raises(ValueError, match="topic"):
            await conn.publish("a/+", "x")


@pytest.mark.timeout(30)
async def test_password_never_logged(
    broker: PrivateBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = MqttSettings(
        host="127.0.0.1",
        port=broker.port,
        client_id="agent",
        username="edge",
        password=SecretStr("hunter2-secret"),
    )
    conn = MqttConnection(settings, backoff_initial=0.05)
    assert "hunter2" not in repr(conn)
    async with conn:
        assert await conn.wait_connected(5)
        await conn.publish("x/y", "z")
    await broker.stop()
    async with conn:  # and while failing to connect
        await asyncio.sleep(0.3)
    assert conn.stats.connect_failures >= 1
    assert "hunter2" not in caplog.text
    assert "hunter2" not in conn.stats.last_error


@pytest.mark.timeout(30)
async def test_stop_is_clean_with_no_task_left_behind(broker: PrivateBroker) -> None:
    before = asyncio.all_tasks()
    conn = connection(broker.port, "agent")
    runner = asyncio.create_task(conn.run())
    assert await conn.wait_connected(5)
    conn.stop()
    await asyncio.wait_for(runner, 5)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    with pytest.raises(NotPublished):
        await conn.publish("a/b", "c", timeout=0.1)


@pytest.mark.timeout(30)
async def test_publish_refused_at_once_keeps_its_deadline(broker: PrivateBroker) -> None:
    """The client refuses while the session still looks alive: retries are paced and the
    deadline holds (NotPublished); bad input is raised at once, never retried."""
    conn = connection(broker.port, "agent")
    async with conn:
        assert await conn.wait_connected(5)
        session = conn._session  # noqa: SLF001 - the test swaps the live client's publish
        assert session is not None
        client = session.client
        real = client.publish
        attempts: list[str] = []
        refusal: BaseException = MqttCodeError(paho.MQTT_ERR_NO_CONN, "Could not publish")

        async def refuse(topic: str, *args: object, **kw: object) -> None:
            attempts.append(topic)
            raise refusal

        client.publish = refuse  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NotPublished, match="refused"):
            await conn.publish("a/b", "c", timeout=0.3)
        took = loop.time() - started
        assert 0.3 <= took < 1.5, took
        assert 2 <= len(attempts) <= 12, len(attempts)  # paced (~every 50 ms), not a busy loop
        # The session itself is fine.
        assert conn.connected and conn._session is session  # noqa: SLF001 - same session
        assert conn.stats.publishes_not_sent == 1

        for bad in (ValueError("payload too large"), TypeError("payload must be bytes")):
            attempts.clear()
            refusal = bad
            started = loop.time()
            with pytest.raises(type(bad), match="payload"):
                await conn.publish("a/b", "c", timeout=5.0)
            assert attempts == ["a/b"] and loop.time() - started < 0.5
        assert conn.stats.publishes_not_sent == 3

        client.publish = real  # type: ignore[method-assign]
        assert await conn.publish("a/b", "c", timeout=5.0) is PublishOutcome.ACKED


@pytest.mark.timeout(30)
async def test_tls_with_username_and_password(caplog: pytest.LogCaptureFixture) -> None:
    """A broker that speaks only TLS and takes only known users: the connection logs in
    over TLS; a wrong password or a missing CA is a clear error; no password in any log."""
    caplog.set_level(logging.DEBUG)
    secret, wrong = "s3cret-Pass-4711", "wrong-Pass-0815"
    async with PrivateBroker(users={"edge": secret}, tls=True) as broker:
        settings = MqttSettings(host="127.0.0.1", port=broker.port, client_id="agent",
                                username="edge", password=SecretStr(secret), tls=True,
                                ca_file=broker.ca_file)

        def conn_with(**update: object) -> MqttConnection:
            return MqttConnection(settings.model_copy(update=update), backoff_initial=0.05,
                                  backoff_max=0.2, connect_timeout=2.0)

        good = conn_with()
        got = Recorder()
        async with good:
            sub = good.subscribe("t/#", got)
            assert await good.wait_subscribed(sub, timeout=10)
            assert await good.publish("t/x", "over tls", timeout=5) is PublishOutcome.ACKED
            await eventually(lambda: got.payloads() == ["over tls"])
        assert good.stats.connect_failures == 0

        async def refused(conn: MqttConnection) -> str:
            async with conn:
                await eventually(lambda: conn.stats.connect_failures >= 2, 10)
                assert not conn.connected and conn.stats.connects == 0
            return conn.stats.last_error

        error = await refused(conn_with(password=SecretStr(wrong)))
        assert error.startswith("the broker refused the login of user 'edge'"), error
        assert error.endswith("check mqtt.username and mqtt.password")
        error = await refused(conn_with(username="", password=None))
        assert error.startswith("the broker refused the login of anonymous"), error
        error = await refused(conn_with(ca_file=None))  # the system CAs do not know this one
        assert "CERTIFICATE_VERIFY_FAILED" in error and "mqtt.ca_file" in error
        plain = conn_with(tls=False)  # the listener speaks only TLS
        async with plain:
            await eventually(lambda: plain.stats.connect_failures >= 1, 10)
            assert plain.stats.connects == 0
    assert "Not authorized" in caplog.text  # the refusals were logged ...
    assert secret not in caplog.text and wrong not in caplog.text  # ... without a password


# ------------------------------------------------------ no message can hurt us (issue 12)


@pytest.mark.timeout(30)
async def test_oversized_messages_are_not_even_sent_to_us(broker: PrivateBroker) -> None:
    """MQTT 5 Maximum Packet Size: mosquitto drops a bigger message for this client
    (it says so in its log); one under the packet limit but over its cap is dropped
    here, counted by kind, before anything reads it; the rest arrive."""
    await publish_raw(broker.port, [
        ("homeassistant/light/huge/config", 3_000_000, "h"),
        ("homeassistant/light/mid/config", 6000, "m"),
        ("state/big", 2000, "b"),
        ("homeassistant/light/ok/config", 100, "o"),
        ("state/ok", 100, "s"),
    ])
    seen = Recorder()
    async with connection(broker.port, "capped", max_discovery_bytes=4096,
                          max_state_bytes=1024) as conn:
        assert conn.mqtt5 and conn.max_packet_bytes == 4096 + 4096
        subs = [conn.subscribe("homeassistant/#", seen), conn.subscribe("state/#", seen)]
        assert await conn.wait_subscribed(*subs, timeout=5)
        await eventually(lambda: {m.topic for m in seen.messages} ==
                         {"homeassistant/light/ok/config", "state/ok"})
        await eventually(lambda: conn.stats.messages_oversized_discovery == 1
                         and conn.stats.messages_oversized_other == 1)
        assert "Dropping too large outgoing PUBLISH for capped" in broker.log_text()
        assert conn.connected and conn.stats.disconnects == 0


@pytest.mark.timeout(30)
async def test_a_broker_without_mqtt5_gets_311_and_big_messages_are_dropped_here(
    broker: PrivateBroker,
) -> None:
    await publish_raw(broker.port, [("homeassistant/light/huge/config", 3_000_000, "h"),
                                    ("homeassistant/light/ok/config", 100, "o")])
    seen = Recorder()
    proxy = Proxy(broker.port, mqtt5=False)
    async with proxy, connection(proxy.port, "old-broker") as conn:
        sub = conn.subscribe("homeassistant/#", seen)
        assert await conn.wait_subscribed(sub, timeout=5)
        assert not conn.mqtt5 and conn.stats.mqtt5_refused == 1
        assert proxy.refused_mqtt5 == 1
        await eventually(lambda: conn.stats.messages_oversized_discovery == 1
                         and [m.topic for m in seen.messages] == ["homeassistant/light/ok/config"])
        await conn.publish("x/y", "still working")
        assert conn.stats.publishes_acked == 1


@pytest.mark.timeout(30)
async def test_two_daemons_with_one_client_id_are_warned_about(
    broker: PrivateBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daemon.home.mqtt")
    async with connection(broker.port, "twin") as one, connection(broker.port, "twin") as two:
        await eventually(lambda: "same mqtt.client_id" in caplog.text, 15)
        # mosquitto 2.0 closes the older connection without saying why (no reason 142).
        assert one.stats.connect_loops + two.stats.connect_loops >= 1
        assert "another client taking over our session" in caplog.text
    caplog.clear()
    async with connection(broker.port, "alone") as solo:  # one client: no warning
        assert await solo.wait_connected(5)
        await asyncio.sleep(0.5)
    assert "client_id" not in caplog.text and solo.stats.session_takeovers == 0

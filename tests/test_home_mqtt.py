"""The supervised MQTT connection against real mosquitto: restarts, sessions, at most once.

A small TCP proxy on loopback sits between the connection under test and the
broker, so a test can refuse reconnects for a while or swallow the broker's
replies (the PUBACK) to create "sent, but never acknowledged" on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

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
    topic_matches,
)
from simulator.broker import PrivateBroker

pytestmark = pytest.mark.timeout(30)


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


class Proxy:
    """Loopback TCP relay; can refuse clients, swallow downstream bytes, or cut links."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.accepting = True
        self.swallow_downstream = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every relayed connection at once (no MQTT DISCONNECT)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if not self.accepting:
                c_writer.transport.abort()
                return
            try:
                b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                c_writer.transport.abort()
                return
            self._writers |= {c_writer, b_writer}
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._pump(c_reader, b_writer, c_writer, downstream=False))
                    tg.create_task(self._pump(b_reader, c_writer, b_writer, downstream=True))
            except* (OSError, ConnectionError):
                pass
        finally:
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        downstream: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if downstream and self.swallow_downstream:
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
            other.transport.abort()
            self._writers.discard(writer)
            self._writers.discard(other)


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


@pytest.fixture
async def broker() -> AsyncIterator[PrivateBroker]:
    async with PrivateBroker() as b:
        yield b


@pytest.mark.timeout(30)
def test_topic_matching() -> None:
    assert topic_matches("a/b/c", "a/+/c") and topic_matches("a/b/c", "a/#")
    assert topic_matches("a", "a/#") and topic_matches("a/b", "#")
    assert not topic_matches("a/b/c", "a/+") and not topic_matches("a/b", "a/b/c")
    assert not topic_matches("$SYS/x", "#") and topic_matches("$SYS/x", "$SYS/#")


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
        await eventually(lambda: good.payloads() == ["a"])
        assert conn.stats.handler_errors == 1
        s2.cancel()
        await conn.publish("t/2", "b")
        await eventually(lambda: conn.stats.handler_errors == 2)
        assert good.payloads() == ["a"]
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
        session = conn._session
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
        assert conn.connected and conn._session is session  # the session itself is fine
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

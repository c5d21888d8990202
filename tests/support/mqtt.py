"""MQTT helpers: a connection that reconnects quickly, a `Watcher` that sees every
message the broker delivers, a `SpyPublisher`, a TCP `Proxy` a test can cut, and
`publish_raw` (big retained messages made and sent by another process).

A small TCP proxy on loopback sits between the connection under test and the
broker, so a test can refuse reconnects for a while or swallow the broker's
replies (the PUBACK) to create "sent, but never acknowledged" on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable
from typing import Any

from daemon.config import MqttSettings
from daemon.home.mqtt import MqttConnection, MqttMessage, PublishOutcome
from simulator.broker import PrivateBroker
from tests.support.waiting import eventually


def fast_connection(settings: MqttSettings, **kw: Any) -> MqttConnection:
    """A connection that reconnects quickly (broker restarts in tests)."""
    return MqttConnection(
        settings, backoff_initial=0.05, backoff_max=0.3, connect_timeout=1.0, **kw
    )


class Watcher:
    """Sees every message the broker delivers (`#`), in order, with a barrier."""

    def __init__(self, broker: PrivateBroker, client_id: str = "watcher") -> None:
        self.conn = fast_connection(
            MqttSettings(host=broker.host, port=broker.port, client_id=client_id),
            availability_topic="",
            clean_session=True,
        )
        self.messages: list[MqttMessage] = []
        self._marks = itertools.count()

    async def __aenter__(self) -> Watcher:
        await self.conn.__aenter__()
        sub = self.conn.subscribe("#", self.messages.append, qos=2)
        assert await self.conn.wait_subscribed(sub, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.__aexit__(None, None, None)

    def mark(self) -> int:
        return len(self.messages)

    async def barrier(self, via: MqttConnection | None = None) -> None:
        """A round trip through the broker: what was published before has arrived.

        `via` the daemon's own connection, the marker queues behind anything the
        daemon handed over before (even a publish whose PUBACK it stopped waiting for).
        """
        token = f"barrier-{next(self._marks)}"
        await (via or self.conn).publish("test/barrier", token, qos=1)
        await eventually(
            lambda: any(m.topic == "test/barrier" and m.text() == token for m in self.messages)
        )

    def since(self, mark: int, topics: Callable[[str], bool] | None = None) -> list[MqttMessage]:
        return [
            m
            for m in self.messages[mark:]
            if m.topic != "test/barrier" and (topics is None or topics(m.topic))
        ]

    async def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        await self.conn.publish(topic, payload, qos=1, retain=retain)


class SpyPublisher:
    """The real connection, with a record of every publish the executor asked for."""

    def __init__(self, conn: MqttConnection) -> None:
        self.conn = conn
        self.calls: list[tuple[str, str | bytes]] = []

    async def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> PublishOutcome:
        self.calls.append((topic, payload))
        return await self.conn.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)


class Proxy:
    """Loopback TCP relay; can refuse clients, swallow downstream bytes, or cut links.

    With `mqtt5 = False` it answers an MQTT 5 CONNECT as a 3.1.1-only broker does
    (CONNACK "unacceptable protocol version") and relays 3.1.1 ones.
    """

    def __init__(self, port: int, *, mqtt5: bool = True) -> None:
        self.target = port
        self.accepting = True
        self.swallow_downstream = False
        self.mqtt5 = mqtt5
        self.refused_mqtt5 = 0
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
            first = b""
            if not self.mqtt5:
                first = await c_reader.read(65536)
                if _protocol_level(first) == 5:
                    self.refused_mqtt5 += 1
                    c_writer.write(b"\x20\x02\x00\x01")  # 3.1.1 CONNACK: bad protocol
                    await c_writer.drain()
                    c_writer.transport.abort()
                    return
            try:
                b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                c_writer.transport.abort()
                return
            b_writer.write(first)
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


def _protocol_level(connect: bytes) -> int | None:
    """The protocol level of a CONNECT packet (4: MQTT 3.1.1, 5: MQTT 5)."""
    if not connect or connect[0] != 0x10:
        return None
    i = 1
    while i < len(connect) and connect[i] & 0x80:  # remaining length, a varint
        i += 1
    name_at = i + 1
    level_at = name_at + 2 + 4  # length-prefixed "MQTT"
    return connect[level_at] if len(connect) > level_at else None


async def publish_raw(port: int, messages: list[tuple[str, int, str]]) -> None:
    """Retained discovery-like messages `(topic, size, fill)` made and sent by another
    process: their bytes never exist in this one."""
    script = (
        "import sys, paho.mqtt.client as m\n"
        "c = m.Client(m.CallbackAPIVersion.VERSION2, client_id='raw-publisher')\n"
        "c.connect('127.0.0.1', int(sys.argv[1])); c.loop_start()\n"
        "for spec in sys.argv[2:]:\n"
        "    topic, size, fill = spec.split('|')\n"
        "    body = ('{\"name\": \"' + fill * int(size) + '\", \"cmd_t\": \"x/set\"}').encode()\n"
        "    c.publish(topic, body, qos=1, retain=True).wait_for_publish(30)\n"
        "c.loop_stop(); c.disconnect()\n"
    )
    specs = [f"{topic}|{size}|{fill}" for topic, size, fill in messages]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(port), *specs)
    assert await asyncio.wait_for(proc.wait(), 30) == 0

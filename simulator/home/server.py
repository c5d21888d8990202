"""Runs virtual devices on a broker: discovery, commands, state reports, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from types import TracebackType
from typing import Any, Self

from daemon.config import MqttSettings
from daemon.home.mqtt import MqttConnection, MqttMessage, NotPublished, Subscription
from simulator.broker import PrivateBroker
from simulator.home.catalog import default_devices
from simulator.home.device import BRIDGE_TOPIC, VirtualDevice

log = logging.getLogger(__name__)


class VirtualHome:
    """Runs a set of virtual devices on a broker until the context exits."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[VirtualDevice] | None = None,
        *,
        prefix: str = "homeassistant",
        client_id: str = "edge-sim-home",
        latency: float = 0.0,
        retain_discovery: bool = True,
    ) -> None:
        self.devices = {d.object_id: d for d in (devices or default_devices())}
        self.prefix = prefix
        self.latency = latency
        self.retain_discovery = retain_discovery
        self.received: list[tuple[str, str]] = []
        self.announcements = 0
        self._by_topic = {t: d for d in self.devices.values() for t in d.command_topics()}
        self.conn = MqttConnection(
            MqttSettings(host=host, port=port, client_id=client_id),
            availability_topic=BRIDGE_TOPIC,
            backoff_initial=0.05,
            backoff_max=1.0,
            stable_after=1.0,
        )
        self._locks = {d: asyncio.Lock() for d in self.devices}
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        try:
            self._tg = await stack.enter_async_context(asyncio.TaskGroup())
            await stack.enter_async_context(self.conn)
            subs: list[Subscription] = [
                self.conn.subscribe(t, self._on_command) for t in sorted(self._by_topic)
            ]
            subs.append(self.conn.subscribe(f"{self.prefix}/status", self._on_ha_status))
            if not await self.conn.wait_subscribed(*subs, timeout=10):
                raise ConnectionError("virtual home could not reach the MQTT broker")
            await self.announce()
            for dev in self.devices.values():
                await self._publish(dev.availability_topic, "online" if dev.online else "offline")
                for topic, payload in dev.state_messages():
                    await self._publish(topic, payload)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        for task in list(self._tasks):  # pending replies die with the home
            task.cancel()
        if stack is not None:
            await stack.__aexit__(None, None, None)  # keep the caller's exception unwrapped

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tg is None:
            coro.close()
            return
        task = self._tg.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except NotPublished as exc:  # broker gone: the device's reply is lost, as in life
            log.warning("virtual home could not publish: %s", exc)

    async def _publish(self, topic: str, payload: str, *, retain: bool = True) -> None:
        await self.conn.publish(topic, payload, qos=1, retain=retain, timeout=10)

    async def announce(self) -> None:
        """(Re)publish every discovery config, except those of withdrawn devices."""
        self.announcements += 1
        for dev in self.devices.values():
            if dev.withdrawn:
                continue
            await self._publish(
                dev.discovery_topic(self.prefix),
                json.dumps(dev.config),
                retain=self.retain_discovery,
            )

    async def remove(self, object_id: str) -> None:
        """Withdraw a device: empty retained discovery payload, and no more announcements."""
        dev = self.devices[object_id]
        dev.withdrawn = True
        await self._publish(dev.discovery_topic(self.prefix), "")

    async def set_online(self, object_id: str, online: bool) -> None:
        """Report the device (un)available; offline devices also ignore commands."""
        dev = self.devices[object_id]
        dev.online = online
        await self._publish(dev.availability_topic, "online" if online else "offline")

    def set_ignore_commands(self, object_id: str, ignore: bool = True) -> None:
        """Make a device drop commands silently, as a dead relay would (a test's timeout)."""
        self.devices[object_id].ignore_commands = ignore

    def _on_ha_status(self, msg: MqttMessage) -> None:
        if msg.text() == "online":
            self._spawn(self.announce())

    def _on_command(self, msg: MqttMessage) -> None:
        dev = self._by_topic.get(msg.topic)
        if dev is None:
            return
        payload = msg.text()
        self.received.append((msg.topic, payload))
        dev.received.append((msg.topic, payload))
        if dev.ignore_commands or not dev.online:
            return
        self._spawn(self._respond(dev, msg.topic, payload))

    async def _respond(self, dev: VirtualDevice, topic: str, payload: str) -> None:
        async with self._locks[dev.object_id]:
            latency = self.latency if dev.latency is None else dev.latency
            if latency > 0:
                await asyncio.sleep(latency)
            for delay, state_topic, state_payload in dev.on_command(topic, payload):
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._publish(state_topic, state_payload)


@contextlib.asynccontextmanager
async def demo_home(mqtt: MqttSettings, *, latency: float = 0.0) -> AsyncIterator[MqttSettings]:
    """For `edge-agent demo`: the MQTT settings the daemon should use, with a home on them.

    With no broker configured (`mqtt.host` empty) this starts a private mosquitto on a
    free loopback port and the default virtual home on it, and yields `mqtt` pointing
    there. With a broker configured it yields `mqtt` unchanged and starts nothing: the
    demo never puts simulated devices on a real Home Assistant's broker.
    """
    if mqtt.host:
        yield mqtt
        return
    async with (
        PrivateBroker() as broker,
        VirtualHome(
            broker.host,
            broker.port,
            default_devices(),
            prefix=mqtt.discovery_prefix,
            latency=latency,
        ),
    ):
        yield mqtt.model_copy(update={"host": broker.host, "port": broker.port, "tls": False})

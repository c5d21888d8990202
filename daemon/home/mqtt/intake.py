"""What a received message may cost before anything reads it: caps by length, bounded waiting.

A payload over its cap (discovery configs under the discovery prefix have theirs,
everything else the other) is dropped and counted by kind before anything copies,
decodes or parses it; the messages waiting to be read are bounded in number (the
queue's size) and in bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiomqtt

from daemon.home.mqtt.messages import MqttStats
from daemon.ops.lograte import seldom

log = logging.getLogger(__name__)


class PayloadCaps:
    """Which received payloads are too big to touch (each one counted in `stats`)."""

    def __init__(
        self, stats: MqttStats, discovery_prefix: str, max_discovery: int, max_other: int
    ) -> None:
        self.stats = stats
        self.max_discovery = max_discovery
        self.max_other = max_other
        self._discovery_root = discovery_prefix.split("/")

    def oversized(self, message: aiomqtt.Message) -> bool:
        """Over its cap (counted): a discovery config's, or everything else's."""
        size = payload_size(message)
        if size <= min(self.max_discovery, self.max_other):
            return False
        parts = message.topic.value.split("/")
        root = self._discovery_root
        if parts[: len(root)] == root and parts[-1] == "config" and len(parts) > len(root):
            if size > self.max_discovery:
                self.stats.messages_oversized_discovery += 1
                return True
            return False
        if size > self.max_other:
            self.stats.messages_oversized_other += 1
            return True
        return False


def payload_size(message: aiomqtt.Message) -> int:
    """The payload's length, without copying it."""
    raw: object = message.payload
    return len(raw) if isinstance(raw, bytes | bytearray | str) else 0


def _footprint(message: aiomqtt.Message) -> int:
    """Roughly what a waiting message holds: its payload, and paho's objects (an MQTT 5
    message carries a Properties object of about 6 KB)."""
    return payload_size(message) + (6144 if message.properties is not None else 512)


def counting_queue(
    stats: MqttStats, oversized: Callable[[aiomqtt.Message], bool], max_bytes: int
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """The client's queue of received messages: drops (and counts) an oversized one
    before anything else touches it, and any one that would exceed `max_bytes` waiting."""

    class _Queue(asyncio.Queue[aiomqtt.Message]):
        waiting_bytes = 0

        def put_nowait(self, item: aiomqtt.Message) -> None:
            if oversized(item):
                return
            size = _footprint(item)
            if self.full():
                stats.messages_dropped += 1
                if seldom(stats.messages_dropped):  # aiomqtt would log every one
                    log.warning("MQTT messages arrive faster than they are read: dropped "
                                "(%d so far)", stats.messages_dropped)
                return
            if self.waiting_bytes + size > max_bytes:
                stats.messages_dropped_backlog += 1
                return
            super().put_nowait(item)
            self.waiting_bytes += size

        def get_nowait(self) -> aiomqtt.Message:
            item = super().get_nowait()
            self.waiting_bytes -= _footprint(item)
            return item

    return _Queue

"""MQTT values independent of the client library: messages, outcomes, counters, filters."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from daemon.errors import EdgeAgentError


@dataclass(frozen=True)
class MqttMessage:
    """A received message, independent of the client library."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def text(self) -> str:
        """The payload as text (undecodable bytes replaced)."""
        return self.payload.decode("utf-8", errors="replace")


MessageHandler = Callable[[MqttMessage], None]


class PublishOutcome(enum.Enum):
    """What became of a message handed to the client (see MqttConnection.publish)."""

    ACKED = "acked"  # the broker acknowledged it (PUBACK)
    UNCONFIRMED = "unconfirmed"  # handed over, then the link or deadline ran out; not re-sent


class NotPublished(EdgeAgentError, ConnectionError):
    """Nothing was sent and nothing will be: the message never left this process."""


@dataclass
class MqttStats:
    """Counters until they move to daemon.ops.metrics."""

    connect_attempts: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    session_takeovers: int = 0  # the broker said another client took our session
    connect_loops: int = 0  # warnings: lost again and again soon after connecting
    mqtt5_refused: int = 0  # the broker speaks 3.1.1 only: fell back
    messages_received: int = 0
    messages_dropped: int = 0  # the waiting queue was full (count)
    messages_dropped_backlog: int = 0  # the waiting queue held too many bytes
    messages_oversized_discovery: int = 0  # a discovery config over max_discovery_bytes
    messages_oversized_other: int = 0  # any other message over max_state_bytes
    handler_errors: int = 0
    publishes_acked: int = 0
    publishes_unconfirmed: int = 0
    publishes_not_sent: int = 0
    subscribe_failures: int = 0
    last_error: str = ""


def topic_matches(topic: str, topic_filter: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest)."""
    t_parts = topic.split("/")
    f_parts = topic_filter.split("/")
    if t_parts[0].startswith("$") and f_parts[0] in ("+", "#"):
        return False
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(t_parts) == len(f_parts)


def valid_filter(topic_filter: str) -> bool:
    """A filter we may subscribe to: `#` only last and alone, `+` only alone in a level."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True

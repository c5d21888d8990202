"""One supervised MQTT connection for the home (see `connection` for its guarantees)."""

from daemon.home.mqtt.connection import MqttConnection, Subscription
from daemon.home.mqtt.messages import (
    MessageHandler,
    MqttMessage,
    MqttStats,
    NotPublished,
    PublishOutcome,
    topic_matches,
)

__all__ = [
    "MessageHandler",
    "MqttConnection",
    "MqttMessage",
    "MqttStats",
    "NotPublished",
    "PublishOutcome",
    "Subscription",
    "topic_matches",
]

"""The MQTT library's own log, with the socket losses it reports as errors demoted.

paho logs a broker that went away ("failed to receive on socket: [Errno 104] ...",
"timeout on socket") at ERROR, under the bare logger name "mqtt". The connection
supervisor handles every such loss and says so itself, at WARNING, with the broker
and the reconnect delay; an ERROR beside it on each broker restart would send whoever
reads the journal looking for a fault that was already recovered. Anything else paho
reports as an error (an exception in a callback) keeps its level.
"""

from __future__ import annotations

import logging

__all__ = ["LIBRARY_LOG"]

_HANDLED = ("failed to receive on socket", "timeout on socket")


class _DemoteHandledLosses(logging.Filter):
    """Socket losses the supervisor handles become INFO; the rest passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(_HANDLED):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return LIBRARY_LOG.isEnabledFor(logging.INFO)  # as if logged at INFO
        return True


LIBRARY_LOG = logging.getLogger("daemon.home.mqtt.library")
"""Handed to every aiomqtt client (and so to paho) the daemon makes."""
LIBRARY_LOG.addFilter(_DemoteHandledLosses())

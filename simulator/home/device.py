"""What every simulated device is: a discovery config, a state, and how it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BRIDGE_TOPIC = "sim-home/bridge/availability"
Step = tuple[float, str, str]  # (delay before, topic, payload), published retained


def avty(base: str, *, tilde: bool = False) -> dict[str, Any]:
    """Availability as a Zigbee bridge gives it: the bridge's and the device's own."""
    own = "~/availability" if tilde else f"{base}/availability"
    return {"avty": [{"t": BRIDGE_TOPIC}, {"t": own}], "avty_mode": "all"}


def dev_block(ident: str, name: str, area: str, model: str) -> dict[str, Any]:
    """The device block of a config, abbreviated."""
    return {"ids": [ident], "name": name, "mf": "Edge Sim", "mdl": model, "sa": area}


@dataclass
class VirtualDevice:
    """One simulated entity: its discovery config, state and command behaviour."""

    component: str
    object_id: str
    config: dict[str, Any]
    node_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    online: bool = True
    ignore_commands: bool = False
    withdrawn: bool = False  # its config was removed: not announced again
    latency: float | None = None
    received: list[tuple[str, str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The topic prefix of the device's own topics."""
        return f"sim/{self.object_id}"

    @property
    def availability_topic(self) -> str:
        """Where the device says online or offline (retained)."""
        return f"{self.base}/availability"

    def discovery_topic(self, prefix: str) -> str:
        """Where its retained discovery config goes under the discovery `prefix`."""
        node = f"{self.node_id}/" if self.node_id else ""
        return f"{prefix}/{self.component}/{node}{self.object_id}/config"

    def command_topics(self) -> set[str]:
        """The topics it obeys; the home routes each one to this device alone."""
        return set()

    def state_messages(self) -> list[tuple[str, str]]:
        """Its current state as (topic, payload) messages: published at start and by `_now`."""
        return []

    def on_command(self, topic: str, payload: str) -> list[Step]:
        """Apply a command; the state messages to publish afterwards."""
        return []

    def _now(self) -> list[Step]:
        return [(0.0, t, p) for t, p in self.state_messages()]


def int_of(payload: str) -> int | None:
    """A command's number ("42", "42.0"), or None."""
    try:
        return int(float(payload))
    except ValueError:
        return None

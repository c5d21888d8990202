"""A simulated smart plug: full keys, a node id, JSON state read by a template."""

from __future__ import annotations

import json

from typing_extensions import override

from simulator.home.device import BRIDGE_TOPIC, Step, VirtualDevice


class SimSwitch(VirtualDevice):
    """Switch with full keys, a node id, and JSON state read by a value template."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "switch",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "command_topic": f"{base}/set",
                "state_topic": f"{base}/state",
                "value_template": "{{ value_json.state }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "availability": [
                    {"topic": BRIDGE_TOPIC},
                    {"topic": f"{base}/availability", "payload_available": "online"},
                ],
                "availability_mode": "all",
                "device": {
                    "identifiers": [f"sim-{object_id}"],
                    "name": name,
                    "manufacturer": "Edge Sim",
                    "suggested_area": area,
                },
            },
            node_id="sim",
            state={"state": "OFF", "power": 0.0},
        )

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", json.dumps(self.state))]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if payload not in ("ON", "OFF"):
            return []
        self.state = {"state": payload, "power": 40.5 if payload == "ON" else 0.0}
        return self._now()

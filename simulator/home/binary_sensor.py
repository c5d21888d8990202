"""A simulated door contact."""

from __future__ import annotations

from typing_extensions import override

from simulator.home.device import VirtualDevice, avty


class SimDoorContact(VirtualDevice):
    """Door contact (binary_sensor) with custom on/off payloads."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "binary_sensor",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "state_topic": f"{base}/state",
                "payload_on": "open",
                "payload_off": "closed",
                "device_class": "door",
                **avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
            state={"contact": "closed"},
        )

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["contact"])]

"""A simulated button: presses are counted."""

from __future__ import annotations

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty


class SimButton(VirtualDevice):
    """A button: presses are recorded in `presses`."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "button",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "command_topic": f"{base}/press",
                "payload_press": "PRESS",
                **avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
        )
        self.presses = 0

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/press"}

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if payload == "PRESS":
            self.presses += 1
        return []

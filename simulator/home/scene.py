"""A simulated scene: activations are counted."""

from __future__ import annotations

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block


class SimScene(VirtualDevice):
    """A scene: activations are recorded in `activations`."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "scene",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/activate",
                "pl_on": "ACTIVATE",
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Scene"),
            },
        )
        self.activations = 0

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/activate"}

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if payload == "ACTIVATE":
            self.activations += 1
        return []

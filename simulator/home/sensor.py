"""A simulated temperature sensor reporting JSON."""

from __future__ import annotations

import json

from typing_extensions import override

from simulator.home.device import VirtualDevice, avty, dev_block


class SimTemperatureSensor(VirtualDevice):
    """Temperature sensor reporting JSON read through a value template."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "sensor",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "stat_t": f"{base}/state",
                "val_tpl": "{{ value_json.temperature }}",
                "unit_of_meas": "°C",
                "dev_cla": "temperature",
                "stat_cla": "measurement",
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Climate sensor"),
            },
            state={"temperature": 21.5, "humidity": 45},
        )

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", json.dumps(self.state))]

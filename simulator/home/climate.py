"""A simulated thermostat."""

from __future__ import annotations

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty


class SimThermostat(VirtualDevice):
    """Thermostat: modes off/heat/cool/auto, target 10..30 °C in 0.5 steps."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "climate",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "mode_command_topic": f"{base}/mode/set",
                "mode_state_topic": f"{base}/mode",
                "modes": ["off", "heat", "cool", "auto"],
                "temperature_command_topic": f"{base}/target/set",
                "temperature_state_topic": f"{base}/target",
                "current_temperature_topic": f"{base}/current",
                "min_temp": 10,
                "max_temp": 30,
                "temp_step": 0.5,
                "temperature_unit": "C",
                **avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
            state={"mode": "heat", "target": 20.0, "current": 19.5},
        )

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/mode/set", f"{self.base}/target/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        b, s = self.base, self.state
        return [
            (f"{b}/mode", s["mode"]),
            (f"{b}/target", f"{s['target']:.1f}"),
            (f"{b}/current", f"{s['current']:.1f}"),
        ]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if topic == f"{self.base}/mode/set" and payload in ("off", "heat", "cool", "auto"):
            self.state["mode"] = payload
        elif topic == f"{self.base}/target/set":
            try:
                value = float(payload)
            except ValueError:
                return []
            if not 10 <= value <= 30 or (value * 2) % 1:
                return []
            self.state["target"] = value
        else:
            return []
        return self._now()

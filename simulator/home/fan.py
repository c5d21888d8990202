"""A simulated tower fan: speeds 1..10, presets, oscillation."""

from __future__ import annotations

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block, int_of


class SimFan(VirtualDevice):
    """Fan with speeds 1..10, preset modes and oscillation (abbreviated keys)."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "fan",
            object_id,
            {
                "name": None,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                "pct_cmd_t": f"{base}/speed/set",
                "pct_stat_t": f"{base}/speed",
                "spd_rng_min": 1,
                "spd_rng_max": 10,
                "pr_mode_cmd_t": f"{base}/preset/set",
                "pr_mode_stat_t": f"{base}/preset",
                "pr_modes": ["auto", "sleep", "breeze"],
                "osc_cmd_t": f"{base}/oscillate/set",
                "osc_stat_t": f"{base}/oscillate",
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Tower fan"),
            },
            node_id="sim",
            state={"state": "OFF", "speed": 3, "preset": "auto", "osc": "oscillate_off"},
        )

    @override
    def command_topics(self) -> set[str]:
        b = self.base
        return {f"{b}/set", f"{b}/speed/set", f"{b}/preset/set", f"{b}/oscillate/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        b, s = self.base, self.state
        return [
            (f"{b}/state", s["state"]),
            (f"{b}/speed", str(s["speed"])),
            (f"{b}/preset", s["preset"]),
            (f"{b}/oscillate", s["osc"]),
        ]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        b = self.base
        if topic == f"{b}/set" and payload in ("ON", "OFF"):
            self.state["state"] = payload
        elif topic == f"{b}/speed/set" and (v := int_of(payload)) is not None and 1 <= v <= 10:
            self.state.update(state="ON", speed=v)
        elif topic == f"{b}/preset/set" and payload in ("auto", "sleep", "breeze"):
            self.state.update(state="ON", preset=payload)
        elif topic == f"{b}/oscillate/set" and payload in ("oscillate_on", "oscillate_off"):
            self.state["osc"] = payload
        else:
            return []
        return self._now()

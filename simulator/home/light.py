"""Simulated lights: a default-schema CT bulb and a JSON-schema RGB lamp."""

from __future__ import annotations

import json

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block, int_of


class SimLight(VirtualDevice):
    """Default schema light: on/off, brightness 0..100, colour temperature in mireds."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "light",
            object_id,
            {
                "~": base,
                "name": None,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": "~/set",
                "stat_t": "~/state",
                "bri_cmd_t": "~/brightness/set",
                "bri_stat_t": "~/brightness",
                "bri_scl": 100,
                "clr_temp_cmd_t": "~/color_temp/set",
                "clr_temp_stat_t": "~/color_temp",
                "min_mirs": 153,
                "max_mirs": 454,
                **avty(base, tilde=True),
                "dev": dev_block(f"sim-{object_id}", name, area, "CT bulb"),
            },
            state={"state": "OFF", "brightness": 100, "color_temp": 370},
        )

    @override
    def command_topics(self) -> set[str]:
        b = self.base
        return {f"{b}/set", f"{b}/brightness/set", f"{b}/color_temp/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        b, s = self.base, self.state
        return [
            (f"{b}/state", s["state"]),
            (f"{b}/brightness", str(s["brightness"])),
            (f"{b}/color_temp", str(s["color_temp"])),
        ]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        """Like many bulbs: report the power state and the attribute that changed."""
        b = self.base
        if topic == f"{b}/set" and payload in ("ON", "OFF"):
            self.state["state"] = payload
            changed = []
        elif (
            topic == f"{b}/brightness/set" and (v := int_of(payload)) is not None and 0 <= v <= 100
        ):
            self.state["brightness"] = v
            self.state["state"] = "ON" if v > 0 else "OFF"
            changed = [(f"{b}/brightness", str(v))]
        elif (
            topic == f"{b}/color_temp/set"
            and (v := int_of(payload)) is not None
            and (153 <= v <= 454)
        ):
            self.state["color_temp"] = v
            self.state["state"] = "ON"
            changed = [(f"{b}/color_temp", str(v))]
        else:
            return []
        return [(0.0, t, p) for t, p in [(f"{b}/state", self.state["state"]), *changed]]


class SimJsonLight(VirtualDevice):
    """JSON schema light with brightness (0..255), colour temperature and RGB."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "light",
            object_id,
            {
                "~": base,
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "schema": "json",
                "cmd_t": "~/set",
                "stat_t": "~",
                "brightness": True,
                "sup_clrm": ["color_temp", "rgb"],
                "min_mirs": 153,
                "max_mirs": 500,
                **avty(base, tilde=True),
                "dev": dev_block(f"sim-{object_id}", name, area, "RGB lamp"),
            },
            state={
                "state": "OFF",
                "brightness": 255,
                "color_mode": "color_temp",
                "color_temp": 300,
            },
        )

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(self.base, json.dumps(self.state))]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        try:
            data = json.loads(payload)
        except ValueError:
            return []
        if not isinstance(data, dict) or data.get("state") not in ("ON", "OFF"):
            return []
        self.state["state"] = data["state"]
        if isinstance(data.get("brightness"), int):
            self.state["brightness"] = data["brightness"]
        if isinstance(data.get("color_temp"), int):
            self.state.update(color_mode="color_temp", color_temp=data["color_temp"])
            self.state.pop("color", None)
        if isinstance(data.get("color"), dict):
            self.state.update(color_mode="rgb", color=data["color"])
            self.state.pop("color_temp", None)
        return self._now()

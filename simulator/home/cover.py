"""Simulated covers: a garage door that travels and positionable blinds."""

from __future__ import annotations

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block, int_of


class SimGarageDoor(VirtualDevice):
    """Garage door: OPEN/CLOSE/STOP, reports opening/closing, then open/closed."""

    def __init__(self, object_id: str, name: str, area: str, *, travel: float = 0.2) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "cover",
            object_id,
            {
                "name": name,
                "unique_id": f"sim-{object_id}",
                "device_class": "garage",
                "command_topic": f"{base}/set",
                "state_topic": f"{base}/state",
                **avty(base),
                "device": {"identifiers": [f"sim-{object_id}"], "suggested_area": area},
            },
            state={"state": "closed"},
        )
        self.travel = travel

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        t = f"{self.base}/state"
        if payload == "OPEN":
            self.state["state"] = "open"
            return [(0.0, t, "opening"), (self.travel, t, "open")]
        if payload == "CLOSE":
            self.state["state"] = "closed"
            return [(0.0, t, "closing"), (self.travel, t, "closed")]
        if payload == "STOP":
            self.state["state"] = "stopped"
            return self._now()
        return []


class SimBlinds(VirtualDevice):
    """Blinds with a position (0 closed .. 100 open) and open/close/stop."""

    def __init__(self, object_id: str, name: str, area: str) -> None:
        base = f"sim/{object_id}"
        super().__init__(
            "cover",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "dev_cla": "blind",
                "cmd_t": f"{base}/set",
                "set_pos_t": f"{base}/position/set",
                "pos_t": f"{base}/position",
                "pos_open": 100,
                "pos_clsd": 0,
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Roller blind"),
            },
            state={"position": 0},
        )

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set", f"{self.base}/position/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/position", str(self.state["position"]))]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if topic == f"{self.base}/position/set":
            v = int_of(payload)
            if v is None or not 0 <= v <= 100:
                return []
            self.state["position"] = v
        elif payload in ("OPEN", "CLOSE"):
            self.state["position"] = 100 if payload == "OPEN" else 0
        elif payload != "STOP":
            return []
        return self._now()

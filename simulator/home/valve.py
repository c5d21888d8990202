"""A simulated water valve (Home Assistant's MQTT valve).

Without `reports_position`: OPEN/CLOSE/STOP, reporting "opening" then "open" (or
"closing" then "closed"), "stopped" on STOP. With it: a position 0..100 on the one
command topic, reported as JSON `{"state": ..., "position": ...}` while moving and as
the bare number when it got there.
"""

from __future__ import annotations

import json

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block, int_of


class SimValve(VirtualDevice):
    """A garden water valve; `travel` s from the command to the end position."""

    def __init__(
        self,
        object_id: str,
        name: str,
        area: str,
        *,
        reports_position: bool = False,
        travel: float = 0.2,
    ) -> None:
        base = f"sim/{object_id}"
        keys = {"pos": True} if reports_position else {"pl_stop": "STOP"}
        super().__init__(
            "valve",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "dev_cla": "water",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                **keys,
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Water valve"),
            },
            state={"state": "closed", "position": 0},
        )
        self.reports_position = reports_position
        self.travel = travel

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        if self.reports_position:
            return [(f"{self.base}/state", str(self.state["position"]))]
        return [(f"{self.base}/state", self.state["state"])]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if self.reports_position:
            return self._move_to(int_of(payload))
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

    def _move_to(self, target: int | None) -> list[Step]:
        if target is None or not 0 <= target <= 100:
            return []
        start = self.state["position"]
        moving = "opening" if target > start else "closing"
        self.state["position"] = target
        self.state["state"] = "closed" if target == 0 else "open"
        t = f"{self.base}/state"
        now = json.dumps({"state": moving, "position": start})
        return [(0.0, t, now), (self.travel, t, str(target))]

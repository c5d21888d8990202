"""A simulated smart lock, optionally one that unlatches the door."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block


class SimLock(VirtualDevice):
    """Lock with custom payloads and state words (abbreviated keys).

    With `open_payload` it can also unlatch the door (Home Assistant's `open`): it
    reports "open" while the door is held open, then "unlocked".
    """

    def __init__(
        self,
        object_id: str,
        name: str,
        area: str,
        *,
        open_payload: str | None = None,
        hold_open: float = 0.2,
    ) -> None:
        base = f"sim/{object_id}"
        opening: dict[str, Any] = (
            {"pl_open": open_payload, "stat_open": "open"} if open_payload else {}
        )
        super().__init__(
            "lock",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                "pl_lock": "lock_door",
                "pl_unlk": "unlock_door",
                "stat_locked": "locked",
                "stat_unlocked": "unlocked",
                **opening,
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Smart lock"),
            },
            state={"state": "locked"},
        )
        self.open_payload = open_payload
        self.hold_open = hold_open
        self.openings = 0

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        if self.open_payload is not None and payload == self.open_payload:
            self.openings += 1
            self.state["state"] = "unlocked"
            t = f"{self.base}/state"
            return [(0.0, t, "open"), (self.hold_open, t, "unlocked")]
        words = {"lock_door": "locked", "unlock_door": "unlocked"}
        if payload not in words:
            return []
        self.state["state"] = words[payload]
        return self._now()

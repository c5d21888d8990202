"""A simulated alarm panel, optionally one that wants the user's code to disarm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typing_extensions import override

from simulator.home.device import Step, VirtualDevice, avty, dev_block


class SimAlarmPanel(VirtualDevice):
    """Alarm panel (Home Assistant's alarm_control_panel), abbreviated keys.

    Arming goes through "arming" (the exit delay) to "armed_<mode>"; DISARM disarms.
    With `remote_code` the panel wants the user's code with a disarm (REMOTE_CODE,
    which the daemon never has): a bare DISARM is refused, arming needs none.
    """

    PAYLOADS = {
        "ARM_HOME": "armed_home",
        "ARM_AWAY": "armed_away",
        "ARM_NIGHT": "armed_night",
        "ARM_VACATION": "armed_vacation",
    }

    def __init__(
        self,
        object_id: str,
        name: str,
        area: str,
        *,
        features: Sequence[str] = ("arm_home", "arm_away", "arm_night"),
        remote_code: bool = False,
        exit_delay: float = 0.1,
    ) -> None:
        base = f"sim/{object_id}"
        code: dict[str, Any] = {"code": "REMOTE_CODE", "cod_arm_req": False} if remote_code else {}
        super().__init__(
            "alarm_control_panel",
            object_id,
            {
                "name": name,
                "uniq_id": f"sim-{object_id}",
                "cmd_t": f"{base}/set",
                "stat_t": f"{base}/state",
                "sup_feat": list(features),
                "pl_arm_nite": "ARM_NIGHT",
                **code,
                **avty(base),
                "dev": dev_block(f"sim-{object_id}", name, area, "Alarm panel"),
            },
            state={"state": "disarmed"},
        )
        self.features = tuple(features)
        self.remote_code = remote_code
        self.exit_delay = exit_delay
        self.refused = 0

    @override
    def command_topics(self) -> set[str]:
        return {f"{self.base}/set"}

    @override
    def state_messages(self) -> list[tuple[str, str]]:
        return [(f"{self.base}/state", self.state["state"])]

    @override
    def on_command(self, topic: str, payload: str) -> list[Step]:
        t = f"{self.base}/state"
        armed = self.PAYLOADS.get(payload)
        if armed is not None and armed.replace("armed_", "arm_") in self.features:
            self.state["state"] = armed
            return [(0.0, t, "arming"), (self.exit_delay, t, armed)]
        if payload == "DISARM" and not self.remote_code:
            self.state["state"] = "disarmed"
            return self._now()
        self.refused += 1
        return []

"""The valve end to end on a real mosquitto with the virtual home's garden valve:
discovered, offered to the model in control_device, commanded, confirmed by the
valve's own state report.

The component's pure parts: tests/unit/test_home_valve.py.
"""

from __future__ import annotations

import pytest

from daemon.home.model_tools import CONTROL_DEVICE, LIST_DEVICES
from simulator.home import SimValve, default_devices, garden_devices
from tests.support.home import home_rig
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------- end to end


async def test_valve_end_to_end_discovered_offered_commanded_confirmed() -> None:
    pond = SimValve("pond_valve", "Pond valve", "Garden", reports_position=True, travel=0.1)
    async with home_rig(default_devices()[:1] + garden_devices() + [pond]) as rig:
        assert rig.home is not None
        inv = rig.service.inventory
        # Discovered, with its state.
        garden = inv.get("sim-garden_water_valve")
        assert garden is not None and garden.component == "valve"
        assert inv.state("sim-garden_water_valve") == {"state": "closed"}
        assert inv.state("sim-pond_valve") == {"state": "closed", "position": 0}
        # Offered to the model: its id, its actions, a line of its own, not sensitive.
        control = rig.declaration(CONTROL_DEVICE)
        assert control is not None
        props = control["parameters"]["properties"]
        assert {"sim-garden_water_valve", "sim-pond_valve"} <= set(props["device_id"]["enum"])
        assert {"open", "close", "stop", "set_position"} <= set(props["action"]["enum"])
        assert "- sim-garden_water_valve: Garden water valve (Garden): open, close, stop" in (
            control["description"])
        assert "sim-pond_valve: Pond valve (Garden): open, close, set_position(" in (
            control["description"])
        listed = rig.declaration(LIST_DEVICES)
        assert listed is not None
        assert "valve" in listed["parameters"]["properties"]["kind"]["enum"]
        # Commanded, once, and confirmed by the valve's own report.
        mark = rig.watcher.mark()
        out = (await rig.call(CONTROL_DEVICE, {"device_id": "sim-garden_water_valve",
                                               "action": "open"}))["output"]
        assert out["status"] == "done" and out["state"]["state"] in ("opening", "open"), out
        await rig.barrier()
        assert rig.commands_since(mark) == [("sim/garden_water_valve/set", "OPEN")]
        await eventually(lambda: inv.state("sim-garden_water_valve") == {"state": "open"})
        mark = rig.watcher.mark()
        out = (await rig.call(CONTROL_DEVICE, {"device_id": "sim-pond_valve",
                                               "action": "set_position",
                                               "args": {"position": 60}}))["output"]
        assert out["status"] == "done" and out["state"]["position"] == 60, out
        await rig.barrier()
        assert rig.commands_since(mark) == [("sim/pond_valve/set", "60")]
        assert rig.home.devices["pond_valve"].state["position"] == 60
        # And it reads back as the model sees it.
        found = (await rig.call(LIST_DEVICES, {"kind": "valve"}))["output"]
        assert [d["id"] for d in found["devices"]] == ["sim-garden_water_valve",
                                                       "sim-pond_valve"]

"""The model's device tools without a broker: the schema of the default home, and what
counts as sensitive.

End to end through real mosquitto to the virtual home: tests/integration/test_home_tools.py.
"""

from __future__ import annotations

import pytest

from daemon.config import Settings, ToolsSettings
from daemon.home.model_tools import (
    CONTROL_DEVICE,
)
from tests.support.home import schema_for_default_home

pytestmark = pytest.mark.timeout(60)


@pytest.mark.timeout(60)
def test_schema_is_built_without_a_broker() -> None:
    """The home tools are pure functions of the inventory (used by `edge-agent devices`)."""
    service = schema_for_default_home()
    assert not service.tools.refresh()  # unchanged: no context update for nothing
    registry = service.registry
    control = registry.get(CONTROL_DEVICE)
    assert control is not None and control.deadline is not None and control.deadline >= 4.0
    args = {"device_id": "sim-kitchen_light", "action": "turn_on"}
    assert registry.validate(CONTROL_DEVICE, args) == args


@pytest.mark.timeout(60)
async def test_tools_sensitive_matches_device_ids_and_names() -> None:
    """A plain relay that drives a gate can be marked sensitive by its id or its name."""
    sensitive = ("lock", "SIM-LIVING_ROOM_SWITCH", "bedroom fan")
    service = schema_for_default_home(Settings(tools=ToolsSettings(sensitive=sensitive)))
    text = service.describe()
    for line in ("sim-living_room_switch: Living room switch [switch, Living room, discovery, ",
                 "sim-bedroom_fan: Bedroom fan [fan, Bedroom, discovery, ",
                 "sim-front_door_lock: Front door lock [lock, Hallway, discovery, "):
        assert f"{line}availability unknown, needs confirmation]" in text, line
    # A garage door needs confirmation whatever the list says: it is what it does.
    assert ("sim-garage_door: Garage door [cover, Garage, discovery, availability unknown, "
            "needs confirmation]") in text
    assert "sim-kitchen_light: Kitchen light [light, Kitchen, discovery, availability " in text
    assert "sim-kitchen_light: Kitchen light [light, Kitchen, discovery, availability unknown, " \
        "needs" not in text
    decl = service.registry.get(CONTROL_DEVICE)
    assert decl is not None
    assert "- sim-living_room_switch: Living room switch (Living room) [needs confirmation]" in (
        decl.description)
    for device_id in ("sim-living_room_switch", "sim-bedroom_fan"):
        first = await service.control.act(device_id, "turn_on")
        assert first.status == "needs_confirmation", first  # the gate, before any broker
    light = await service.control.act("sim-kitchen_light", "turn_on")
    assert light.status == "failed" and "nothing was sent" in light.message  # past the gate

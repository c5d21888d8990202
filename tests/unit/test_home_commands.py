"""Commands: planning a light's command (pure).

Plan, publish once, confirm from state against real mosquitto and the sim:
tests/integration/test_home_commands.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.home.commands import Command, plan_command
from daemon.home.device import Device
from daemon.home.discovery import Discovered, parse_discovery

pytestmark = pytest.mark.timeout(30)


def _device(config: dict[str, Any]) -> Device:
    found = parse_discovery("homeassistant/light/x/config", json.dumps(config))
    assert isinstance(found, Discovered), found
    return Device("light.x", found.entity, "discovery", found.topic.topic)


def _plan(device: Device, action: str, args: dict[str, Any] | None = None) -> Command:
    plan = plan_command(device, action, args)
    assert isinstance(plan, Command), plan
    return plan


@pytest.mark.timeout(30)
def test_default_light_hs_xy_colour_and_brightness_on_command_type() -> None:
    hs = _device({"cmd_t": "l/set", "stat_t": "l/state", "hs_cmd_t": "l/hs",
                  "bri_cmd_t": "l/bri", "bri_scl": 100, "bri_cmd_tpl": "dim:{{ value }}",
                  "on_cmd_type": "brightness"})
    color = _plan(hs, "set_color", {"rgb": [255, 128, 0]})
    assert (color.topic, color.payload) == ("l/hs", "30.1,100.0")
    assert color.expected is not None and color.expected.describe() == "state in on"
    on = _plan(hs, "turn_on")
    assert (on.topic, on.payload) == ("l/bri", "dim:100")  # turned on by brightness, not ON
    assert on.expected is not None and on.expected.describe() == "state in on"
    off = _plan(hs, "turn_off")
    assert (off.topic, off.payload) == ("l/set", "OFF")
    xy = _device({"cmd_t": "l/set", "xy_cmd_t": "l/xy", "bri_cmd_t": "l/bri",
                  "bri_stat_t": "l/bri/state", "on_cmd_type": "brightness"})
    color = _plan(xy, "set_color", {"rgb": [255, 0, 0]})
    assert (color.topic, color.payload, color.expected) == ("l/xy", "0.6401,0.33", None)
    on = _plan(xy, "turn_on")
    assert (on.topic, on.payload) == ("l/bri", "255")
    assert on.expected is not None and on.expected.describe() == "brightness ≈ 100"
    first = _device({"cmd_t": "l/set", "bri_cmd_t": "l/bri", "on_cmd_type": "first"})
    assert (_plan(first, "turn_on").topic, _plan(first, "turn_on").payload) == ("l/set", "ON")

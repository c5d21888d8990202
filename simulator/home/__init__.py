"""Virtual Home Assistant-style devices over MQTT, for tests and the demo.

Each device publishes a retained discovery config (some with abbreviated keys and a
`~` base topic), listens on its command topics and reports state as retained
messages, the way Zigbee2MQTT or Tasmota devices do. Knobs for fault tests: a
response latency, devices that go offline (availability), and devices that
silently ignore commands. The devices interpret commands with their own small
state machines, deliberately independent of daemon.home.components, so a round
trip checks the daemon against an outside view of the protocol. One module per
kind of device (as daemon.home.components has one per component); `server` runs
them on a broker, `catalog` lists the demo home and the opt-in extras.

Run it on its own with `edge-agent sim home --host H --port P`, optionally with
`--offline ID` and `--ignore ID` (see `main`).
"""

from simulator.home.alarm_control_panel import SimAlarmPanel
from simulator.home.binary_sensor import SimDoorContact
from simulator.home.button import SimButton
from simulator.home.catalog import (
    default_devices,
    extra_devices,
    garden_devices,
    security_devices,
)
from simulator.home.cli import main
from simulator.home.climate import SimThermostat
from simulator.home.cover import SimBlinds, SimGarageDoor
from simulator.home.device import BRIDGE_TOPIC, Step, VirtualDevice
from simulator.home.fan import SimFan
from simulator.home.light import SimJsonLight, SimLight
from simulator.home.lock import SimLock
from simulator.home.scene import SimScene
from simulator.home.sensor import SimTemperatureSensor
from simulator.home.server import VirtualHome, demo_home
from simulator.home.switch import SimSwitch
from simulator.home.valve import SimValve

__all__ = [
    "BRIDGE_TOPIC",
    "SimAlarmPanel",
    "SimBlinds",
    "SimButton",
    "SimDoorContact",
    "SimFan",
    "SimGarageDoor",
    "SimJsonLight",
    "SimLight",
    "SimLock",
    "SimScene",
    "SimSwitch",
    "SimTemperatureSensor",
    "SimThermostat",
    "SimValve",
    "Step",
    "VirtualDevice",
    "VirtualHome",
    "default_devices",
    "demo_home",
    "extra_devices",
    "garden_devices",
    "main",
    "security_devices",
]

"""The virtual home's device lists: the demo home and the opt-in extras."""

from __future__ import annotations

from simulator.home.alarm_control_panel import SimAlarmPanel
from simulator.home.binary_sensor import SimDoorContact
from simulator.home.button import SimButton
from simulator.home.climate import SimThermostat
from simulator.home.cover import SimBlinds, SimGarageDoor
from simulator.home.device import VirtualDevice
from simulator.home.fan import SimFan
from simulator.home.light import SimJsonLight, SimLight
from simulator.home.lock import SimLock
from simulator.home.scene import SimScene
from simulator.home.sensor import SimTemperatureSensor
from simulator.home.switch import SimSwitch
from simulator.home.valve import SimValve


def default_devices() -> list[VirtualDevice]:
    """The demo home: one device of each kind."""
    return [
        SimLight("kitchen_light", "Kitchen light", "Kitchen"),
        SimSwitch("living_room_switch", "Living room switch", "Living room"),
        SimFan("bedroom_fan", "Bedroom fan", "Bedroom"),
        SimGarageDoor("garage_door", "Garage door", "Garage"),
        SimLock("front_door_lock", "Front door lock", "Hallway"),
        SimThermostat("thermostat", "Thermostat", "Hallway"),
        SimScene("movie_night", "Movie night", "Living room"),
        SimButton("doorbell_chime", "Doorbell chime", "Hallway"),
        SimTemperatureSensor("living_room_temperature", "Living room temperature", "Living room"),
        SimDoorContact("front_door_contact", "Front door contact", "Hallway"),
    ]


def extra_devices() -> list[VirtualDevice]:
    """More shapes for tests: a JSON schema RGB lamp and positionable blinds."""
    return [
        SimJsonLight("desk_lamp", "Desk lamp", "Office"),
        SimBlinds("bedroom_blinds", "Bedroom blinds", "Bedroom"),
    ]


def security_devices() -> list[VirtualDevice]:
    """Entry points: an alarm panel, one that wants the user's code to disarm, and a
    lock that can unlatch (open) the door."""
    return [
        SimAlarmPanel("house_alarm", "House alarm", "Hallway"),
        SimAlarmPanel("shed_alarm", "Shed alarm", "Garden", remote_code=True),
        SimLock("back_door_lock", "Back door lock", "Kitchen", open_payload="open_door"),
    ]


def garden_devices() -> list[VirtualDevice]:
    """The garden: a water valve (open, close, stop; it reports opening, then open)."""
    return [SimValve("garden_water_valve", "Garden water valve", "Garden")]

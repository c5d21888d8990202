"""A device the model may act on, and a device with what is known about it now."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.home.actions import ActionSpec, StateValue, plain_state
from daemon.home.discovery import Availability, EntityConfig


@dataclass(frozen=True)
class Device:
    """A device the model may act on: a stable id plus its parsed config.

    The id is the config's `unique_id` when it has one, otherwise it is derived from
    the discovery topic (`light.kitchen` or `light.node.kitchen`), or is the `id`
    given in the config file.
    """

    id: str
    config: EntityConfig
    source: Literal["discovery", "config"] = "discovery"
    discovery_topic: str | None = None

    @property
    def name(self) -> str:
        """What people and the model call it (the config's name, one clean line)."""
        return self.config.name

    @property
    def component(self) -> str:
        """The Home Assistant component (`light`, `lock`, ...), a key of the component registry."""
        return self.config.component

    @property
    def area(self) -> str | None:
        """The room it is in, if the config says."""
        return self.config.area

    @property
    def device_class(self) -> str | None:
        """Home Assistant's device class (`garage`, `door`, ...), if given; sensitivity reads it."""
        return self.config.device_class

    # Cached: derived from the frozen config, and asked for on every message.
    @functools.cached_property
    def capabilities(self) -> tuple[ActionSpec, ...]:
        """The actions the model may ask for, with their argument ranges."""
        return self.config.actions

    @functools.cached_property
    def command_topics(self) -> frozenset[str]:
        """Every topic a command for it may be published to."""
        return self.config.command_topics

    @functools.cached_property
    def state_topics(self) -> frozenset[str]:
        """The topics on which it reports state."""
        return self.config.state_topics

    @property
    def availability(self) -> Availability:
        """How to tell whether it is reachable (no topics: always)."""
        return self.config.availability

    @functools.cached_property
    def availability_topics(self) -> frozenset[str]:
        """The topics on which it reports being reachable."""
        return frozenset(a.topic for a in self.config.availability.topics)

    @functools.cached_property
    def topics(self) -> frozenset[str]:
        """State and availability topics: what the inventory listens to for it."""
        return self.state_topics | self.availability_topics

    def decode(self, topic: str, payload: str) -> dict[str, StateValue]:
        """What a message on one of its state topics says, in model units.

        Fields: `state` (on/off, open/closed/..., locked/unlocked/..., an alarm
        panel's disarmed/armed_home/.../triggered), `brightness`, fan `percentage` and
        cover or valve `position` in percent, `color_temp` in kelvin, `rgb`,
        `preset_mode`, `oscillating`, climate `mode`, `temperature`,
        `current_temperature`, sensor `value`. Unrecognised payloads give nothing;
        text reported by a device is one clean line.
        """
        return self.config.spec.decode(topic, payload)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the model: what it is and what it can do."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": self.component,
            "area": self.area,
            "device_class": self.device_class,
            "actions": [
                {
                    "action": a.name,
                    "args": {arg.name: arg.describe() for arg in a.args},
                    **({"note": a.description} if a.description else {}),
                }
                for a in self.capabilities
            ],
        }
        if self.config.caveat:
            out["note"] = self.config.caveat
        return out


@dataclass(frozen=True)
class DeviceSnapshot:
    """A device with what we currently know about it."""

    device: Device
    state: Mapping[str, StateValue]
    available: bool | None
    updated_at: float | None

    def describe(self) -> dict[str, Any]:
        """The device's summary for the model plus its availability and state now."""
        out = self.device.describe()
        out["available"] = self.available
        out["state"] = plain_state(self.state)
        return out

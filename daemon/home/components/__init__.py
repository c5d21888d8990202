"""The registry of Home Assistant MQTT components the home understands.

Every module in this package except `base` is one component and exposes
`COMPONENT` (a `components.base.Component`): adding a component is adding a module
here (and its tests). The registry lists them in their `order`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from daemon.home.components.base import Component, ComponentSpec

__all__ = ["NAMES", "REGISTRY", "Component", "ComponentSpec"]


def _discover() -> dict[str, Component]:
    found: list[Component] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        component = getattr(module, "COMPONENT", None)
        if not isinstance(component, Component) or component.name != info.name:
            raise ImportError(f"{module.__name__} must define COMPONENT named {info.name!r}")
        found.append(component)
    return {c.name: c for c in sorted(found, key=lambda c: (c.order, c.name))}


REGISTRY: Mapping[str, Component] = _discover()
NAMES: tuple[str, ...] = tuple(REGISTRY)

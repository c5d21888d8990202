"""One error tree: every public exception of the daemon and the simulator derives
from EdgeAgentError, and from the built-in its callers expect."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import daemon
import simulator
from daemon.config import ConfigError
from daemon.errors import EdgeAgentError
from daemon.home.mqtt import NotPublished
from daemon.live.calls import InvalidArguments
from daemon.live.link import LiveFatalError
from daemon.media.wav import WavError
from daemon.peripherals import PeripheralUnavailable
from daemon.peripherals.audio_device import AudioDeviceError
from daemon.peripherals.ble.profile import ProfileError


def _public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (daemon, simulator):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, BaseException)
                        and obj.__module__ == info.name and not name.startswith("_")):
                    found[f"{info.name}.{name}"] = obj
    return found


def test_every_public_exception_has_the_one_root() -> None:
    found = _public_exceptions()
    assert len(found) >= 15
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, EdgeAgentError))
    assert strays == []


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ConfigError, ValueError), (PeripheralUnavailable, ValueError), (WavError, ValueError),
        (ProfileError, ValueError), (InvalidArguments, ValueError),
        (AudioDeviceError, OSError), (NotPublished, OSError), (LiveFatalError, OSError),
    ],
)
def test_each_also_derives_from_the_builtin_callers_expect(
    error: type[BaseException], builtin: type[BaseException]
) -> None:
    assert issubclass(error, EdgeAgentError) and issubclass(error, builtin)
    assert isinstance(error("why"), builtin)

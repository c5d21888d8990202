"""`edge-agent`: run, demo, sim, devices, doctor.

Exit codes are a contract: 0 clean stop, 2 bad configuration or usage (one line
naming the key), 1 anything else. `demo` and `sim` belong to the simulator
(`simulator.cli`), imported only when one of them is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from daemon import __version__
from daemon.app import EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError, run_until_signal, serve
from daemon.config import ConfigError, Settings
from daemon.ops.metrics import Metrics
from daemon.options import (
    add_common_options,
    api_key,
    known_secrets,
    settings_from_args,
    setup_logging,
)

__all__ = ["main"]

SIMULATOR_COMMANDS = ("demo", "sim")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon")
    add_common_options(run)
    # Listed for --help; their own parsers live in simulator.cli.
    sub.add_parser("demo", help="a whole conversation on simulated parts (demo --help)",
                   add_help=False)
    sub.add_parser("sim", help="run one simulated part on its own: live, radio, glasses, "
                   "home; or soak (the daemon under seeded faults)", add_help=False)
    devices = sub.add_parser("devices", help="print the inventory and the model's tools")
    add_common_options(devices)
    devices.add_argument("--unpair", action="store_true",
                         help="forget the pinned glasses; the restarted daemon pins the next "
                              "ones it finds")
    devices.add_argument("--audio", action="store_true",
                         help="list the sound devices PortAudio sees (for peripheral.kiosk)")
    doctor = sub.add_parser("doctor", help="check this machine and the configuration")
    add_common_options(doctor)
    doctor.add_argument("--json", action="store_true",
                        help="print one JSON document (checks and verdict) for scripts")
    return p


def main(argv: list[str] | None = None) -> int:
    """The `edge-agent` command; returns its exit code."""
    from daemon.ops.logsetup import install_excepthook, scrubbed_stdio

    # Every command, not only run and demo: devices, doctor and errors print directly.
    install_excepthook(known_secrets())
    with scrubbed_stdio():
        return _main(sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> int:
    if argv and argv[0] in SIMULATOR_COMMANDS:
        return _simulator(argv[0], argv[1:])
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        # argparse would only say that COMMAND is missing
        print(f"edge-agent: unknown option {argv[0]!r}: options come after the command "
              "(edge-agent COMMAND [options]; see edge-agent --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        handler: Callable[[argparse.Namespace], int] = {
            "run": _cmd_run,
            "devices": _cmd_devices,
            "doctor": _cmd_doctor,
        }[args.command]
        return handler(args)
    except (ConfigError, UsageError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


def _simulator(command: str, rest: list[str]) -> int:
    """`demo` and `sim PART`: the one place the daemon's CLI reaches into the simulator."""
    from simulator.cli import SIM_PARTS, demo_main, sim_main

    if command == "demo":
        return demo_main(rest)
    if not rest or rest[0] not in SIM_PARTS:
        print(f"edge-agent sim: choose one of {', '.join(SIM_PARTS)}", file=sys.stderr)
        return EXIT_USAGE
    return sim_main(rest[0], rest[1:])


def _cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    key = api_key()
    if key is None:
        raise UsageError(
            "GEMINI_API_KEY: not set (nor $CREDENTIALS_DIRECTORY/gemini_api_key)"
        )
    setup_logging(settings, [key.get_secret_value()])
    return run_until_signal(serve(settings, key))


def _cmd_doctor(args: argparse.Namespace) -> int:
    from daemon.doctor import cmd_doctor

    return cmd_doctor(args)


def _cmd_devices(args: argparse.Namespace) -> int:
    """The inventory and the exact tool declarations the model will see."""
    from daemon.agent import look_tool
    from daemon.home.service import HomeService
    from daemon.tools.registry import ToolRegistry
    from daemon.tools.status import status_tool

    if args.audio:
        from daemon.peripherals.audio_device import AudioDeviceError, describe_devices

        try:
            print(describe_devices())
        except AudioDeviceError as exc:
            print(f"edge-agent devices: {exc}", file=sys.stderr)
            return EXIT_FAIL
        return EXIT_OK
    settings = settings_from_args(args)
    if args.unpair:
        return _unpair(settings)
    registry = ToolRegistry(settings.tools.deadline)
    registry.register(status_tool(dict))  # the tools the Agent adds, with their schemas
    if _has_camera(settings):
        registry.register(look_tool(_no_photo))
    text = asyncio.run(HomeService(settings, registry, Metrics()).snapshot(timeout=3.0))
    print(text)
    return EXIT_OK


def _unpair(settings: Settings) -> int:
    """`devices --unpair`: delete the pin record; the running daemon keeps its pin until
    it restarts (a pin that vanished mid-run must not open the door to look-alikes)."""
    from daemon.ops.state import StateStore, state_dir_from
    from daemon.peripherals.ble.pinning import unpair

    store = StateStore(state_dir_from(settings.ops.state_dir, os.environ))
    restart = "restart the daemon (systemctl restart edge-agent) to pin the next glasses it finds"
    if not store.persistent:
        print(f"edge-agent: no state directory ($STATE_DIRECTORY or ops.state_dir): "
              f"nothing is pinned across restarts; {restart}")
        return EXIT_OK
    try:
        removed, pin = unpair(store)
    except OSError as exc:
        print(f"edge-agent: cannot forget the pinned glasses in {store.directory}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    if pin is not None:
        print(f"edge-agent: forgot the pinned glasses {pin.address} ({pin.name or 'no name'}, "
              f"profile {pin.profile}); {restart}")
    elif removed:
        print(f"edge-agent: removed an unusable pin record; {restart}")
    else:
        print("edge-agent: no glasses were pinned")
    if settings.peripheral.ble.address:
        print(f"edge-agent: peripheral.ble.address still pins {settings.peripheral.ble.address}; "
              "change it in the configuration to use other glasses")
    return EXIT_OK


def _has_camera(settings: Settings) -> bool:
    """Whether the configured peripheral has a camera, without opening it."""
    if settings.peripheral.kind != "ble":
        return False
    from daemon.peripherals.ble.profile import ProfileError, load_profile

    try:
        return load_profile(settings.peripheral.ble.profile).has_camera
    except ProfileError as exc:
        raise UsageError(f"peripheral.ble.profile: {exc}") from None


async def _no_photo(_args: dict[str, Any]) -> str:
    raise RuntimeError("`devices` only describes the tools")

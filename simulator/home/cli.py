"""`edge-agent sim home`: the virtual home on a broker until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from simulator.home.catalog import (
    default_devices,
    extra_devices,
    garden_devices,
    security_devices,
)
from simulator.home.device import VirtualDevice
from simulator.home.server import VirtualHome


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent sim home",
        description="Virtual smart-home devices (Home Assistant MQTT discovery).",
    )
    p.add_argument("--host", default="127.0.0.1", help="MQTT broker host")
    p.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    p.add_argument("--prefix", default="homeassistant", help="discovery prefix")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before devices answer")
    p.add_argument("--client-id", default="edge-sim-home")
    p.add_argument(
        "--extra",
        action="store_true",
        help="add the JSON lamp, the blinds, two alarm panels, a lock that opens and a "
        "garden water valve",
    )
    p.add_argument(
        "--offline",
        action="append",
        default=[],
        metavar="ID",
        help="start this device unavailable (it also ignores commands); repeatable",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="ID",
        help="this device takes commands but never acts or reports; repeatable",
    )
    return p


def _apply_faults(devices: Sequence[VirtualDevice], offline: list[str], ignore: list[str]) -> str:
    """Mark devices offline or ignoring by object id (`kitchen_light` or `sim-kitchen_light`).

    Returns an error naming the unknown ids and the known ones, or "" if all were found.
    """
    by_id = {d.object_id: d for d in devices}
    unknown = [i for i in offline + ignore if i.removeprefix("sim-") not in by_id]
    if unknown:
        return f"unknown device {', '.join(unknown)}; known: {', '.join(sorted(by_id))}"
    for ident in offline:
        by_id[ident.removeprefix("sim-")].online = False
    for ident in ignore:
        by_id[ident.removeprefix("sim-")].ignore_commands = True
    return ""


async def _serve(args: argparse.Namespace, devices: Sequence[VirtualDevice]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with VirtualHome(
            args.host,
            args.port,
            devices,
            prefix=args.prefix,
            client_id=args.client_id,
            latency=args.latency,
        ) as home:
            faults = "".join(
                f", {label}: {', '.join(ids)}"
                for label, ids in (("offline", args.offline), ("ignoring", args.ignore))
                if ids
            )
            print(
                f"virtual home: {len(home.devices)} devices on {args.host}:{args.port}{faults}",
                flush=True,
            )
            await stop.wait()
    except ConnectionError as exc:
        print(f"edge-agent sim home: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`edge-agent sim home`: run the virtual home until SIGINT/SIGTERM."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 2
    if not 0 < args.port < 65536 or args.latency < 0:
        print("edge-agent sim home: --port must be 1..65535, --latency >= 0", file=sys.stderr)
        return 2
    extras = extra_devices() + security_devices() + garden_devices() if args.extra else []
    devices = default_devices() + extras
    problem = _apply_faults(devices, args.offline, args.ignore)
    if problem:
        print(f"edge-agent sim home: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args, devices))

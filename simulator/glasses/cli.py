"""``edge-agent sim glasses``: one virtual wearable on the virtual radio, until a signal.

Prints the glasses' events as JSON lines on stdout (the tests and benchmarks read
them); a bad argument is one line on stderr and exit 2, a radio that cannot be
reached or goes away exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from daemon.media.wav import read_wav
from daemon.peripherals.ble.profile import ProfileError, load_profile
from simulator.glasses.device import ADV_INTERVAL_MS, VirtualGlasses
from simulator.glasses.faults import Faults

__all__ = ["main"]

PROG = "edge-agent sim glasses"


class _Usage(Exception):
    """A bad argument: one line for stderr, exit 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Virtual BLE glasses on the virtual radio. Prints JSON event lines.",
    )
    p.add_argument("--profile", required=True, help="device profile name or path (e.g. omi)")
    p.add_argument(
        "--transport", required=True, help="Bumble transport, e.g. tcp-client:127.0.0.1:9001"
    )
    p.add_argument("--wav", type=Path, help="16-bit WAV to stream as the microphone")
    p.add_argument(
        "--loop", action="store_true", help="repeat the WAV forever (default: silence after it)"
    )
    p.add_argument(
        "--rewind-on-connect",
        action="store_true",
        help="start the WAV over on every connection (default: go on where it was)",
    )
    p.add_argument(
        "--no-speaker",
        action="store_true",
        help="serve no speaker characteristic, like a production omi",
    )
    p.add_argument("--codec", type=int, help="codec id to report (default: the profile's)")
    p.add_argument("--name", help="advertised name (default: the profile's first prefix)")
    p.add_argument("--address", help="static random address (default: derived from the name)")
    p.add_argument("--jpeg", type=Path, help="photo to send (default: a synthetic JPEG)")
    p.add_argument("--battery", type=int, default=87, help="battery percent (default 87)")
    p.add_argument("--record-speaker", type=Path, help="write speaker audio to this WAV")
    p.add_argument(
        "--bond-store",
        type=Path,
        help="keep bonds in this JSON file across restarts (default: forgotten on exit)",
    )
    p.add_argument("--packet-id-start", type=int, default=0, help="first omi packet id")
    p.add_argument("--adv-interval-ms", type=float, default=ADV_INTERVAL_MS)
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="drop|duplicate|reorder|malformed=RATE, drop-at|duplicate-at|reorder-at|"
        "malformed-at|photo-drop-at=I,J, silent-after|silent-for|disconnect-after|"
        "vanish-after=SECONDS, tap-at=SECONDS,SECONDS (the wearer taps), seed=N "
        "(repeatable)",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def _print_event(event: dict[str, Any]) -> None:
    print(json.dumps(event, default=str), flush=True)


async def _run_until_signalled(glasses: VirtualGlasses) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, glasses.stop)
    await glasses.run()
    if glasses.radio_lost:
        print(f"{PROG}: the virtual radio went away", file=sys.stderr)
        return 1
    return 0


def _glasses(args: argparse.Namespace) -> VirtualGlasses:
    """The glasses the arguments describe; _Usage names the bad one."""
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        raise _Usage(f"--profile: {exc}") from None
    try:
        faults = Faults.parse(args.fault)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    pcm, rate = b"", 16_000
    if args.wav is not None:
        try:
            pcm, rate = read_wav(args.wav)
        except ValueError as exc:
            raise _Usage(f"--wav: {exc}") from None
    jpeg = None
    if args.jpeg is not None:
        try:
            jpeg = args.jpeg.read_bytes()
        except OSError as exc:
            raise _Usage(f"--jpeg: {exc}") from None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return VirtualGlasses(
            profile,
            args.transport,
            pcm=pcm,
            pcm_rate=rate,
            loop=args.loop,
            rewind_on_connect=args.rewind_on_connect,
            speaker=not args.no_speaker,
            codec_id=args.codec,
            name=args.name,
            address=args.address,
            jpeg=jpeg,
            battery=args.battery,
            faults=faults,
            record_speaker=args.record_speaker,
            bond_store=args.bond_store,
            packet_id_start=args.packet_id_start,
            advertising_interval_ms=args.adv_interval_ms,
            on_event=_print_event,
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """``edge-agent sim glasses``: serve one virtual wearable until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    try:
        glasses = _glasses(args)
    except _Usage as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run_until_signalled(glasses))
    except OSError as exc:
        print(f"{PROG}: --transport: cannot reach the radio: {exc}", file=sys.stderr)
        return 1

"""``edge-agent sim live``: the fake Live server on its own, until a signal.

It prints one JSON line (base_url, ca_file) for the daemon or a test to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from simulator.live_server.server import FakeLiveServer
from simulator.scenario import Scenario, ScenarioError, default_scenario, load_scenario


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent sim live",
        description="Serve a fake Gemini Live API over TLS on loopback. Prints one JSON "
        "line with base_url and ca_file, then serves until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_LIVE_API_KEY", "fake-key"),
        help="accepted API key (default: $FAKE_LIVE_API_KEY or 'fake-key')",
    )
    parser.add_argument("--scenario", metavar="FILE", help="TOML or JSON script")
    parser.add_argument("--cert-dir", metavar="DIR", help="where to write ca.pem")
    parser.add_argument("--pace", action="store_true", help="stream reply audio in real time")
    parser.add_argument("--silence-ms", type=float, default=600.0, help="end-of-utterance silence")
    parser.add_argument(
        "--models", metavar="LIST", help="comma-separated accepted models (default: any)"
    )
    return parser


async def _serve_until_signalled(args: argparse.Namespace, scenario: Scenario) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        server = FakeLiveServer(
            api_key=args.api_key,
            scenario=scenario,
            models=[m.strip() for m in args.models.split(",") if m.strip()]
            if args.models else None,
            host=args.host,
            port=args.port,
            cert_dir=args.cert_dir,
            pace_audio=args.pace,
            silence_ms=args.silence_ms,
            record_limit=2_000,
        )
        try:
            async with server:
                line = {"base_url": server.base_url, "ca_file": str(server.ca_pem_path)}
                print(json.dumps(line), flush=True)
                await stop.wait()
        except OSError as exc:
            print(f"edge-agent sim live: cannot listen on {args.host}:{args.port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the fake Live server standalone (``edge-agent sim live``)."""
    args = _build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print("edge-agent sim live: --port: must be between 0 and 65535", file=sys.stderr)
        return 2
    if args.silence_ms <= 0:
        print("edge-agent sim live: --silence-ms: must be positive", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    except ScenarioError as exc:
        print(f"edge-agent sim live: --scenario: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve_until_signalled(args, scenario))

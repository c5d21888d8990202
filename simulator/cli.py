"""The simulator's commands: `edge-agent demo` (a whole conversation on simulated parts)
and `edge-agent sim PART` (one simulated part on its own; `sim soak`: the daemon among
all of them under seeded faults, see simulator.soak).

`daemon.cli` hands these two commands here, lazily, so the daemon never imports the
simulator unless asked to; the demo then runs the real daemon (`daemon.app.serve`)
against the fake Live server, a private broker with a virtual home and virtual
glasses on a virtual radio. `demo --kiosk` runs the kiosk on a virtual sound card
instead (simulator.kiosk_demo).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from daemon.app import EXIT_OK, EXIT_USAGE, UsageError, run_until_signal, serve
from daemon.config import ConfigError, Settings
from daemon.options import add_common_options, api_key, settings_from_args, setup_logging

__all__ = ["DEMO_KEY", "DEMO_WAV", "asset", "demo_main", "sim_main"]

DEMO_KEY = "edge-agent-demo-key"
DEMO_WAV = "home_demo.wav"
SIM_PARTS = ("live", "radio", "glasses", "home", "soak")


def asset(name: str) -> contextlib.AbstractContextManager[Path]:
    """A file shipped in `simulator/assets`, as a path (from a wheel as well as a checkout)."""
    return importlib.resources.as_file(importlib.resources.files("simulator") / "assets" / name)


def demo_parser() -> argparse.ArgumentParser:
    """`edge-agent demo`'s options: the common ones plus the demo's own."""
    demo = argparse.ArgumentParser(prog="edge-agent demo",
                                   description="a whole conversation on simulated parts")
    add_common_options(demo)
    demo.add_argument("--fast", action="store_true",
                      help="stream the input faster than real time")
    demo.add_argument("--fake", action="store_true",
                      help="use the fake Live server even when GEMINI_API_KEY is set")
    demo.add_argument("--profile", help="peripheral.ble.profile of the virtual glasses")
    demo.add_argument("--radio", action="store_true",
                      help="use peripheral.ble.backend as configured instead of a virtual radio")
    kiosk = demo.add_argument_group("kiosk", "--kiosk: the kiosk on a virtual sound card")
    kiosk.add_argument("--kiosk", action="store_true",
                       help="the kiosk (microphone, loudspeaker, echo, barge-in) on a virtual "
                            "sound card, with its figures (simulator.kiosk_demo)")
    kiosk.add_argument("--echo", default="auto",
                       choices=["auto", "webrtc", "speex", "half_duplex", "off"],
                       help="--kiosk: peripheral.kiosk.echo")
    kiosk.add_argument("--delay-ms", type=float, default=60.0,
                       help="--kiosk: the virtual room's echo delay")
    demo.add_argument("--scene", choices=["home", "tasks"], default="home",
                      help="home: the light and the status (default); tasks: a background "
                           "research task through the Interactions API, delivered while the "
                           "conversation goes on (simulator.tasks_demo; always the fakes)")
    return demo


def demo_main(argv: list[str]) -> int:
    """Parse the demo's options and run it; exit codes as the daemon's."""
    try:
        args = demo_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        if args.kiosk:
            from simulator.kiosk_demo import main as kiosk_demo

            return kiosk_demo(["--echo", args.echo, "--delay-ms", str(args.delay_ms)])
        if args.scene == "tasks":
            return _cmd_tasks_scene(args)
        return _cmd_demo(args)
    except (ConfigError, UsageError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


def sim_main(part: str, argv: list[str]) -> int:
    """One simulated part with its own command line (`edge-agent sim glasses --help`)."""
    rest = [a for a in argv if a != "--"]
    if part == "live":
        from simulator.live_server import main
    elif part == "radio":
        from simulator.radio import main
    elif part == "glasses":
        from simulator.glasses import main
    elif part == "soak":  # not a part but all of them, with the daemon, under faults
        from simulator.soak.cli import main
    else:
        from simulator.home import main
    code: int = main(rest)
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, demo=True)
    key = api_key()
    real = key is not None and not args.fake
    setup_logging(settings, [key.get_secret_value()] if key else [])
    return run_until_signal(_demo(args, settings, key if real else None))


def _cmd_tasks_scene(args: argparse.Namespace) -> int:
    from simulator.tasks_demo import run_scene

    settings = settings_from_args(args, demo=True)
    setup_logging(settings, [])
    return run_scene(args, settings)


async def _demo(args: argparse.Namespace, settings: Settings, key: SecretStr | None) -> int:
    from daemon.transcript import TranscriptPrinter
    from simulator.home import demo_home

    printer = TranscriptPrinter()
    output = Path(args.output) if args.output else Path("out/demo-reply.wav")
    input_done: asyncio.Event | None = None
    speaker_wav: Path | None = None
    async with contextlib.AsyncExitStack() as stack:
        input_wav = Path(args.input) if args.input else stack.enter_context(asset(DEMO_WAV))
        if key is None:
            from simulator.live_server import FakeLiveServer
            from simulator.scenario import home_demo_scenario

            server = await stack.enter_async_context(
                FakeLiveServer(api_key=DEMO_KEY, scenario=home_demo_scenario())
            )
            live = settings.live.model_copy(
                update={"base_url": server.base_url, "ca_file": Path(server.ca_pem_path)}
            )
            key = SecretStr(DEMO_KEY)
            print(f"edge-agent demo: fake Live server at {server.base_url}", flush=True)
        else:
            live = settings.live
            print("edge-agent demo: using the Gemini Live API (GEMINI_API_KEY is set)", flush=True)
        mqtt = await stack.enter_async_context(demo_home(settings.mqtt))
        print(f"edge-agent demo: home on mqtt://{mqtt.host}:{mqtt.port}", flush=True)
        peripheral = settings.peripheral
        if peripheral.kind == "file":
            fs = peripheral.file.model_copy(update={
                "input": input_wav, "output": output,
                "realtime": peripheral.file.realtime and not args.fast,
            })
            peripheral = peripheral.model_copy(update={"file": fs})
        elif peripheral.kind == "ble" and peripheral.ble.backend == "bluez" and not args.radio:
            input_done = asyncio.Event()
            backend, has_speaker = await _demo_glasses(stack, peripheral.ble.profile, input_wav,
                                                       output, input_done)
            speaker_wav = None if has_speaker else output
            ble = peripheral.ble.model_copy(update={"backend": backend})
            peripheral = peripheral.model_copy(update={"ble": ble})
            print(f"edge-agent demo: virtual {peripheral.ble.profile} glasses on a virtual radio",
                  flush=True)
        ops = settings.ops
        if ops.state_dir is None and not os.environ.get("STATE_DIRECTORY"):
            # A demo's pinned glasses and switches must not outlive it.
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-agent-demo-"))
            ops = ops.model_copy(update={"state_dir": Path(tmp)})
        settings = settings.model_copy(
            update={"live": live, "peripheral": peripheral, "mqtt": mqtt, "ops": ops}
        )
        code = await serve(settings, key, exit_when_idle=2.0, printer=printer,
                            input_done=input_done, speaker_wav=speaker_wav)
    print(f"edge-agent demo: the model's audio is in {output}", flush=True)
    return code


async def _demo_glasses(
    stack: contextlib.AsyncExitStack, profile_name: str, wav: Path, speaker_wav: Path,
    done: asyncio.Event,
) -> tuple[str, bool]:
    """A virtual radio and virtual glasses that speak `wav`.

    Returns the daemon's backend and whether the glasses have a speaker to record.
    """
    from daemon.media.wav import WavError, read_wav
    from daemon.peripherals.ble.profile import ProfileError, load_profile
    from simulator.glasses import VirtualGlasses
    from simulator.radio import VirtualRadio

    try:
        profile = load_profile(profile_name)
        pcm = read_wav(wav, 16_000)[0]
    except (ProfileError, WavError) as exc:
        raise UsageError(str(exc)) from None
    speaker_wav.parent.mkdir(parents=True, exist_ok=True)
    radio = await stack.enter_async_context(VirtualRadio(participants=2))

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "audio_end":
            done.set()

    await stack.enter_async_context(
        VirtualGlasses(profile, radio.transport(0), pcm=pcm, record_speaker=speaker_wav,
                       on_event=on_event)
    )
    return f"virtual:{radio.transport(1)}", profile.downlink.kind != "none"

"""`edge-agent`: run, demo, sim, devices, doctor.

Exit codes are a contract: 0 clean stop, 2 bad configuration or usage (one line
naming the key), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from daemon import __version__
from daemon.agent import Agent, look_tool
from daemon.config import (
    ConfigError,
    MqttSettings,
    Settings,
    ToolsSettings,
    load_settings,
    read_secret,
    resolve_config_path,
)
from daemon.ops.metrics import Metrics

if TYPE_CHECKING:
    from daemon.ops.state import StateStore

log = logging.getLogger("daemon")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEMO_KEY = "edge-agent-demo-key"
ASSETS = Path(__file__).resolve().parent.parent / "simulator" / "assets"


class UsageError(Exception):
    """Bad usage or configuration found after parsing: exit 2 with this line."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="TOML file (default /etc/edge-agent/edge-agent.toml)")
        sp.add_argument("--model", help="live.model")
        sp.add_argument("--base-url", help="live.base_url")
        sp.add_argument("--ca-file", help="live.ca_file")
        sp.add_argument("--health-port", type=int, help="ops.health_port")
        sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        sp.add_argument("--peripheral", choices=["file", "ble", "kiosk"], help="peripheral.kind")
        sp.add_argument("--input", help="peripheral.file.input (WAV)")
        sp.add_argument("--output", help="peripheral.file.output (WAV)")

    run = sub.add_parser("run", help="run the daemon")
    common(run)
    demo = sub.add_parser("demo", help="a whole conversation on simulated parts")
    common(demo)
    demo.add_argument("--fast", action="store_true", help="stream the input faster than real time")
    demo.add_argument("--fake", action="store_true",
                      help="use the fake Live server even when GEMINI_API_KEY is set")
    demo.add_argument("--profile", help="peripheral.ble.profile of the virtual glasses")
    demo.add_argument("--radio", action="store_true",
                      help="use peripheral.ble.backend as configured instead of a virtual radio")
    sim = sub.add_parser("sim", help="run one simulated part on its own")
    sim.add_argument("part", choices=["live", "radio", "glasses", "home"])
    sim.add_argument("args", nargs=argparse.REMAINDER)
    devices = sub.add_parser("devices", help="print the inventory and the model's tools")
    common(devices)
    devices.add_argument("--unpair", action="store_true",
                         help="forget the pinned glasses; the restarted daemon pins the next "
                              "ones it finds")
    doctor = sub.add_parser("doctor", help="check this machine and the configuration")
    common(doctor)
    return p


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    get = a.__dict__.get
    return {
        "live.model": get("model"),
        "live.base_url": get("base_url"),
        "live.ca_file": get("ca_file"),
        "ops.health_port": get("health_port"),
        "ops.log_level": get("log_level"),
        "peripheral.kind": get("peripheral"),
        "peripheral.file.input": get("input"),
        "peripheral.file.output": get("output"),
        "peripheral.ble.profile": get("profile"),
    }


def _settings(a: argparse.Namespace, *, demo: bool = False) -> Settings:
    path, required = resolve_config_path(a.config, os.environ)
    overrides = _overrides(a)
    if demo and overrides["ops.log_level"] is None:
        overrides["ops.log_level"] = "warning"  # the transcript is the demo's output
    if demo and overrides["peripheral.kind"] is None and "EDGE_AGENT_PERIPHERAL__KIND" not in (
        os.environ
    ):
        overrides["peripheral.kind"] = "ble"  # virtual glasses unless asked otherwise
    settings = load_settings(path, required=required, overrides=overrides)
    from daemon.home.declared import check_declared_devices  # lazy, like every command's

    check_declared_devices(settings.mqtt.devices)  # a bad one: ConfigError, exit 2
    if settings.mqtt.password is None:
        password = read_secret("EDGE_AGENT_MQTT__PASSWORD", "mqtt_password")
        if password is not None:
            mqtt = settings.mqtt.model_copy(update={"password": password})
            settings = settings.model_copy(update={"mqtt": mqtt})
    if settings.tools.confirm_pin is None:
        pin = read_secret("EDGE_AGENT_TOOLS__CONFIRM_PIN", "confirm_pin")
        if pin is not None:
            try:
                tools = ToolsSettings.model_validate(
                    {**settings.tools.model_dump(), "confirm_pin": pin}
                )
            except ValidationError:
                raise ConfigError("confirm_pin: the credential must be 4 to 12 digits") from None
            settings = settings.model_copy(update={"tools": tools})
    from daemon.ops.logsetup import add_secret

    if settings.mqtt.password is not None:  # also one from the file, for every command
        add_secret(settings.mqtt.password.get_secret_value())
    if settings.tools.confirm_pin is not None:
        add_secret(settings.tools.confirm_pin.get_secret_value().strip())
    return settings


def _api_key() -> SecretStr | None:
    return read_secret("GEMINI_API_KEY", "gemini_api_key")


def _setup_logging(settings: Settings, secrets: list[str]) -> None:
    from daemon.ops.logsetup import install_excepthook, setup_logging

    install_excepthook(secrets)  # the MQTT password was registered by _settings()
    setup_logging(settings.ops.log_level, settings.ops.log_format, secrets)


def main(argv: list[str] | None = None) -> int:
    from daemon.ops.logsetup import install_excepthook, scrubbed_stdio

    # Every command, not only run and demo: devices, doctor and errors print directly.
    install_excepthook(_known_secrets())
    with scrubbed_stdio():
        return _main(argv)


def _known_secrets() -> list[str]:
    """The secrets readable before any configuration: environment and credentials."""
    found: list[str] = []
    for env_name, credential in (
        ("GEMINI_API_KEY", "gemini_api_key"),
        ("EDGE_AGENT_MQTT__PASSWORD", "mqtt_password"),
    ):
        with contextlib.suppress(ConfigError):  # an unreadable credential: the command says so
            value = read_secret(env_name, credential)
            if value is not None:
                found.append(value.get_secret_value())
    return found


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        handler: Callable[[argparse.Namespace], int] = {
            "run": _cmd_run,
            "demo": _cmd_demo,
            "sim": _cmd_sim,
            "devices": _cmd_devices,
            "doctor": _cmd_doctor,
        }[args.command]
        return handler(args)
    except (ConfigError, UsageError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


# -- run ------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    key = _api_key()
    if key is None:
        raise UsageError(
            "GEMINI_API_KEY: not set (nor $CREDENTIALS_DIRECTORY/gemini_api_key)"
        )
    _setup_logging(settings, [key.get_secret_value()])
    return _run_async(_serve(settings, key))


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run until done, SIGTERM or SIGINT; a signal means a clean stop (exit 0)."""

    async def wrapper() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                log.info("stopping")
                task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        try:
            return await coro
        except asyncio.CancelledError:
            if stopping:
                return EXIT_OK
            raise
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(wrapper())


async def _serve(
    settings: Settings,
    key: SecretStr,
    *,
    exit_when_idle: float | None = None,
    printer: Any = None,
    input_done: asyncio.Event | None = None,
    speaker_wav: Path | None = None,
) -> int:
    from daemon.home.model_tools import TOOL_NAMES as HOME_TOOLS
    from daemon.home.service import HomeService
    from daemon.live.link import LiveFatalError, LiveLink
    from daemon.peripherals import PeripheralUnavailable, make_peripheral
    from daemon.tools.registry import ToolRegistry

    metrics = Metrics()
    registry = ToolRegistry(settings.tools.deadline)
    state = _state_store(settings)
    try:
        peripheral = make_peripheral(settings.peripheral, state=state)
    except PeripheralUnavailable as exc:
        raise UsageError(str(exc)) from None
    if speaker_wav is not None:  # the demo's glasses have no speaker: a WAV stands in
        from daemon.peripherals.ble.peripheral import BlePeripheral
        from daemon.peripherals.file import FilePeripheral

        assert isinstance(peripheral, BlePeripheral)
        peripheral.speaker_fallback = FilePeripheral(None, speaker_wav)
    def built_in_tools() -> list[dict[str, Any]]:
        """What the link offers alone if a setup with the home's tools is rejected."""
        return [d for d in registry.declarations() if d["name"] not in HOME_TOOLS]

    if not state.persistent:
        # A file peripheral (tests, benchmarks) has nothing to pin; a microphone has.
        level = logging.INFO if settings.peripheral.kind == "file" else logging.WARNING
        log.log(level, "no state directory ($STATE_DIRECTORY or ops.state_dir): the pinned "
                "glasses and the microphone and camera switches are kept in memory only")
    link = LiveLink(settings.live, key, metrics, declarations=registry.declarations,
                    fallback_declarations=built_in_tools)
    agent = Agent(
        link,
        peripheral,
        registry,
        metrics,
        on_event=printer.event if printer else None,
        on_call=printer.call if printer else None,
        state=state,
    )
    home = HomeService(settings, registry, metrics, agent, state=state)
    if settings.tools.confirm_pin is not None:
        from daemon.home.answers import redact_digits

        agent.text_filter = redact_digits  # a spoken PIN never reaches HA or the status
    # A call to control_device before the first inventory read waits for it (bounded).
    agent.dispatcher.wait_for_tools(home.wait_ready)
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(peripheral.close)  # also when the daemon fails to start
            await _start_ops(stack, settings, metrics, agent)
            async with asyncio.TaskGroup() as tg:
                home_task = tg.create_task(home.run(), name="home")
                if exit_when_idle is not None:  # the demo: let discovery land first
                    await home.wait_ready(timeout=5.0)
                if input_done is not None:
                    tg.create_task(_pause_when(input_done, agent), name="input-done")
                await agent.run(exit_when_idle=exit_when_idle)
                home_task.cancel()
    except* LiveFatalError as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):  # nested task groups nest the error
            first = first.exceptions[0]
        raise UsageError(str(first)) from None
    return EXIT_OK


def _state_store(settings: Settings) -> StateStore:
    """The state directory (`$STATE_DIRECTORY`, else `ops.state_dir`), or memory only.

    Without one, `_serve` says so once the configuration has been accepted.
    """
    from daemon.ops.state import StateStore, state_dir_from

    return StateStore(state_dir_from(settings.ops.state_dir, os.environ))


async def _pause_when(done: asyncio.Event, agent: Agent) -> None:
    """A simulated source that cannot say so itself has ended (the demo's glasses)."""
    await done.wait()
    agent.input_paused()


async def _start_ops(
    stack: contextlib.AsyncExitStack, settings: Settings, metrics: Metrics, agent: Agent
) -> None:
    """Crash logging, the health endpoint, systemd readiness and its watchdog."""
    from daemon.ops import health, logsetup, systemd

    logsetup.install_asyncio_handler()
    server = health.health_server_from_settings(settings.ops, metrics, agent.healthy)
    if server is not None:
        try:
            await stack.enter_async_context(server)
        except OSError as exc:
            raise UsageError(
                f"ops.health_port: cannot listen on 127.0.0.1:{settings.ops.health_port} "
                f"({exc.strerror or exc})"
            ) from None
        log.info("health endpoint on http://127.0.0.1:%d/healthz", server.port)
    systemd.ready()
    stack.callback(systemd.stopping)
    if systemd.watchdog_interval() is not None:
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        task = tg.create_task(systemd.watchdog_loop(lambda: agent.link.state != "failed"))
        stack.callback(task.cancel)


# -- demo -----------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args, demo=True)
    key = _api_key()
    real = key is not None and not args.fake
    _setup_logging(settings, [key.get_secret_value()] if key else [])
    return _run_async(_demo(args, settings, key if real else None))


async def _demo(args: argparse.Namespace, settings: Settings, key: SecretStr | None) -> int:
    from daemon.transcript import TranscriptPrinter
    from simulator.home import demo_home

    printer = TranscriptPrinter()
    output = Path(args.output) if args.output else Path("out/demo-reply.wav")
    input_wav = Path(args.input) if args.input else ASSETS / "home_demo.wav"
    input_done: asyncio.Event | None = None
    speaker_wav: Path | None = None
    async with contextlib.AsyncExitStack() as stack:
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
        code = await _serve(settings, key, exit_when_idle=2.0, printer=printer,
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


# -- sim, devices, doctor ---------------------------------------------------------
def _cmd_sim(args: argparse.Namespace) -> int:
    rest = [a for a in args.args if a != "--"]
    if args.part == "live":
        from simulator.live_server import main as sim_main
    elif args.part == "radio":
        from simulator.radio import main as sim_main
    elif args.part == "glasses":
        from simulator.glasses import main as sim_main
    else:
        from simulator.home import main as sim_main
    code: int = sim_main(rest)
    return code


def _cmd_devices(args: argparse.Namespace) -> int:
    from daemon.home.service import HomeService
    from daemon.tools.registry import ToolRegistry
    from daemon.tools.status import status_tool

    settings = _settings(args)
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


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks: list[tuple[str, bool, str]] = []
    try:
        settings = _settings(args)
        checks.append(("configuration", True, "valid"))
    except ConfigError as exc:
        checks.append(("configuration", False, str(exc)))
        settings = None
    checks.append(("python", sys.version_info >= (3, 11), sys.version.split()[0]))
    checks.append(("GEMINI_API_KEY", _api_key() is not None, "set" if _api_key() else "not set"))
    try:
        import opuslib  # noqa: F401

        checks.append(("libopus", True, "loaded"))
    except Exception as exc:
        checks.append(("libopus", False, f"{type(exc).__name__} (apt-get install libopus0)"))
    mosq = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    checks.append(("mosquitto", mosq is not None, mosq or "not found (apt-get install mosquitto)"))
    if settings is not None and settings.live.ca_file is not None:
        ok = settings.live.ca_file.is_file()
        checks.append(("live.ca_file", ok, str(settings.live.ca_file)))
    failed = False
    for name, ok, detail in checks:
        failed |= not ok and name != "GEMINI_API_KEY"
        print(f"{'ok ' if ok else 'FAIL'}  {name}: {detail}")
    from daemon.live import socket_door  # a warning: the link works on without it

    door_ok, door_detail = socket_door.check()
    print(f"{'ok ' if door_ok else 'WARN'}  Live SDK socket: {door_detail}")
    if settings is not None and settings.peripheral.kind == "ble":  # a warning: exit unchanged
        from daemon.ops.state import StateStore, state_dir_from
        from daemon.peripherals.ble.pinning import describe

        ble = settings.peripheral.ble
        pinned, detail = describe(StateStore(state_dir_from(settings.ops.state_dir, os.environ)),
                                  Path(ble.profile).stem, ble.address)
        print(f"{'ok ' if pinned else 'WARN'}  pinned glasses: {detail}")
    if settings is None:
        return EXIT_USAGE
    for name, detail in _safety_warnings(settings):  # warnings: the exit code stays
        print(f"WARN  {name}: {detail}")
    return EXIT_FAIL if failed else EXIT_OK


def _safety_warnings(settings: Settings) -> list[tuple[str, str]]:
    """What weakens the privacy and safety promises in this configuration."""
    from daemon.ops.state import state_dir_from

    out: list[tuple[str, str]] = []
    mqtt, tools = settings.mqtt, settings.tools
    if state_dir_from(settings.ops.state_dir, os.environ) is None:
        out.append(("state directory", "none ($STATE_DIRECTORY or ops.state_dir): mute, "
                    "camera-off and the pinned glasses are forgotten at every restart"))
    if mqtt.host and mqtt.password is not None and not mqtt.tls:
        out.append(("mqtt.tls", "off while a password is set: it crosses the network in clear"))
    taps = settings.peripheral.kind == "ble" and _has_tap(settings)
    strict = [c for c in ("lock", "alarm", "gate")
              if not ((taps and "tap" in getattr(tools.confirm_with, c))
                      or (tools.confirm_pin and "pin" in getattr(tools.confirm_with, c))
                      or "yes" in getattr(tools.confirm_with, c))]
    if strict:
        out.append(("tools.confirm_pin", f"not set and no tap here: {', '.join(strict)} "
                    "actions can never be confirmed (set the credential confirm_pin)"))
    if mqtt.host and mqtt.remote_unmute:
        topic = f"edge-agent/{mqtt.client_id}/+/set"
        detail = (f"on: whoever may publish to {topic} can turn the microphone and camera "
                  "back on; protect it with a broker ACL")
        if _broker_takes_anonymous(mqtt):
            detail += " (this broker accepts clients without a login: anyone can)"
        out.append(("mqtt.remote_unmute", detail))
    return out


def _has_tap(settings: Settings) -> bool:
    from daemon.peripherals.ble.profile import ProfileError, load_profile

    try:
        tap = load_profile(settings.peripheral.ble.profile).tap
    except ProfileError:
        return False
    return tap is not None and tap.source != "none"


def _broker_takes_anonymous(mqtt: MqttSettings) -> bool:
    """Whether the broker lets a client in without a username (a short, clean probe)."""
    import aiomqtt

    async def probe() -> bool:
        try:
            async with asyncio.timeout(3.0), aiomqtt.Client(
                mqtt.host, mqtt.port, identifier=f"edge-agent-doctor-{os.getpid()}",
                tls_params=aiomqtt.TLSParameters(ca_certs=str(mqtt.ca_file) if mqtt.ca_file
                                                 else None) if mqtt.tls else None,
            ):
                return True
        except (aiomqtt.MqttError, OSError, TimeoutError):
            return False

    return asyncio.run(probe())


"""`edge-agent doctor`: what this machine and this configuration can and cannot do.

Each line says ok, WARN or FAIL and what it looked at; the exit code is 0 only
when every check the configured mode needs is ok (2 for a bad configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path

from daemon.app import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from daemon.config import ConfigError, MqttSettings, Settings
from daemon.options import api_key, settings_from_args

__all__ = ["cmd_doctor"]


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print one line per check; exit 0 only when everything needed is ok."""
    checks: list[tuple[str, bool, str]] = []
    try:
        settings = settings_from_args(args)
        checks.append(("configuration", True, "valid"))
    except ConfigError as exc:
        checks.append(("configuration", False, str(exc)))
        settings = None
    checks.append(("python", sys.version_info >= (3, 11), sys.version.split()[0]))
    checks.append(("GEMINI_API_KEY", api_key() is not None, "set" if api_key() else "not set"))
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


"""`edge-agent doctor`: every check, concurrently and bounded, then one verdict.

The checks that talk to something (the Live endpoint, the broker, the radio, the
sound devices) run at once in one TaskGroup, each under its own deadline, so the
whole doctor takes as long as its slowest check (a BLE scan, ~5 s) and never
more than GUARD_LIMIT. A check that crashes or overruns is a FAIL line of its
own, never a traceback. Library logging is muted unless --log-level asks for it:
the doctor's output is its lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

from daemon.config import ConfigError, Settings, resolve_config_path
from daemon.doctor import ble, host, kiosk, mqtt
from daemon.doctor.clock import clock_check, installed_floor
from daemon.doctor.live import check_live, endpoint
from daemon.doctor.report import Check, exit_code, render_json, render_text
from daemon.live.failures import brief
from daemon.ops.state import state_dir_from
from daemon.options import settings_from_args, setup_logging

__all__ = ["cmd_doctor", "run_checks"]

GUARD_LIMIT = 15.0  # no check takes longer than this, whatever hangs


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print every check (text, or one JSON document with --json); return the exit code."""
    with _logging(args):
        settings, config = _configuration(args)
        checks = asyncio.run(run_checks(settings, config, os.environ))
    code = exit_code(checks, config_loaded=settings is not None)
    print(render_json(checks, code) if getattr(args, "json", False) else render_text(checks))
    return code


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Libraries' warnings stay out of the output unless --log-level was given."""
    if getattr(args, "log_level", None):
        yield
        return
    root = logging.getLogger()
    quiet = logging.NullHandler()
    root.addHandler(quiet)  # no handler at all would send warnings to stderr
    try:
        yield
    finally:
        root.removeHandler(quiet)


def _configuration(args: argparse.Namespace) -> tuple[Settings | None, Check]:
    """The settings as `run` reads them, and the line that says so."""
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        return None, Check.fail("configuration", str(exc), "fix that key in the configuration "
                                "file or its EDGE_AGENT_ environment variable")
    if getattr(args, "log_level", None):
        setup_logging(settings, [])
    path, _ = resolve_config_path(args.config, os.environ)
    source = str(path) if path.is_file() else f"defaults ({path} does not exist)"
    mode = f"peripheral {settings.peripheral.kind}"
    if settings.mqtt.host:
        mode += f", MQTT {mqtt.where(settings.mqtt)}"
    return settings, Check.ok("configuration", f"valid: {source}; {mode}")


@dataclass(slots=True)
class _Found:
    """What the concurrent checks hand back, by area."""

    live: list[Check] = field(default_factory=list)
    server_time: float | None = None
    broker: mqtt.BrokerResult = field(default_factory=mqtt.BrokerResult)
    peripheral: list[Check] = field(default_factory=list)


async def run_checks(
    settings: Settings | None, config: Check, environ: Mapping[str, str]
) -> list[Check]:
    """Every check, in a fixed order; the talking ones concurrently."""
    key_line, key = host.key_check(environ)
    found = _Found()
    if settings is not None:
        async with asyncio.TaskGroup() as tg:
            if key is not None:
                tg.create_task(_live(settings, key, found))
            if settings.mqtt.host:
                tg.create_task(_broker(settings, found))
            tg.create_task(_peripheral(settings, environ, found))
    server = endpoint(settings.live) if settings is not None else ""
    checks = [config, host.python_check(), key_line, *found.live,
              clock_check(time.time(), installed_floor(), found.server_time, server)]
    if settings is not None:
        checks += found.broker.checks or [
            Check.ok("mqtt", "not configured (no mqtt.host): no home devices")]
        checks += found.peripheral
    checks += [host.libopus_check(host.opus_profile(settings) if settings else None),
               host.mosquitto_check()]
    if settings is not None:
        checks.append(host.state_dir_check(settings.ops.state_dir, environ))
    checks += [c for c in (host.credentials_check(environ),) if c is not None]
    checks.append(host.socket_door_check())
    if settings is not None:
        if settings.peripheral.kind == "ble":
            checks.append(host.pin_check(settings, environ))
        checks += host.safety_warnings(settings, found.broker.takes_anonymous)
    return checks


async def _guarded(name: str, work: Awaitable[list[Check]]) -> list[Check]:
    """The check's lines; a FAIL line when it overran GUARD_LIMIT or crashed."""
    try:
        async with asyncio.timeout(GUARD_LIMIT):
            return await work
    except TimeoutError:
        return [Check.fail(name, f"the check did not finish within {GUARD_LIMIT:.0f} s",
                           "run it again; if it stays, run with --log-level debug")]
    except Exception as exc:  # a bug in a check must not hide the others
        return [Check.fail(name, f"the check itself failed ({brief(exc)})",
                           "run with --log-level debug and report it")]


async def _live(settings: Settings, key: SecretStr, found: _Found) -> None:
    async def work() -> list[Check]:
        result = await check_live(settings.live, key)
        found.server_time = result.server_time
        return [result.check]

    found.live = await _guarded("Live API", work())


async def _broker(settings: Settings, found: _Found) -> None:
    async def work() -> list[Check]:
        found.broker = await mqtt.check_broker(settings.mqtt,
                                               probe_anonymous=settings.mqtt.remote_unmute)
        return found.broker.checks

    lines = await _guarded(mqtt.NAME, work())
    if lines is not found.broker.checks:  # it overran or crashed
        found.broker = mqtt.BrokerResult(lines)


async def _peripheral(settings: Settings, environ: Mapping[str, str], found: _Found) -> None:
    p = settings.peripheral
    if p.kind == "ble":
        state = state_dir_from(settings.ops.state_dir, environ)
        found.peripheral = await _guarded(ble.RADIO, ble.check_glasses(p.ble, state))
    elif p.kind == "kiosk":
        found.peripheral = await _guarded(kiosk.MICROPHONE, kiosk.check_kiosk(p.kiosk))
    else:
        from daemon.peripherals.file import file_problems

        found.peripheral = [Check.fail("file peripheral", why, "fix the key it names")
                            for why in file_problems(p.file.input, p.file.output)]

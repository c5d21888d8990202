"""The kiosk's push-to-talk buttons at the device edge: a key, a GPIO line.

Each source reports to a `Talk` (the kiosk), which feeds one pure state machine
(daemon.audio.ptt.PushToTalk). The MQTT source is the Home Assistant switch the
home service follows (daemon.home.own_device); a tap on the glasses is the BLE
peripheral's own. Here:

- `terminal`: the space bar on the daemon's controlling terminal toggles (a
  terminal sends no key-up, so there is nothing to hold). Only when stdin is a TTY.
- an evdev keyboard (`/dev/input/eventN[:KEY_NAME]`, python-evdev): held to talk,
  key-down and key-up as the kernel reports them; auto-repeat is ignored.
- a GPIO button (`gpiochipN:LINE[:active_high]`, libgpiod 2 through python `gpiod`):
  both edges, timestamped by the kernel, debounced (daemon.audio.ptt.Debounce);
  active low (a button to ground, the line pulled up) by default.

A device that cannot be opened (unplugged, no permission) is retried with backoff;
a missing library is logged once and the source stays off (`doctor` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from daemon.audio.ptt import Debounce
from daemon.backoff import Backoff
from daemon.config import KioskPeripheralSettings

log = logging.getLogger(__name__)

SPACE = " "
DEBOUNCE_S = 0.03


class Talk(Protocol):
    """What a source tells the kiosk."""

    def push_to_talk(self, pressed: bool, source: str = "mqtt") -> None:
        """`source` went down (True) or up."""

    def toggle_talk(self, source: str) -> None:
        """`source` has no release: flip it."""


def sources(settings: KioskPeripheralSettings, talk: Talk
            ) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The configured sources as coroutine functions to run beside the capture loop."""
    out: list[Callable[[], Coroutine[Any, Any, None]]] = []
    if settings.listen != "push_to_talk":
        return out
    key = settings.push_to_talk_key
    if key == "terminal":
        out.append(lambda: terminal_key(talk))
    elif key:
        path, _, name = key.partition(":")
        out.append(lambda: _retrying("evdev " + path, lambda: evdev_key(talk, path,
                                                                        name or "KEY_SPACE")))
    if settings.push_to_talk_gpio:
        chip, line, active = parse_gpio(settings.push_to_talk_gpio)
        out.append(lambda: _retrying(f"gpio {chip}:{line}",
                                     lambda: gpio_button(talk, chip, line, active_low=active)))
    return out


def parse_gpio(spec: str) -> tuple[str, int, bool]:
    """"gpiochip0:17[:active_high]" -> (chip path, line offset, active_low)."""
    parts = spec.split(":")
    chip = parts[0] if parts[0].startswith("/") else f"/dev/{parts[0]}"
    return chip, int(parts[1]), not (len(parts) > 2 and parts[2] == "active_high")


async def _retrying(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a device source; reopen it with backoff when the device goes away."""
    backoff = Backoff(1.0, 30.0)
    while True:
        try:
            await run()
            return
        except ImportError as exc:
            log.error("push-to-talk %s: %s is not installed; this source is off", name, exc.name)
            return
        except OSError as exc:
            delay = backoff.next_delay()
            log.warning("push-to-talk %s: %s; retrying in %.0f s", name, exc, delay)
            await asyncio.sleep(delay)


async def terminal_key(talk: Talk) -> None:
    """The space bar on the controlling terminal toggles talking (no key-up in a terminal)."""
    if not sys.stdin.isatty():
        log.warning("push-to-talk key: stdin is not a terminal; this source is off")
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    keys: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    tty.setcbreak(fd)
    loop.add_reader(fd, lambda: keys.put_nowait(sys.stdin.read(1)))
    log.info("push-to-talk: press the space bar to talk, again to stop")
    try:
        while True:
            if await keys.get() == SPACE:
                talk.toggle_talk("key")
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def evdev_key(talk: Talk, path: str, key_name: str) -> None:
    """Hold a key of an evdev keyboard (a USB foot switch, a big red button) to talk."""
    import evdev

    code = evdev.ecodes.ecodes.get(key_name)
    if not isinstance(code, int):
        log.error("push-to-talk: %r is not an evdev key name (KEY_SPACE, KEY_F13, ...)", key_name)
        return
    device = evdev.InputDevice(path)
    log.info("push-to-talk: hold %s on %r (%s)", key_name, device.name, path)
    try:
        async for event in device.async_read_loop():
            if event.type == evdev.ecodes.EV_KEY and event.code == code and event.value in (0, 1):
                talk.push_to_talk(event.value == 1, "key")  # 2 = auto-repeat
    finally:
        talk.push_to_talk(False, "key")
        device.close()


async def gpio_button(talk: Talk, chip: str, line: int, *, active_low: bool = True) -> None:
    """A button on a GPIO line, both edges from the kernel, debounced here."""
    import gpiod
    from gpiod.line import Bias, Edge

    settings = gpiod.LineSettings(edge_detection=Edge.BOTH,
                                  bias=Bias.PULL_UP if active_low else Bias.PULL_DOWN)
    request = gpiod.request_lines(chip, consumer="edge-agent push-to-talk",
                                  config={line: settings})
    edges: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        for ev in request.read_edge_events():
            rising = ev.event_type == ev.Type.RISING_EDGE
            edges.put_nowait((1 if rising else 0, ev.timestamp_ns / 1e9))  # CLOCK_MONOTONIC

    debounce = Debounce(DEBOUNCE_S, active_low=active_low)
    debounce.edge(int(request.get_value(line).value), time.monotonic())
    loop.add_reader(request.fd, readable)
    log.info("push-to-talk: GPIO %s line %d (active %s)", chip, line,
             "low" if active_low else "high")
    try:
        await _debounced(debounce, edges, lambda down: talk.push_to_talk(down, "gpio"))
    finally:
        loop.remove_reader(request.fd)
        talk.push_to_talk(False, "gpio")
        with contextlib.suppress(OSError):
            request.release()


async def _debounced(debounce: Debounce, edges: asyncio.Queue[tuple[int, float]],
                     changed: Callable[[bool], Any]) -> None:
    """Feed edges to the debouncer; report the stable level when a change settles."""
    while True:
        due = debounce.due
        try:
            async with asyncio.timeout(None if due is None else max(0.0, due - time.monotonic())):
                level, at = await edges.get()
            debounce.edge(level, at)
        except TimeoutError:
            pass
        stable = debounce.poll(time.monotonic())
        if stable is not None:
            changed(stable)

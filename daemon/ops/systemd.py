"""sd_notify and the systemd watchdog, by hand over an AF_UNIX datagram socket.

The protocol is one datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET`, which is
too small to justify a dependency. Without `$NOTIFY_SOCKET` (not under systemd,
or `Type=simple`) every call is a no-op, so callers never need to check.
Sending never blocks: a full or missing socket drops the message and returns
False, because a notification must never stall the event loop it reports on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    """The socket address from $NOTIFY_SOCKET; '@name' is Linux's abstract namespace."""
    raw = environ.get("NOTIFY_SOCKET", "")
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # unset, or a form we do not speak (e.g. vsock:)


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification (e.g. "READY=1"); True if it was handed to the socket."""
    env = os.environ if environ is None else environ
    address = _address(env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as err:
        log.debug("sd_notify %r failed: %s", state.split("=", 1)[0], err)
        return False
    return True


def ready(*, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd start-up is complete (Type=notify units wait for this)."""
    return notify("READY=1", environ=environ)


def stopping(*, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd we are shutting down on purpose, so it does not time us out as hung."""
    return notify("STOPPING=1", environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Set the one-line status `systemctl status` shows; newlines would start new keys."""
    one_line = " ".join(text.splitlines())
    return notify(f"STATUS={one_line}", environ=environ)


def watchdog_ping(*, environ: Mapping[str, str] | None = None) -> bool:
    """One keep-alive for the watchdog."""
    return notify("WATCHDOG=1", environ=environ)


def watchdog_interval(*, environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between keep-alives (half of WATCHDOG_USEC), or None when not asked for.

    A WATCHDOG_PID naming another process means the watchdog is not ours.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC", "").strip()
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID", "").strip()
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", raw_usec)
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


async def watchdog_loop(
    is_alive: Callable[[], bool],
    *,
    interval: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Ping the watchdog every interval, but only while `is_alive()` holds.

    A daemon whose event loop runs but whose work is wedged must stop pinging so
    systemd restarts it; an `is_alive` that raises counts as not alive. Returns at
    once when there is no watchdog; otherwise runs until cancelled.
    """
    period = watchdog_interval(environ=environ) if interval is None else interval
    if period is None:
        return
    if period <= 0:
        raise ValueError("watchdog interval must be positive")
    was_alive = True
    next_at = time.monotonic()
    while True:
        try:
            alive = bool(is_alive())
        except Exception:
            log.exception("watchdog liveness check raised")
            alive = False
        if alive:
            watchdog_ping(environ=environ)
        if alive != was_alive:
            if alive:
                log.info("daemon alive again: resuming watchdog keep-alive")
            else:
                log.warning("daemon not alive: withholding watchdog keep-alive")
        was_alive = alive
        # Fixed cadence; after a stall skip the missed ticks instead of bursting.
        next_at += period
        now = time.monotonic()
        if next_at < now:
            next_at = now
        await asyncio.sleep(next_at - now)

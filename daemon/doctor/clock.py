"""Is the clock sane? TLS (Live, MQTT over TLS) fails on a wrong one, with puzzling errors.

A board without a real-time clock can boot into 1970 or into the last time it
saved. Two cheap bounds: the clock cannot be earlier than the day the installed
CA bundle was built (certifi's version is that date) or than the files it came in
were written; and when the Live check reached a server, its HTTP `Date` header
says what time it is, to the second. `clock_check` is pure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import ssl
import time

from daemon.doctor.report import Check

NAME = "clock"
MAX_SKEW = 300.0  # seconds from the server's clock before TLS and tokens get unreliable
FILE_SLACK = 86_400.0  # a file's time is a rough floor: a day of slack
ADVICE = ("set the time and keep it synchronised (timedatectl set-ntp true, or install "
          "systemd-timesyncd)")
_VERSION_DATE = re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})")


def installed_floor() -> tuple[float, str] | None:
    """The latest moment the clock cannot be before, and what says so; None if unknown."""
    floors: list[tuple[float, str]] = []
    with contextlib.suppress(ImportError, ValueError):
        import certifi

        version = str(certifi.__version__)
        m = _VERSION_DATE.match(version)
        if m:
            day = dt.datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=dt.UTC)
            floors.append((day.timestamp(), f"the CA bundle's build date (certifi {version})"))
        floors.append(_file_floor(certifi.where(), "the installed CA bundle"))
    system = ssl.get_default_verify_paths().cafile
    if system:
        floors.append(_file_floor(system, "the system CA bundle"))
    known = [f for f in floors if f[0] > 0]
    return max(known) if known else None


def _file_floor(path: str, what: str) -> tuple[float, str]:
    try:
        written = os.stat(path).st_mtime
    except OSError:
        return 0.0, what
    return written - FILE_SLACK, f"{what} (written {_day(written)})"


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def clock_check(
    now: float, floor: tuple[float, str] | None, server_time: float | None, server: str = ""
) -> Check:
    """FAIL when the clock is before `floor` or more than MAX_SKEW off the server's."""
    if floor is not None and now < floor[0]:
        return Check.fail(NAME, f"{_stamp(now)} is before {floor[1]}: the clock is wrong", ADVICE)
    if server_time is not None:
        skew = now - server_time
        if abs(skew) > MAX_SKEW:
            side = "ahead of" if skew > 0 else "behind"
            return Check.fail(NAME, f"{_stamp(now)} is {abs(skew):.0f} s {side} {server}'s "
                                    f"clock ({_stamp(server_time)})", ADVICE)
        return Check.ok(NAME, f"{_stamp(now)}, within {abs(skew):.0f} s of {server}'s clock")
    since = f": not before {floor[1]}" if floor is not None else ""
    return Check.ok(NAME, f"{_stamp(now)}{since}; no server clock to compare with")

"""What `doctor` found, as values; the exit policy and the two renderings (text, JSON).

Pure, so the verdict and what a user reads can be tested without a socket. A detail
or advice is scrubbed of every registered secret before it is rendered, whatever
produced it (an error message may quote what it was sent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from daemon.app import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from daemon.ops.logsetup import scrub

Status = Literal["ok", "warn", "fail"]

# "ok " as doctor always printed it: scripts and tests match `ok   name:`.
_LABEL: dict[Status, str] = {"ok": "ok ", "warn": "WARN", "fail": "FAIL"}
ADVICE_INDENT = "      -> "


@dataclass(frozen=True, slots=True)
class Check:
    """One thing looked at: its name, the verdict, what was seen, and what to do."""

    name: str
    status: Status
    detail: str
    advice: str = ""  # one line; shown only when the check is not ok

    @classmethod
    def ok(cls, name: str, detail: str) -> Check:
        """A check that passed."""
        return cls(name, "ok", detail)

    @classmethod
    def warn(cls, name: str, detail: str, advice: str = "") -> Check:
        """Worth knowing; the exit code stays."""
        return cls(name, "warn", detail, advice)

    @classmethod
    def fail(cls, name: str, detail: str, advice: str = "") -> Check:
        """Something the configured mode needs does not work: exit 1."""
        return cls(name, "fail", detail, advice)


def exit_code(checks: Iterable[Check], *, config_loaded: bool) -> int:
    """2 when the configuration does not load, 1 when any check failed, else 0.

    Warnings never change it: only what the configured mode needs is a FAIL.
    """
    if not config_loaded:
        return EXIT_USAGE
    return EXIT_FAIL if any(c.status == "fail" for c in checks) else EXIT_OK


def overall(checks: Sequence[Check], code: int) -> Status:
    """One word for scripts: fail (exit non-zero), warn (exit 0 with warnings), ok."""
    if code != EXIT_OK:
        return "fail"
    return "warn" if any(c.status == "warn" for c in checks) else "ok"


def render_text(checks: Iterable[Check]) -> str:
    """One line per check (`ok   name: detail`), and one line of advice when not ok."""
    lines: list[str] = []
    for c in checks:
        lines.append(f"{_LABEL[c.status]}  {c.name}: {scrub(c.detail)}")
        if c.status != "ok" and c.advice:
            lines.append(f"{ADVICE_INDENT}{scrub(c.advice)}")
    return "\n".join(lines)


def render_json(checks: Sequence[Check], code: int) -> str:
    """One JSON document: every check (name, status, detail, advice) and the verdict."""
    doc = {
        "status": overall(checks, code),
        "exit_code": code,
        "checks": [
            {
                "name": c.name,
                "status": c.status,
                "detail": scrub(c.detail),
                "advice": scrub(c.advice) if c.advice and c.status != "ok" else None,
            }
            for c in checks
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)

"""Secrets for the scrubbing tests, and the checks that none of them leaked."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote, quote_plus

from daemon.ops import logsetup


def new_secret() -> str:
    """A unique secret with characters that URL-encoding, repr and JSON all change."""
    return f"k3y/{uuid.uuid4().hex[:12]}+p@ss w\\o'rd\"é"


def assert_clean(output: str, secret: str) -> None:
    for form in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
        assert form not in output
    assert secret.split("/")[1].split("+")[0] not in output  # not even the random middle


def new_key() -> str:
    """A unique 39-character key shaped like a Google API key."""
    return "AIzaSy" + uuid.uuid4().hex + "Q"


def assert_no_piece(output: str, secret: str) -> None:
    """Not the secret, nor any run of FRAGMENT_LENGTH of its characters."""
    n = logsetup.FRAGMENT_LENGTH
    pieces = [secret[i : i + n] for i in range(len(secret) - n + 1)]
    leaked = [p for p in pieces if p in output]
    assert not leaked, f"pieces of the secret in the output: {leaked}"

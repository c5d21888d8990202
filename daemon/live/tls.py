"""The Live socket's TLS context, apart from the SDK: cheap to import, so the daemon can
build it on a thread at start (loading CA files is ~20-50 ms here, much of it outside
the GIL) while the main thread imports and connects the glasses."""

from __future__ import annotations

import ssl

from daemon.config import LiveSettings

__all__ = ["client_context"]


def client_context(s: LiveSettings) -> ssl.SSLContext:
    """The system's CAs, plus `live.ca_file` (a private endpoint) when set."""
    ctx = ssl.create_default_context()
    if s.ca_file is not None:
        ctx.load_verify_locations(cafile=str(s.ca_file))
    return ctx

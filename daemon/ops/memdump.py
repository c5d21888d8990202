"""Heap snapshots on demand, to find what grows in a long run (a debugging aid, off by default).

Only when the daemon was started with tracemalloc on (`PYTHONTRACEMALLOC=N`): each
SIGUSR2 writes a `tracemalloc.Snapshot` to `$EDGE_TRACEMALLOC_DIR` (else the temporary
directory) as `tracemalloc-<pid>-<n>.snap`, for `Snapshot.load` and `compare_to`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import tempfile
import tracemalloc
from pathlib import Path

log = logging.getLogger(__name__)


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """The SIGUSR2 handler, if tracemalloc is tracing; whether it was installed."""
    if not tracemalloc.is_tracing():
        return False
    directory = Path(os.environ.get("EDGE_TRACEMALLOC_DIR") or tempfile.gettempdir())
    count = itertools.count()

    def dump() -> None:
        path = directory / f"tracemalloc-{os.getpid()}-{next(count)}.snap"
        tracemalloc.take_snapshot().dump(str(path))
        log.warning("heap snapshot written to %s", path)

    loop.add_signal_handler(signal.SIGUSR2, dump)
    return True

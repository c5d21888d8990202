"""Shared by every test.

Two folders, two speeds: `tests/unit` (no sockets, no processes, no waiting on the
clock: the whole set in seconds; `tests/unit/conftest.py` enforces it) and
`tests/integration` (real mosquitto, Bumble radios, the fake Live server,
subprocesses), every test of which is marked `integration` here. Tests that take more
than about ten seconds are also marked `slow`. Helpers live in `tests/support`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tls import write_ca_pem

INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration `integration` (`-m "not integration"`)."""
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def ca_pem(tmp_path: Path) -> Path:
    """The one test CA: a throwaway certificate authority's PEM, for a `ca_file`."""
    return write_ca_pem(tmp_path / "ca.pem")

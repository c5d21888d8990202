"""A usage mistake is one line that names it, and exit 2 (DESIGN.md's contract)."""

from __future__ import annotations

import pytest

from daemon.cli import main

pytestmark = pytest.mark.timeout(10)


def test_an_unknown_option_before_the_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-agent: unknown option '--bogus'") and "\n" not in err

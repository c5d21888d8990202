"""The layer rules are enforced: `lint-imports` keeps the contracts in `.importlinter`,
and one import that runs up a layer (or into the simulator) breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(120)
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT)], cwd=root, capture_output=True, text=True, timeout=100,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("daemon", "simulator"):
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    shutil.copy(REPO / ".importlinter", root / ".importlinter")
    return root


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("daemon/media/types.py", "import daemon.agent", "Layers"),
        ("daemon/home/inventory.py", "import daemon.tools.registry", "Layers"),
        ("daemon/agent.py", "import simulator.radio", "never imports the simulator"),
        ("daemon/tools/dispatch.py", "import aiomqtt", "know nothing of MQTT"),
        ("daemon/home/service.py", "import google.genai", "Only the Live layer"),
    ],
)
def test_an_import_against_the_map_breaks_the_build(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy(tmp_path)
    kept = _lint(root)
    assert kept.returncode == 0, kept.stdout[-2000:]
    target = root / module
    target.write_text(target.read_text() + f"\n{line}  # an import against the map\n")
    broken = _lint(root)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout and contract in broken.stdout, broken.stdout[-2000:]

"""`edge-agent demo --scene tasks` as a user runs it (issue 8): a real subprocess, the real
daemon on the fakes and the virtual glasses; the transcript shows a background task
started, the conversation going on, the service finishing and the summary said."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from simulator.tasks_demo import SUMMARY, TASK_NAME

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]


def _at(lines: list[str], part: str) -> int:
    """The index of the first transcript line containing `part` (fails naming it)."""
    for i, line in enumerate(lines):
        if part in line:
            return i
    raise AssertionError(f"no line with {part!r} in:\n" + "\n".join(lines))


async def test_the_tasks_scene_delivers_the_summary_while_the_conversation_goes_on(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGE_AGENT_", "GEMINI", "STATE_DIRECTORY"))}
    env["EDGE_AGENT_CONFIG"] = str(tmp_path / "none.toml")
    env["TMPDIR"] = str(tmp_path)  # where the scene's own state directory goes
    (tmp_path / "none.toml").write_text("")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "demo", "--scene", "tasks",
        "--output", str(tmp_path / "reply.wav"), env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 130)
    assert proc.returncode == 0, (out + err).decode()[-3000:]
    lines = [ln for ln in out.decode().splitlines() if re.match(r"\[\d\d:\d\d\.\d\]", ln)]
    steps = [
        _at(lines, "you    Research the best heat pump"),
        _at(lines, 'start_task({"name": "heat pump research"'),
        _at(lines, "model  I've started the heat pump research in the background"),
        _at(lines, "you    Meanwhile, turn on the kitchen light."),
        _at(lines, "model  Done, the kitchen light is on."),
        _at(lines, f"task   service: the {TASK_NAME} finished"),
        _at(lines, "task   daemon: polled it, result valid"),
        _at(lines, "task   daemon -> conversation:"),
        _at(lines, f"model  The {TASK_NAME} is done."),
    ]
    assert steps == sorted(steps), "\n".join(lines)
    assert '-> ok: {"status": "started"}' in lines[steps[1]]  # answered at once
    assert SUMMARY in lines[steps[7]] and SUMMARY in lines[steps[8]]
    assert sum(SUMMARY in ln for ln in lines if "model  " in ln) == 1  # said once
    assert "the task's summary was never said" not in out.decode()
    # Its state lived in a temporary directory, removed when it ended.
    assert not list(tmp_path.glob("edge-agent-demo-*"))
    assert not [ln for ln in err.decode().splitlines() if " ERROR " in ln], err.decode()[-2000:]

"""The real daemon (`edge-agent run`, file peripheral) with background tasks on, and
the fakes it talks to: the fake Live server and the fake Interactions service on its
port (tests/integration/test_background_tasks.py, test_fallback_road.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.interactions import FakeInteractions
from simulator.live_server import FakeLiveServer
from simulator.probe import stamped_wav
from tests.support.live import KEY

__all__ = ["Daemon", "Fakes"]


@dataclass
class Fakes:
    live: FakeLiveServer
    tasks: FakeInteractions

    def client_texts(self) -> list[str]:
        """Every clientContent the daemon sent (results put into the conversation)."""
        return [json.dumps(m.message) for c in self.live.connections for m in c.messages
                if m.kind == "client_content"]

    def answers(self, tool: str) -> list[Any]:
        return [r.response for r in self.live.tool_responses if r.name == tool]


class Daemon:
    """One `edge-agent run` process with background tasks on, sharing `tmp_path/state`."""

    def __init__(self, fakes: Fakes, tmp_path: Path, schedule: Sequence[tuple[bool, float]],
                 name: str = "d", **extra: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EDGE_AGENT_", "GEMINI", "STATE_DIRECTORY"))}
        (tmp_path / "none.toml").write_text("")
        env.update(
            GEMINI_API_KEY=KEY,
            EDGE_AGENT_CONFIG=str(tmp_path / "none.toml"),
            EDGE_AGENT_LIVE__BASE_URL=fakes.live.base_url,
            EDGE_AGENT_LIVE__CA_FILE=str(fakes.live.ca_pem_path),
            EDGE_AGENT_PERIPHERAL__FILE__INPUT=str(stamped_wav(tmp_path / f"{name}.wav", schedule)),
            EDGE_AGENT_PERIPHERAL__FILE__OUTPUT=str(tmp_path / f"{name}-reply.wav"),
            EDGE_AGENT_INTERACTIONS__ENABLED="true",
            EDGE_AGENT_INTERACTIONS__POLL_INITIAL="0.2",
            EDGE_AGENT_INTERACTIONS__POLL_MAX="1.0",
            EDGE_AGENT_INTERACTIONS__DELIVER_QUIET="0.3",
            STATE_DIRECTORY=str(tmp_path / "state"),
        )
        env.update(extra)
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Daemon:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(signal.SIGTERM)

    async def stop(self, sig: signal.Signals) -> str:
        """Signal it and wait for its exit; its log (stderr)."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return ""
        proc.send_signal(sig)
        assert proc.stderr is not None
        err = await asyncio.wait_for(proc.stderr.read(), 20)
        await asyncio.wait_for(proc.wait(), 20)
        return err.decode(errors="replace")

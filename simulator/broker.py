"""A private mosquitto on a free loopback port, for tests and `edge-agent demo`.

Tests use the real broker (persistence, retained messages, last wills and
persistent sessions behave as in production). `restart()` keeps the port and the
persistence file, so a test can restart the broker under a running client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Self

DEFAULT_MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """mosquitto could not be started (the message carries the end of its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the broker may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str | None:
    if os.access(DEFAULT_MOSQUITTO, os.X_OK):
        return DEFAULT_MOSQUITTO
    return shutil.which("mosquitto")


class PrivateBroker:
    """mosquitto with anonymous access on 127.0.0.1 and its own data directory."""

    def __init__(
        self,
        *,
        port: int | None = None,
        persistence: bool = True,
        workdir: Path | None = None,
        executable: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or 0
        self.persistence = persistence
        self._fixed_port = port is not None
        self._exe = executable or find_mosquitto()
        self._own_dir = workdir is None
        self._dir = workdir
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def workdir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("broker not started")
        return self._dir

    def log_text(self) -> str:
        """mosquitto's own log so far (for failure messages)."""
        try:
            return (self.workdir / "mosquitto.log").read_text(errors="replace")
        except (OSError, RuntimeError):
            return ""

    def _prepare(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="edge-mosquitto-"))
        data = self._dir / "data"
        data.mkdir(exist_ok=True)
        conf = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {data}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to the `mosquitto` user; let it write its data.
            try:
                user = pwd.getpwnam("mosquitto")
            except KeyError:
                conf.append("user root")
            else:
                self._dir.chmod(0o755)
                os.chown(data, user.pw_uid, user.pw_gid)
        path = self._dir / "mosquitto.conf"
        path.write_text("\n".join(conf) + "\n")
        return path

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Start mosquitto and wait until it accepts connections."""
        if self.running:
            return
        if self._exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        attempts = 1 if self._fixed_port or self.port else 3
        for attempt in range(attempts):
            if not self._fixed_port and (attempt > 0 or not self.port):
                self.port = free_port(self.host)
            conf = self._prepare()
            self._log = (self.workdir / "mosquitto.log").open("ab")
            self._proc = await asyncio.create_subprocess_exec(
                self._exe,
                "-c",
                str(conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
            )
            if await self._wait_ready(timeout):
                return
            await self._terminate(2.0)
        raise BrokerError(
            f"mosquitto did not start on {self.host}:{self.port}: {self.log_text()[-500:]}"
        )

    async def _wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not self.running:
                return False
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 0.5
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """SIGTERM (mosquitto saves its persistence file) and wait for the exit."""
        await self._terminate(timeout)

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing is saved beyond the last autosave."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()
        await self._reap(5.0)

    async def restart(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop and start again on the same port with the same data."""
        await self.stop(timeout)
        self._fixed_port = True
        await self.start(timeout)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGCONT)

    async def _terminate(self, timeout: float) -> None:  # noqa: ASYNC109
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        await self._reap(timeout)

    async def _reap(self, timeout: float) -> None:  # noqa: ASYNC109
        proc = self._proc
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        await self.stop()
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

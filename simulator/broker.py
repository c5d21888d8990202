"""A private mosquitto on a free loopback port, for tests and `edge-agent demo`.

Tests use the real broker (persistence, retained messages, last wills and
persistent sessions behave as in production). `restart()` keeps the port and the
persistence file, so a test can restart the broker under a running client.
Optionally it takes only the given users (a mosquitto password file, hashed by
mosquitto_passwd) and speaks only TLS, with a certificate from a throwaway trustme
CA (`ca_file`).
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
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from daemon.errors import EdgeAgentError

DEFAULT_MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerError(EdgeAgentError, RuntimeError):
    """mosquitto could not be started (the message carries the end of its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the broker may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str | None:
    """The mosquitto binary: the usual install path, else from PATH; None when absent."""
    if os.access(DEFAULT_MOSQUITTO, os.X_OK):
        return DEFAULT_MOSQUITTO
    return shutil.which("mosquitto")


def find_mosquitto_passwd(mosquitto: str | None = None) -> str | None:
    """mosquitto_passwd next to mosquitto, or on PATH (Debian puts it in /usr/bin)."""
    if mosquitto:
        sibling = Path(mosquitto).with_name("mosquitto_passwd")
        if os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("mosquitto_passwd")


class PrivateBroker:
    """mosquitto on 127.0.0.1 with its own data directory.

    Anonymous by default; with `users` ({name: password}) only those may connect.
    With `tls` the listener speaks only TLS (certificate for 127.0.0.1 and localhost,
    signed by a throwaway CA whose PEM is at `ca_file`).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        persistence: bool = True,
        workdir: Path | None = None,
        executable: str | None = None,
        users: Mapping[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        for name, password in (users or {}).items():
            if not name or any(c in name + password for c in ":\n\r") or not password:
                raise ValueError("users: names and passwords must be non-empty, without ':'")
        self.host = "127.0.0.1"
        self.port = port or 0
        self.persistence = persistence
        self.users = dict(users or {})
        self.tls = tls
        self._fixed_port = port is not None
        self._exe = executable or find_mosquitto()
        self._own_dir = workdir is None
        self._dir = workdir
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the mosquitto process is alive."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        """The mosquitto process id while started."""
        return self._proc.pid if self._proc else None

    @property
    def workdir(self) -> Path:
        """The broker's data directory; RuntimeError before `start`."""
        if self._dir is None:
            raise RuntimeError("broker not started")
        return self._dir

    @property
    def ca_file(self) -> Path:
        """The PEM of the CA that signed the broker's certificate (with `tls`)."""
        if not self.tls:
            raise RuntimeError("the broker was not started with tls=True")
        return self.workdir / "ca.pem"

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
        conf = [f"listener {self.port} {self.host}"]
        readable: list[Path] = []  # for the `mosquitto` user, when run as root
        if self.tls:
            conf += self._certificates()
            readable += [self._dir / "server.pem", self._dir / "server.key"]
        if self.users:
            conf += ["allow_anonymous false", f"password_file {self._dir / 'passwd'}"]
            readable.append(self._dir / "passwd")
        else:
            conf.append("allow_anonymous true")
        conf += [
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
                for path in readable:
                    os.chown(path, user.pw_uid, user.pw_gid)
        path = self._dir / "mosquitto.conf"
        path.write_text("\n".join(conf) + "\n")
        return path

    def _certificates(self) -> list[str]:
        """A throwaway CA and a server certificate for this host (made once per broker)."""
        import trustme  # lazily: only brokers with TLS need it

        directory = self.workdir
        if not (directory / "server.key").exists():
            ca = trustme.CA()
            cert = ca.issue_cert(self.host, "localhost")
            ca.cert_pem.write_to_path(str(directory / "ca.pem"))
            cert.private_key_pem.write_to_path(str(directory / "server.key"))
            with (directory / "server.pem").open("wb") as out:
                for blob in cert.cert_chain_pems:
                    out.write(blob.bytes())
            (directory / "server.key").chmod(0o600)
        return [
            f"certfile {directory / 'server.pem'}",
            f"keyfile {directory / 'server.key'}",
            "tls_version tlsv1.2",
        ]

    async def _write_password_file(self) -> None:
        """A mosquitto password file: `mosquitto_passwd -U` hashes `name:password` lines
        in place, so the passwords never appear on a command line."""
        path = self.workdir / "passwd"
        tool = find_mosquitto_passwd(self._exe)
        if tool is None:
            raise BrokerError("mosquitto_passwd is not installed (apt-get install mosquitto)")
        path.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
        path.chmod(0o600)
        proc = await asyncio.create_subprocess_exec(
            tool,
            "-U",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            path.unlink(missing_ok=True)
            raise BrokerError(f"mosquitto_passwd failed: {out.decode(errors='replace')[-300:]}")

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Start mosquitto and wait until it accepts connections."""
        if self.running:
            return
        if self._exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="edge-mosquitto-"))
        if self.users and not (self._dir / "passwd").exists():
            await self._write_password_file()
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
                # Ctrl-C in a terminal signals the whole process group: the broker must
                # outlive its clients' clean disconnect, so only we stop it.
                start_new_session=True,
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
        """Let a paused broker run again (SIGCONT)."""
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

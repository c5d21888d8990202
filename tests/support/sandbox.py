"""Run a systemd unit's ExecStart under the unit's own sandbox, without systemd.

There is no running systemd here (`systemd-run --user` and `systemd-nspawn` need
one), so this does what systemd's executor does, from the unit file itself:
`policy_from_unit` reads the [Service] lines and turns them into a policy, and
`sandbox_exec.py` (run as root by Debian's python3, which has the libseccomp
bindings) applies it between fork and exec:

- a private mount namespace: ProtectSystem=strict (all read-only but the state
  directory), ProtectHome and PrivateTmp (empty tmpfs; the interpreter and this
  harness's own tree bound back), PrivateDevices (a /dev of pseudo devices only),
  ProtectProc/ProcSubset (procfs mounted with hidepid/subset), ProtectKernelTunables
  (/sys read-only);
- the capability bounding set, an unprivileged user with the unit's supplementary
  groups (those this machine has), UMask, LimitCORE, TasksMax (as RLIMIT_NPROC);
- NoNewPrivileges, MemoryDenyWriteExecute twice over (PR_SET_MDWE as systemd >= 254
  does, and the seccomp rules on mmap/mprotect/shmat of systemd <= 253, stricter),
  SystemCallFilter (the sets expanded by `systemd-analyze syscall-filter`, with
  @default and the calls the Protect* lines deny), SystemCallErrorNumber,
  SystemCallArchitectures=native, RestrictAddressFamilies, RestrictNamespaces,
  LockPersonality, RestrictSUIDSGID;
- the environment systemd sets: NOTIFY_SOCKET (a socket here that checks the
  sender's pid, NotifyAccess=main), WATCHDOG_USEC/PID, STATE_DIRECTORY,
  CREDENTIALS_DIRECTORY (LoadCredential=), HOME/USER, Environment=.

Not applied (cgroups, BPF or a user namespace, which need systemd): PrivateUsers,
IPAddressDeny, DevicePolicy/DeviceAllow (PrivateDevices covers the base unit),
MemoryMax (the test checks the peak RSS instead), RemoveIPC, ProtectHostname's UTS
namespace (its system calls are denied), Restart= and the watchdog's kill.
Paths the unit names on the target (/opt/edge-agent/.venv, /etc/edge-agent,
/var/lib/edge-agent) are mapped into a private tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import grp
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

UNIT = REPO / "systemd" / "edge-agent.service"
KIOSK_DROPIN = REPO / "systemd" / "kiosk.conf"  # a drop-in; not beside the unit, where
# systemd-analyze would read it into every check of the unit itself
EXEC_HELPER = Path(__file__).with_name("sandbox_exec.py")
SYSTEM_PYTHON = Path("/usr/bin/python3")
NOBODY, NOGROUP = 65534, 65534
# What the unit says on the target, and where this harness puts it instead.
TARGET_VENV = "/opt/edge-agent/.venv"
TARGET_ETC = "/etc/edge-agent"
TARGET_STATE = "/var/lib/edge-agent"

Service = dict[str, list[str]]
# Address families Python may have been built without (AF_BLUETOOTH needs its headers).
AF_NUMBERS = {"AF_NETLINK": 16, "AF_PACKET": 17, "AF_BLUETOOTH": 31, "AF_ALG": 38,
              "AF_VSOCK": 40, "AF_XDP": 44}


def read_unit(path: Path, *dropins: Path, extra: Sequence[str] = ()) -> Service:
    """The [Service] section as systemd merges it: drop-ins after the unit, then `extra`
    ("Key=value" lines, as a test's breaking line); an empty value resets a list."""
    service: Service = {}
    lines: list[str] = []
    for file in (path, *dropins):
        section = ""
        for raw in file.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
            elif section == "[Service]":
                lines.append(line)
    for line in (*lines, *extra):
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value == "":
            service[key] = []
        else:
            service.setdefault(key, []).append(value)
    return service


def last(service: Service, key: str, default: str = "") -> str:
    """The value in force for a single-valued setting."""
    values = service.get(key)
    return values[-1] if values else default


def _yes(service: Service, key: str) -> bool:
    return last(service, key).lower() in ("yes", "true", "1", "on")


@functools.cache
def syscall_groups() -> dict[str, tuple[str, ...]]:
    """Every `@group` systemd knows, with its members, from `systemd-analyze syscall-filter`."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in out.splitlines():
        line = raw.strip()
        if raw.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif not line or line.startswith("#"):
            if not line:
                current = None
        elif current is not None:
            current.append(line)
    return {name: tuple(members) for name, members in groups.items()}


def expand(names: Sequence[str]) -> set[str]:
    """System call names, with every @group expanded (recursively)."""
    groups = syscall_groups()
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name.startswith("@"):
            if name not in groups:
                raise ValueError(f"unknown system call group {name}")
            todo.extend(groups[name])
        else:
            out.add(name)
    return out


def allowed_syscalls(service: Service) -> set[str] | None:
    """SystemCallFilter= as systemd reads it: the first line decides allow or deny;
    an allow-list always holds @default. None: no filter (a deny-list is refused)."""
    allowed: set[str] | None = None
    for value in service.get("SystemCallFilter", []):
        deny = value.startswith("~")
        names = value.removeprefix("~").split()
        if allowed is None:
            if deny:
                raise ValueError("a deny-list SystemCallFilter= is not supported here")
            allowed = expand(["@default"])
        allowed = allowed - expand(names) if deny else allowed | expand(names)
    return allowed


def implied_denials(service: Service) -> list[str]:
    """The system calls other lines deny on their own (systemd adds a filter for each)."""
    denied: set[str] = set()
    for key, names in (("PrivateDevices", ["@raw-io"]), ("ProtectClock", ["@clock"]),
                       ("ProtectKernelModules", ["@module"]), ("ProtectKernelLogs", ["syslog"]),
                       ("ProtectHostname", ["sethostname", "setdomainname"])):
        if _yes(service, key):
            denied |= expand(names)
    return sorted(denied)


def address_families(service: Service) -> list[int] | None:
    """RestrictAddressFamilies= as an allow-list of numbers; None when unrestricted."""
    values = service.get("RestrictAddressFamilies")
    if not values:
        return None
    names = " ".join(values).split()
    if any(n.startswith("~") for n in names):
        raise ValueError("a deny-list RestrictAddressFamilies= is not supported here")
    return sorted(int(getattr(socket, name, None) or AF_NUMBERS[name]) for name in names)


def _errno(service: Service) -> int:
    name = last(service, "SystemCallErrorNumber", "EPERM")
    return int(getattr(errno, name))


def _capabilities_kept(service: Service) -> list[int]:
    values = service.get("CapabilityBoundingSet")
    if values is None:
        return list(range(64))  # not set: all
    if values == []:
        return []
    raise ValueError("only an empty CapabilityBoundingSet= is supported here")


def _mounts(service: Service, keep: list[str], writable: list[str]) -> dict[str, Any]:
    hide: list[dict[str, str]] = []
    if _yes(service, "ProtectHome"):
        hide += [{"path": p, "mode": "0711"} for p in ("/root", "/home", "/run/user")]
    if _yes(service, "PrivateTmp"):
        hide += [{"path": p, "mode": "1777"} for p in ("/tmp", "/var/tmp")]
    protect = last(service, "ProtectSystem", "no")
    if protect not in ("strict", "no"):
        raise ValueError(f"ProtectSystem={protect} is not supported here")
    proc = []
    if last(service, "ProtectProc", "default") != "default":
        proc.append(f"hidepid={last(service, 'ProtectProc')}")
    if last(service, "ProcSubset", "all") == "pid":
        proc.append("subset=pid")
    return {
        "hide": hide,
        "keep": keep,
        "private_devices": _yes(service, "PrivateDevices"),
        "protect_system": protect,
        "protect_kernel_tunables": _yes(service, "ProtectKernelTunables"),
        "writable": writable,
        "proc_options": ",".join(proc),
    }


def _interpreter_prefix(venv: Path) -> Path:
    """Where the venv's Python really lives (it must stay visible under ProtectHome)."""
    return Path(os.path.realpath(venv / "bin" / "python")).parents[1]


def _environment(service: Service) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in service.get("Environment", []):
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            env[key] = val
    return env


@dataclass
class Layout:
    """The private tree standing in for the target's paths."""

    base: Path
    etc: Path
    state: Path
    credentials: Path
    notify: Path

    def map(self, arg: str, venv: Path) -> str:
        """A path as the unit names it on the target, mapped into this tree."""
        for target, here in ((TARGET_VENV, str(venv)), (TARGET_ETC, str(self.etc)),
                             (TARGET_STATE, str(self.state))):
            if arg == target or arg.startswith(target + "/"):
                return here + arg[len(target):]
        return arg


def make_layout(gid: int = NOGROUP, uid: int = NOBODY) -> Layout:
    """/etc/edge-agent (root:group 0750), the state directory (the user's, 0700), the
    credentials directory (the user's, 0500 once written): as install and systemd do."""
    base = Path(tempfile.mkdtemp(prefix="edge-agent-unit-"))
    base.chmod(0o711)
    layout = Layout(base, base / "etc", base / "state", base / "credentials", base / "notify")
    layout.etc.mkdir(mode=0o750)
    os.chown(layout.etc, 0, gid)
    layout.state.mkdir(mode=0o700)
    os.chown(layout.state, uid, gid)
    layout.credentials.mkdir(mode=0o700)
    return layout


def install_config(layout: Layout, name: str, text: str, gid: int = NOGROUP) -> Path:
    """A file in the mapped /etc/edge-agent, root:group 0640 as scripts/install makes it."""
    path = layout.etc / name
    path.write_text(text, encoding="utf-8")
    os.chown(path, 0, gid)
    path.chmod(0o640)
    return path


def policy_from_unit(
    service: Service,
    layout: Layout,
    *,
    venv: Path,
    credentials: Mapping[str, str],
    uid: int = NOBODY,
    gid: int = NOGROUP,
) -> dict[str, Any]:
    """What sandbox_exec.py applies, derived from the unit alone (and the path mapping)."""
    argv = [layout.map(a, venv) for a in shlex.split(last(service, "ExecStart"))]
    for spec in service.get("LoadCredential", []):  # systemd refuses to start without one
        cred_id = spec.split(":", 1)[0]
        if cred_id not in credentials:
            raise ValueError(f"the unit loads credential {cred_id!r}: give it to the harness")
        path = layout.credentials / cred_id
        path.write_text(credentials[cred_id], encoding="utf-8")
        os.chown(path, uid, gid)
        path.chmod(0o400)
    os.chown(layout.credentials, uid, gid)
    layout.credentials.chmod(0o500)
    groups = [g.gr_gid for name in " ".join(service.get("SupplementaryGroups", [])).split()
              for g in _group(name)]
    watchdog = last(service, "WatchdogSec")
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(layout.state), "USER": "edge-agent", "LOGNAME": "edge-agent",
        "SHELL": "/usr/sbin/nologin", "INVOCATION_ID": os.urandom(16).hex(),
        "NOTIFY_SOCKET": str(layout.notify),
        "STATE_DIRECTORY": str(layout.state),
        "CREDENTIALS_DIRECTORY": str(layout.credentials),
        **_environment(service),
    }
    if watchdog:
        env["WATCHDOG_USEC"] = str(int(float(watchdog.rstrip("s")) * 1_000_000))
    keep = [str(_interpreter_prefix(venv)), str(layout.base), str(venv), str(REPO)]
    tasks = last(service, "TasksMax")
    return {
        "argv": argv,
        "env": env,
        "cwd": layout.map(last(service, "WorkingDirectory", "/"), venv),
        "user": {"uid": uid, "gid": gid, "groups": [gid, *groups]},
        "umask": last(service, "UMask", "0022"),
        "limit_core": None if last(service, "LimitCORE", "infinity") == "infinity"
        else int(last(service, "LimitCORE")),
        "tasks_max": int(tasks) if tasks.isdigit() else None,
        "capabilities_kept": _capabilities_kept(service),
        "no_new_privileges": _yes(service, "NoNewPrivileges"),
        "memory_deny_write_execute": _yes(service, "MemoryDenyWriteExecute"),
        "restrict_namespaces": _yes(service, "RestrictNamespaces"),
        "lock_personality": _yes(service, "LockPersonality"),
        "restrict_suid_sgid": _yes(service, "RestrictSUIDSGID"),
        "native_only": last(service, "SystemCallArchitectures") == "native",
        "allowed_syscalls": None if (a := allowed_syscalls(service)) is None else sorted(a),
        "denied_syscalls": implied_denials(service),
        "syscall_errno": _errno(service),
        "address_families": address_families(service),
        "mounts": _mounts(service, keep, [str(layout.state)]),
    }


def _group(name: str) -> list[grp.struct_group]:
    try:
        return [grp.getgrnam(name)]
    except KeyError:
        return []  # e.g. `bluetooth` where bluez is not installed


@dataclass
class Notification:
    """One sd_notify datagram and the pid the kernel says sent it."""

    pid: int
    text: str
    at: float


@dataclass
class SandboxedUnit:
    """A running ExecStart under the unit's sandbox: its notifications and its log."""

    proc: asyncio.subprocess.Process
    layout: Layout
    notifications: list[Notification] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self, text: str) -> list[Notification]:
        """The notifications holding `text` as one of their lines."""
        return [n for n in self.notifications if text in n.text.splitlines()]

    async def wait_for(self, text: str, within: float) -> Notification:
        """The first notification holding `text`; fails early if the process ends."""
        async with asyncio.timeout(within):
            while True:
                found = self.received(text)
                if found:
                    return found[0]
                if self.proc.returncode is not None:
                    raise AssertionError(f"exited {self.proc.returncode} before {text}: "
                                         + "\n".join(self.log[-30:]))
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._changed.wait()

    def peak_rss_kib(self) -> int:
        """VmHWM of the running daemon (MemoryMax= is a cgroup limit: checked, not applied)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    async def stop(self, within: float) -> int:
        """SIGTERM, as `systemctl stop` sends it; the exit code (SIGKILL after `within`)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError("did not stop within TimeoutStopSec") from None


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(str(path))
    path.chmod(0o777)  # the unprivileged daemon sends to it
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.setblocking(False)
    return sock


def _receive(sock: socket.socket, unit: SandboxedUnit) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            unit.notifications.append(Notification(pid, data.decode(), time.monotonic()))
            unit._changed.set()  # noqa: SLF001 - the unit's own event


async def _drain(stream: asyncio.StreamReader | None, unit: SandboxedUnit) -> None:
    if stream is None:
        return
    async for line in stream:
        unit.log.append(line.decode("utf-8", "replace").rstrip("\n"))


def check_prerequisites() -> str | None:
    """Why the harness cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "the sandbox needs root (mount namespaces, a user switch)"
    if not SYSTEM_PYTHON.exists() or shutil.which("systemd-analyze") is None:
        return "needs /usr/bin/python3 and systemd-analyze"
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import seccomp"], capture_output=True,
                           check=False)
    if probe.returncode:
        return "needs Debian's python3-seccomp (scripts/bootstrap installs it)"
    return None


@contextlib.asynccontextmanager
async def run_unit(
    service: Service,
    layout: Layout,
    *,
    venv: Path,
    credentials: Mapping[str, str],
    command: Sequence[str] | None = None,
) -> AsyncIterator[SandboxedUnit]:
    """Start the unit's ExecStart (or `command`, for a probe) under its sandbox."""
    policy = policy_from_unit(service, layout, venv=venv, credentials=credentials)
    if command is not None:
        policy["argv"] = list(command)
    policy_path = layout.base / "policy.json"
    policy_path.write_text(json.dumps(policy, indent=1), encoding="utf-8")
    policy_path.chmod(0o600)
    sock = _notify_socket(layout.notify)
    proc = await asyncio.create_subprocess_exec(
        str(SYSTEM_PYTHON), "-I", str(EXEC_HELPER), str(policy_path), env={},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    unit = SandboxedUnit(proc, layout)
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), _receive, sock, unit)
    drain = asyncio.create_task(_drain(proc.stdout, unit))
    try:
        yield unit
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain, 5)
        loop.remove_reader(sock.fileno())
        sock.close()


def cleanup(layout: Layout) -> None:
    """Remove the private tree."""
    shutil.rmtree(layout.base, ignore_errors=True)

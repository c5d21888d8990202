"""Real systemd as PID 1 in fresh namespaces, over a throwaway copy of the system.

There is no running systemd on the test machine, but its systemd binary boots as
PID 1 of a new PID namespace (with mount, network, UTS and IPC namespaces of its
own), as in a container. Before it starts, a shell inside those namespaces lays
the scratch file system out:

- /etc, /opt, /var/lib and /var/log: overlays whose upper layers live in a tmpfs
  of that mount namespace only (useradd, scripts/install, the unit's state
  directory and the journal write there); /run, /tmp and /var/tmp: fresh tmpfs;
- /sys and /proc/sys read-only (as systemd-nspawn does), and units that reach the
  kernel or the host (sysctl, binfmt, modules, the clock, device nodes, pstore)
  masked: what systemd starts changes nothing outside;
- a target of its own that starts the journal only.

Its cgroups are made under a private parent cgroup (the machine's hierarchy is
shared), removed afterwards. `boot()` ends it with SIGKILL, which ends everything in
the PID namespace; the mount namespace, its overlays and tmpfs go with its last
process, so nothing needs unmounting on the host.

The network namespace has only loopback (systemd brings `lo` up): a test puts its
peers there by making their listening sockets inside it (`Booted.network()`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
OVERLAID = ("/etc", "/opt", "/var/lib", "/var/log")
CGROUP_ROOT = Path("/sys/fs/cgroup")
TARGET = "edgetest.target"
# Units that would touch the kernel or the host from inside: never started.
MASKED = (
    "systemd-sysctl.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount", "systemd-modules-load.service",
    "kmod-static-nodes.service", "systemd-tmpfiles-setup-dev.service",
    "systemd-timesyncd.service", "systemd-pstore.service", "systemd-firstboot.service",
    "systemd-repart.service", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount", "systemd-hwdb-update.service",
    "systemd-udev-trigger.service", "systemd-udevd.service", "getty.target",
    "console-getty.service",
)
CLONE_NEWNET = 0x40000000

# The shell that becomes PID 1: the scratch file system, then exec systemd.
# $1: the overlaid directories, space-separated; $2: the masked units.
_INNER = r"""
set -eu
mount --make-rprivate /
mount -o remount,bind,ro /sys
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
# The overlays' upper layers, in a tmpfs that is unmounted from view once they hold it.
mount -t tmpfs -o mode=0700 edgetest-layers /run
for dir in $1; do
  name=$(printf '%s' "$dir" | tr / _)
  mkdir -p "/run/$name/upper" "/run/$name/work"
  mount -t overlay -o "lowerdir=$dir,upperdir=/run/$name/upper,workdir=/run/$name/work" \
    "edgetest$name" "$dir"
done
umount -l /run
mount -t tmpfs -o mode=0755,nosuid,nodev edgetest-run /run
mount -t tmpfs -o mode=1777,nosuid,nodev edgetest-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev edgetest-vartmp /var/tmp
mkdir -p /run/systemd/system
for unit in $2; do ln -s /dev/null "/run/systemd/system/$unit"; done
# Shared, as a container manager leaves it (systemd in a container does not do this
# itself): services' mounts, the credentials among them, are set up in a child mount
# namespace and propagate back. New peer groups: nothing reaches the host.
mount --make-rshared /
# The journal in /run only: nothing written to, or copied up from, /var/log/journal.
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' >/run/systemd/journald.conf.d/edgetest.conf
cat >/run/systemd/system/edgetest.target <<'EOF'
[Unit]
Description=edge-agent test boot: the journal, nothing else
DefaultDependencies=no
Wants=systemd-journald.socket systemd-journald.service
EOF
exec env -i container=edgetest PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  "$3" --system --unit=edgetest.target --show-status=no --log-target=journal
"""


def unavailable() -> str | None:
    """Why systemd cannot be booted here (None: it can)."""
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    if not SYSTEMD.exists():
        return f"no systemd at {SYSTEMD}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs"
    if not _tracking_hierarchies():
        return "no writable cgroup hierarchy for systemd at /sys/fs/cgroup"
    return None


def _tracking_hierarchies() -> list[Path]:
    """The cgroup hierarchies systemd keeps its processes in (v2, hybrid or v1)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        found = [CGROUP_ROOT]
    else:
        found = [p for p in (CGROUP_ROOT / "unified", CGROUP_ROOT / "systemd")
                 if (p / "cgroup.procs").exists()]
    return [p for p in found if os.access(p, os.W_OK)]


def _controller_hierarchies() -> list[Path]:
    """The v1 controller hierarchies where this process sits at the top: systemd uses a
    controller only where its root cgroup exists (pids for TasksMax=, devices for
    DevicePolicy=). Where this process was put below the top by whoever runs it (the
    memory controller, on the machine this was written on), it is left alone, so its
    limits keep holding; MemoryMax= is then not enforced inside."""
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers and not controllers.startswith("name=") and path == "/":
            hierarchy = CGROUP_ROOT / controllers
            if (hierarchy / "cgroup.procs").exists() and os.access(hierarchy, os.W_OK):
                out.append(hierarchy)
    return out


def _all_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: systemd makes its tree in each controller too."""
    out = [CGROUP_ROOT]
    if CGROUP_ROOT.is_dir():
        out += [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    return out


def _remove_cgroups(name: str, within: float) -> None:
    """rmdir the private cgroup tree, children first; retried while processes exit."""
    end = time.monotonic() + within
    for hierarchy in _all_hierarchies():
        top = hierarchy / name
        if not (top / "cgroup.procs").exists():
            continue
        while True:
            try:
                for dirpath, _dirs, _files in os.walk(top, topdown=False):
                    os.rmdir(dirpath)
                break
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > end:
                    raise
                time.sleep(0.05)


def _setns(fd: int, kind: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, kind) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class Booted:
    """A running systemd (`pid`: PID 1 of its namespace, as the host numbers it)."""

    pid: int
    cgroup: str

    def run(self, *argv: str, input: str | None = None, timeout: float = 60.0,
            check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """A command inside every namespace of the booted system, as root."""
        environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                       "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", **(env or {})}
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "--", "env", "-i",
             *(f"{k}={v}" for k, v in environment.items()), *argv],
            input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p ...` as a dict."""
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        """The unit's journal (flushed first, so nothing just logged is missing)."""
        self.run("journalctl", "--sync", check=False)
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", "-u", unit,
                        check=False).stdout

    def path(self, inside: str) -> Path:
        """Where the host sees a path of the booted system's file system."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    @contextlib.contextmanager
    def network(self) -> Iterator[None]:
        """This thread inside the booted network namespace: sockets made meanwhile
        (a test server's listening socket) live there and stay there."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target, CLONE_NEWNET)
            try:
                yield
            finally:
                _setns(own, CLONE_NEWNET)
        finally:
            os.close(own)
            os.close(target)


def _child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _wait_booted(launcher: subprocess.Popen[bytes], within: float) -> Booted | None:
    """systemd's pid once `systemctl is-system-running` says it has finished starting."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if launcher.poll() is not None:
            return None
        child = _child_of(launcher.pid)
        if child is not None and Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
            booted = Booted(child, "")
            state = booted.run("systemctl", "is-system-running", check=False,
                               timeout=max(1.0, end - time.monotonic())).stdout.strip()
            if state in ("running", "degraded"):
                return booted
        time.sleep(0.05)
    return None


@contextlib.contextmanager
def boot(*, within: float = 30.0, overlaid: Sequence[str] = OVERLAID) -> Iterator[Booted]:
    """systemd booted into the namespaces; killed, and its cgroups removed, on exit."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    name = f"edgetest-{os.getpid()}-{time.monotonic_ns()}"
    hierarchies = _tracking_hierarchies()
    # The launcher joins the private cgroups, then becomes unshare (whose child,
    # PID 1 of the new namespace, runs _INNER and becomes systemd).
    join = " && ".join(f'echo $$ > "{h / name / "cgroup.procs"}"' for h in hierarchies)
    command = ["sh", "-c", f'{join} && exec "$@"', "edgetest",
               "unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc",
               "--mount-proc", "sh", "-c", _INNER, "edgetest", " ".join(overlaid),
               " ".join(MASKED), str(SYSTEMD)]
    # systemd's own messages before its journal runs go to a file (a pipe could fill up)
    with tempfile.TemporaryFile() as console, contextlib.ExitStack() as cleanup:
        cleanup.callback(_remove_cgroups, name, 10.0)
        for hierarchy in (*hierarchies, *_controller_hierarchies()):
            (hierarchy / name).mkdir()
        launcher = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=console,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        cleanup.callback(_kill, launcher)
        booted = _wait_booted(launcher, within)
        if booted is None:
            console.seek(0)
            output = console.read().decode(errors="replace")
            raise AssertionError(f"systemd did not boot within {within} s: {output[-3000:]}")
        booted.cgroup = name
        yield booted


def _kill(launcher: subprocess.Popen[bytes]) -> None:
    """SIGKILL to PID 1 of the namespace ends every process in it (SIGTERM would
    make systemd re-execute itself); then the launcher."""
    pid1 = _child_of(launcher.pid)
    if pid1 is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid1, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(timeout=10)

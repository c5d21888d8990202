"""Apply a systemd unit's sandbox to this process, then exec the unit's command.

Run by `tests.support.sandbox` as root with Debian's /usr/bin/python3 (it has
python3-seccomp, the libseccomp bindings systemd's own filters are built with):

    /usr/bin/python3 sandbox_exec.py POLICY.json

POLICY.json is what `sandbox.policy_from_unit` derived from the unit file. This file
is the other half: it does what systemd's executor does between fork and exec, in
the same order (mounts as root, then the user, then the limits, then the seccomp
filters last), so that whatever the daemon then loads runs under all of it.
Standard library and `seccomp` only: it does not run in the project's venv.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import stat
import sys
from typing import Any

import seccomp

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
O_PATH = 0o10000000
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
S_ISUID, S_ISGID = 0o4000, 0o2000
AF_MAX = 46  # Linux 6.x
# Every CLONE_NEW* flag: RestrictNamespaces=yes refuses them all.
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                   0x20000000, 0x40000000, 0x00000080)
PSEUDO_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
API_FILE_SYSTEMS = ("/proc", "/sys", "/dev")  # ProtectSystem=strict leaves these alone

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(libc.mount(enc(source), target.encode(), enc(fstype), flags, enc(data)),
           f"mount {source} on {target}")


def _prctl(option: int, arg: int = 0) -> None:
    _check(libc.prctl(option, arg, 0, 0, 0), f"prctl({option})")


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4].replace("\\040", " ") for line in fh]
    return sorted(set(points), key=len)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _rebind(fd: int, target: str, *, is_dir: bool, read_only: bool = False) -> None:
    """Bind what `fd` (O_PATH, opened before the hiding) names onto `target`."""
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()  # a mount point
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def _hide(path: str, keep: list[str], mode: int) -> None:
    """An empty tmpfs over `path` (ProtectHome, PrivateTmp, PrivateDevices), with the
    paths in `keep` that lie under it bound back where they were."""
    if not os.path.isdir(path):
        return
    kept = [(k, os.open(k, O_PATH | os.O_CLOEXEC)) for k in keep if _under(k, path)
            and k != path and os.path.exists(k)]
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o}")
    for target, fd in kept:
        _rebind(fd, target, is_dir=stat.S_ISDIR(os.stat(f"/proc/self/fd/{fd}").st_mode))
        os.close(fd)


def _private_devices() -> None:
    """PrivateDevices=yes: a fresh /dev holding the pseudo devices and /dev/shm only."""
    keep = [f"/dev/{name}" for name in PSEUDO_DEVICES] + ["/dev/shm"]
    _hide("/dev", keep, 0o755)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")


def _protect_system_strict(writable: list[str]) -> None:
    """ProtectSystem=strict: everything read-only but the API file systems and `writable`."""
    for path in writable:
        _mount(path, path, None, MS_BIND | MS_REC)
    for point in _mountpoints():
        if any(_under(point, api) for api in API_FILE_SYSTEMS):
            continue
        if any(_under(point, w) for w in writable):
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.ENOENT):
                raise


def apply_mounts(m: dict[str, Any]) -> None:
    """A private mount namespace, as systemd sets one up for the Protect*/Private* lines."""
    if not m:
        return
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back to the host
    keep = list(m.get("keep", []))
    for hidden in m.get("hide", []):
        _hide(hidden["path"], keep, int(hidden["mode"], 8))
    if m.get("private_devices"):
        _private_devices()
    if m.get("protect_system") == "strict":
        _protect_system_strict(list(m.get("writable", [])))
    if m.get("protect_kernel_tunables"):
        _mount(None, "/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    if m.get("proc_options"):
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, m["proc_options"])


def drop_privileges(p: dict[str, Any]) -> None:
    """The capability bounding set, then the user, groups first (root is needed for both)."""
    keep = set(p.get("capabilities_kept", []))
    last = int(p["cap_last_cap"])
    for cap in range(last + 1):
        if cap not in keep:
            _prctl(PR_CAPBSET_DROP, cap)
    user = p.get("user")
    if user:
        os.setgroups([int(g) for g in user["groups"]])
        os.setgid(int(user["gid"]))
        os.setuid(int(user["uid"]))  # non-zero: permitted, effective and ambient sets emptied
        if os.geteuid() == 0 or os.getegid() == 0:
            raise SystemExit("sandbox: still root after setuid")


NATIVE_ONLY = False


def _native(default_action: int) -> seccomp.SyscallFilter:
    f = seccomp.SyscallFilter(default_action)
    if NATIVE_ONLY:  # SystemCallArchitectures=native: a call from another ABI kills
        f.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    return f


def _deny_rules(p: dict[str, Any]) -> seccomp.SyscallFilter:
    """The argument-level filters systemd adds for single directives, in one filter."""
    f = _native(seccomp.ALLOW)
    eperm = seccomp.ERRNO(errno.EPERM)
    if p.get("memory_deny_write_execute"):  # systemd <= 253's way, stricter than PR_SET_MDWE
        f.add_rule(eperm, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC,
                                              PROT_WRITE | PROT_EXEC))
        for call in ("mprotect", "pkey_mprotect"):
            f.add_rule(eperm, call, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        f.add_rule(eperm, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
    if p.get("restrict_namespaces"):
        f.add_rule(eperm, "unshare")
        f.add_rule(eperm, "setns")
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # as systemd: glibc falls back
        for flag in NAMESPACE_FLAGS:
            f.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    if p.get("lock_personality"):
        f.add_rule(eperm, "personality", seccomp.Arg(0, seccomp.NE, 0))
    if p.get("restrict_suid_sgid"):
        for call, arg in (("chmod", 1), ("fchmod", 1), ("fchmodat", 2)):
            for bit in (S_ISUID, S_ISGID):
                f.add_rule(eperm, call, seccomp.Arg(arg, seccomp.MASKED_EQ, bit, bit))
    families = p.get("address_families")
    if families is not None:  # RestrictAddressFamilies= (an allow-list)
        refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for family in range(AF_MAX):
            if family not in families:
                f.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, family))
        f.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.GE, AF_MAX))
    for call in p.get("denied_syscalls", []):  # Protect*= lines that deny whole calls
        _add(f, eperm, call)
    return f


def _add(f: seccomp.SyscallFilter, action: int, name: str) -> bool:
    try:
        seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    except (ValueError, RuntimeError):
        return False  # a call this architecture (or this libseccomp) does not know
    try:
        f.add_rule(action, name)
    except (ValueError, RuntimeError, OSError):
        return False  # e.g. a multiplexed call on this architecture
    return True


def load_filters(p: dict[str, Any]) -> None:
    """NoNewPrivileges, PR_SET_MDWE, then the seccomp filters; the allow-list last, since
    it may not allow the calls that load the others."""
    global NATIVE_ONLY  # read by _native; set once, here
    NATIVE_ONLY = bool(p.get("native_only"))
    if p.get("no_new_privileges"):
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if p.get("memory_deny_write_execute"):
        _prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)  # systemd >= 254's way
    _deny_rules(p).load()
    allow = p.get("allowed_syscalls")
    if allow is not None:
        f = _native(seccomp.ERRNO(int(p.get("syscall_errno", errno.EPERM))))
        for name in allow:
            _add(f, seccomp.ALLOW, name)
        f.load()


def main() -> None:
    """Read the policy, apply it, exec the command."""
    with open(sys.argv[1], encoding="utf-8") as fh:
        p = json.load(fh)
    p["cap_last_cap"] = open("/proc/sys/kernel/cap_last_cap").read().strip()  # noqa: SIM115
    apply_mounts(p.get("mounts", {}))
    drop_privileges(p)
    os.umask(int(p.get("umask", "0022"), 8))
    if p.get("limit_core") is not None:
        core = int(p["limit_core"])
        resource.setrlimit(resource.RLIMIT_CORE, (core, core))
    if p.get("tasks_max") is not None:  # TasksMax= (a cgroup limit) as the user's RLIMIT_NPROC
        resource.setrlimit(resource.RLIMIT_NPROC, (int(p["tasks_max"]),) * 2)
    os.chdir(p.get("cwd", "/"))
    env = dict(p["env"])
    env["WATCHDOG_PID"] = str(os.getpid())  # exec keeps the pid: the daemon is the main pid
    env["SYSTEMD_EXEC_PID"] = str(os.getpid())
    load_filters(p)
    os.execve(p["argv"][0], p["argv"], env)


if __name__ == "__main__":
    main()

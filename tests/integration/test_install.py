"""scripts/install into a scratch root file system (`--root DIR`): every file, owner
and mode; the installed daemon runs and the template is a valid configuration; the
installed unit verifies there; a second run changes nothing; an old root-only
configuration is kept and made readable; `--uninstall` leaves only /etc/edge-agent.

The install is real (useradd/groupadd --prefix, a venv from Debian's python3 with
edge-agent pip-installed, not editable, `systemctl --root` enable); only the Debian
packages are left out. It runs from a snapshot of this checkout, so others' edits
made meanwhile cannot change its input between runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO, snapshot_source

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

KEY = "AIzaSy-install-test-key-0123456789"
SEED = ("passwd", "group", "shadow", "gshadow", "login.defs")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or not Path("/usr/bin/python3").exists(),
    reason="scripts/install needs root, useradd and /usr/bin/python3",
)


@dataclass
class Installed:
    root: Path
    source: Path
    output: str
    seconds: float

    def run(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        """scripts/install again, the key (if any) on standard input."""
        return _install(self.source, self.root, *args, key=key)


def _install(source: Path, root: Path, *args: str, key: str | None = None,
             trace: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(source / "scripts" / "install"), "--root", str(root), *args]
    if trace is not None:  # every program it starts, with argv and environment
        command = ["strace", "-f", "--seccomp-bpf", "-e", "trace=execve", "-v", "-s", "4096",
                   "-o", str(trace), *command]
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY",)}
    result = subprocess.run(command, input=key or "", capture_output=True, text=True,
                            timeout=540, check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _seed_root(root: Path) -> None:
    """A root file system's users and groups, and systemd's own units (for verify)."""
    for base_dir in ("etc", "opt", "var/lib"):  # as a base system has them
        (root / base_dir).mkdir(parents=True)
    for name in SEED:
        shutil.copy2(Path("/etc") / name, root / "etc" / name)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("scripts/install needs root and useradd")
    base = tmp_path_factory.mktemp("install")
    source, root = base / "source", base / "root"
    snapshot_source(source)
    _seed_root(root)
    t0 = time.monotonic()
    trace = base / "execve.trace" if shutil.which("strace") else None
    result = _install(source, root, key=KEY + "\n", trace=trace)
    seconds = time.monotonic() - t0
    if trace is not None:
        # never in the argv or the environment of anything it ran
        assert KEY not in trace.read_text(errors="replace")
    return Installed(root, source, result.stdout + result.stderr, seconds)


def _ids(root: Path, name: str, file: str) -> int:
    for line in (root / "etc" / file).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"{name} not in {file}")


def _mode_owner(path: Path) -> tuple[str, int, int]:
    st = path.lstat()
    return oct(st.st_mode & 0o7777), st.st_uid, st.st_gid


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything under root: mode, owner, mtime and content hash (links: target)."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what: object = os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                                            what)
    return out


@needs_root
def test_install_lays_out_users_files_owners_and_modes(installed: Installed) -> None:
    root = installed.root
    passwd = next(line for line in (root / "etc/passwd").read_text().splitlines()
                  if line.startswith("edge-agent:")).split(":")
    assert int(passwd[2]) < 1000  # a system user
    assert passwd[5:] == ["/var/lib/edge-agent", "/usr/sbin/nologin"]
    gid = _ids(root, "edge-agent", "group")
    assert int(passwd[3]) == gid
    for group in ("bluetooth", "audio"):
        members = next(line for line in (root / "etc/group").read_text().splitlines()
                       if line.startswith(group + ":")).split(":")[3].split(",")
        assert "edge-agent" in members
    etc = root / "etc/edge-agent"
    # the bug this fixes: the service's group can read its configuration
    assert _mode_owner(etc) == ("0o750", 0, gid)
    assert _mode_owner(etc / "edge-agent.toml") == ("0o640", 0, gid)
    assert (etc / "edge-agent.toml").read_text() == (REPO / "systemd/edge-agent.toml").read_text()
    assert _mode_owner(etc / "gemini_api_key") == ("0o600", 0, 0)
    assert (etc / "gemini_api_key").read_text() == KEY
    assert KEY not in installed.output
    assert sorted(p.name for p in etc.iterdir()) == ["edge-agent.toml", "gemini_api_key"]
    units = root / "etc/systemd/system"
    assert (units / "edge-agent.service").read_bytes() == (REPO / "systemd/edge-agent.service"
                                                           ).read_bytes()
    assert _mode_owner(units / "edge-agent.service") == ("0o644", 0, 0)
    assert not (units / "edge-agent.service.d").exists()  # glasses: no kiosk drop-in
    wants = units / "multi-user.target.wants/edge-agent.service"
    assert os.readlink(wants) == "/etc/systemd/system/edge-agent.service"
    opt = root / "opt/edge-agent"
    assert _mode_owner(opt) == ("0o755", 0, 0)
    assert _mode_owner(opt / "README.md") == ("0o644", 0, 0)
    assert _mode_owner(opt / "scripts/install") == ("0o755", 0, 0)
    assert not (opt / ".git").exists() and not (opt / "build").exists()
    assert not list(opt.glob("*.egg-info"))
    # the state directory is systemd's to create (StateDirectory=), with the user's owner
    assert not (root / "var/lib/edge-agent").exists()


@needs_root
def test_installed_daemon_runs_and_the_template_is_valid(installed: Installed) -> None:
    venv = installed.root / "opt/edge-agent/.venv"
    python = venv / "bin/python"
    assert Path(os.path.realpath(python)).parent == Path("/usr/bin")  # Debian's python3
    help_text = subprocess.run([str(venv / "bin/edge-agent"), "--help"], capture_output=True,
                               text=True, timeout=60, check=True).stdout
    assert "doctor" in help_text
    config = installed.root / "etc/edge-agent/edge-agent.toml"
    check = (
        "import sys, daemon, pathlib\n"
        "from daemon.config import load_settings\n"
        "from daemon.home.declared import check_declared_devices\n"
        "s = load_settings(pathlib.Path(sys.argv[1]), required=True, environ={})\n"
        "check_declared_devices(s.mqtt.devices)\n"
        "print(daemon.__file__, s.peripheral.kind, s.peripheral.ble.profile)\n"
    )
    out = subprocess.run([str(python), "-I", "-c", check, str(config)], capture_output=True,
                         text=True, timeout=60, check=True, cwd="/").stdout.split()
    # installed, not editable: the code is the venv's own copy
    assert out[0].startswith(str(venv / "lib"))
    assert out[1:] == ["ble", "omi"]


@needs_root
def test_installed_unit_verifies_and_scores_in_its_root(installed: Installed) -> None:
    root = str(installed.root)
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                             "edge-agent.service"], capture_output=True, text=True, timeout=60,
                            check=False)
    # ExecStart= is looked up inside the root: the installed venv's edge-agent
    assert verify.returncode == 0, verify.stdout + verify.stderr
    score = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=25",
                            f"--root={root}", "--no-pager", "edge-agent.service"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert score.returncode == 0, score.stdout


@needs_root
def test_a_second_run_changes_nothing(installed: Installed) -> None:
    before = _tree(installed.root)
    again = installed.run(key=KEY)  # the same key again
    assert "nothing to change" in again.stderr, again.stderr
    assert _tree(installed.root) == before
    quiet = installed.run()  # no key at all: the installed one stays
    assert "nothing to change" in quiet.stderr
    assert _tree(installed.root) == before


@needs_root
def test_an_existing_root_only_config_is_kept_and_made_readable(installed: Installed) -> None:
    config = installed.root / "etc/edge-agent/edge-agent.toml"
    original = config.read_text()
    try:
        # as the README's old steps left it: the service could not read it and exited 2
        config.write_text('[mqtt]\nhost = "broker.lan"\n')
        os.chown(config, 0, 0)
        config.chmod(0o600)
        installed.run()
        assert config.read_text() == '[mqtt]\nhost = "broker.lan"\n'
        gid = _ids(installed.root, "edge-agent", "group")
        assert _mode_owner(config) == ("0o640", 0, gid)
    finally:
        config.write_text(original)


@needs_root
def test_kiosk_adds_its_dropin_and_optional_credentials_theirs(installed: Installed) -> None:
    units = installed.root / "etc/systemd/system"
    password = installed.root / "etc/edge-agent/mqtt_password"
    password.write_text("broker-secret")
    password.chmod(0o600)
    try:
        installed.run("--kiosk")
        kiosk = units / "edge-agent.service.d/kiosk.conf"
        assert kiosk.read_bytes() == (REPO / "systemd/kiosk.conf").read_bytes()
        creds = (units / "edge-agent.service.d/credentials.conf").read_text()
        assert "LoadCredential=mqtt_password:/etc/edge-agent/mqtt_password" in creds
        assert "confirm_pin" not in creds
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no",
                                 f"--root={installed.root}", "edge-agent.service"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert verify.returncode == 0, verify.stderr
    finally:
        password.unlink()
        shutil.rmtree(units / "edge-agent.service.d", ignore_errors=True)
    installed.run()
    assert not (units / "edge-agent.service.d").exists()


@needs_root
def test_uninstall_leaves_only_the_configuration(installed: Installed) -> None:
    """Last in this module: it removes what the others look at."""
    root = installed.root
    (root / "var/lib/edge-agent").mkdir(parents=True)  # as systemd would have made it
    (root / "var/lib/edge-agent/pin.json").write_text("{}")
    result = installed.run("--uninstall")
    assert KEY not in result.stdout + result.stderr
    assert not (root / "opt/edge-agent").exists()
    assert not (root / "var/lib/edge-agent").exists()
    assert not (root / "etc/systemd/system/edge-agent.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants").exists()
    for name in ("passwd", "group", "shadow", "gshadow"):
        assert "edge-agent" not in (root / "etc" / name).read_text(), name
    # the configuration and key stay, owned by root alone (the group id is gone)
    etc = root / "etc/edge-agent"
    assert sorted(p.name for p in etc.iterdir()) == ["edge-agent.toml", "gemini_api_key"]
    assert {p.stat().st_gid for p in (etc, *etc.iterdir())} == {0}
    assert (etc / "gemini_api_key").read_text() == KEY
    left = {str(p.relative_to(root)) for p in root.rglob("*")} - {
        str(p.relative_to(root)) for p in (root / "usr").rglob("*")} - {"usr"}
    assert left == {"etc", "etc/edge-agent", "etc/edge-agent/edge-agent.toml",
                    "etc/edge-agent/gemini_api_key", "etc/systemd", "etc/systemd/system",
                    "opt", "var", "var/lib", *(f"etc/{name}" for name in SEED),
                    *(f"etc/{name}-" for name in ("passwd", "group", "shadow", "gshadow"))}

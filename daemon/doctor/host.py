"""This machine's side: the key's presence, libopus, mosquitto, the state directory,
systemd's credentials, the SDK's socket, the pin, and what weakens privacy or safety.

Everything here is local and quick; nothing prints a secret (a credential is read
to prove it can be, and dropped).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from daemon.config import ConfigError, MqttSettings, Settings
from daemon.doctor.report import Check
from daemon.live.failures import brief
from daemon.ops.state import ASIDE_SUFFIX, StateStore, loose_mode, state_dir_from
from daemon.options import api_key
from daemon.peripherals.ble.profile import DeviceProfile, ProfileError, load_profile

KEY = "GEMINI_API_KEY"
STATE = "state directory"
CREDENTIALS = "credentials"
KNOWN_CREDENTIALS = ("gemini_api_key", "mqtt_password", "confirm_pin")
PROBE_PREFIX = ".doctor-probe."
OPUS_ADVICE = "install libopus: apt-get install libopus0"


def python_check() -> Check:
    """The interpreter (the package itself requires 3.11 or later to install)."""
    return Check.ok("python", f"{sys.version.split()[0]} ({sys.executable})")


def key_check(environ: Mapping[str, str]) -> tuple[Check, SecretStr | None]:
    """Whether the key is there (never what it is), and the key for the Live check."""
    try:
        key = api_key()
    except ConfigError as exc:  # an unreadable credential file
        return Check.fail(KEY, str(exc), "make the credential readable by the service "
                                         "(LoadCredential= in the unit)"), None
    if key is None:
        return Check.fail(KEY, "not set (nor $CREDENTIALS_DIRECTORY/gemini_api_key)",
                          "export GEMINI_API_KEY=..., or under systemd install it as the "
                          "credential gemini_api_key"), None
    source = KEY if environ.get(KEY, "").strip() else "the credential gemini_api_key"
    return Check.ok(KEY, f"set (from {source}; never shown)"), key


def opus_profile(settings: Settings) -> str | None:
    """The configured glasses profile when it needs Opus, else None."""
    if settings.peripheral.kind != "ble":
        return None
    try:
        profile = load_profile(settings.peripheral.ble.profile)
    except ProfileError:
        return None
    return profile.name if _uses_opus(profile) else None


def _uses_opus(profile: DeviceProfile) -> bool:
    return profile.downlink.kind == "opus" or any(
        spec.kind == "opus" for _, spec in profile.audio.codecs
    )


def libopus_check(needed_by: str | None) -> Check:
    """libopus loads and makes an encoder; a FAIL only when the configured glasses need it."""
    try:
        import opuslib.api.info

        from daemon.media.opus import OpusEncoder

        OpusEncoder(16_000, 20)
        raw = opuslib.api.info.get_version_string()
        version = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception as exc:  # a missing library is an OSError, a broken one anything
        if needed_by:
            return Check.fail("libopus", f"does not load ({brief(exc)}); profile {needed_by} "
                                         "sends Opus", OPUS_ADVICE)
        return Check.warn("libopus", f"does not load ({brief(exc)}): Opus glasses profiles "
                                     "will not work", OPUS_ADVICE)
    return Check.ok("libopus", f"{version} loaded")


def mosquitto_check() -> Check:
    """mosquitto is only for `edge-agent demo` (a private broker): a warning at most."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if found:
        return Check.ok("mosquitto", f"{found} (for edge-agent demo)")
    return Check.warn("mosquitto", "not found: edge-agent demo needs it (the daemon does not)",
                      "apt-get install mosquitto, to run the demo")


def state_dir_check(configured: Path | None, environ: Mapping[str, str]) -> Check:
    """The state directory takes an atomic write; what the doctor creates it removes."""
    directory = state_dir_from(configured, environ)
    if directory is None:
        return Check.warn(STATE, "none ($STATE_DIRECTORY or ops.state_dir): mute, camera-off, "
                                 "the pinned glasses and the conversation are forgotten at "
                                 "every restart",
                          "set ops.state_dir, or StateDirectory=edge-agent in the unit")
    source = "$STATE_DIRECTORY" if environ.get("STATE_DIRECTORY") else "ops.state_dir"
    created: list[Path] = []
    try:
        for path in reversed([directory, *directory.parents]):
            if not path.exists():
                path.mkdir(mode=0o700)
                created.append(path)
        _atomic_probe(directory)
    except OSError as exc:
        return Check.fail(STATE, f"{directory} ({source}) is not writable: "
                                 f"{exc.strerror or brief(exc)}",
                          "let the service user write there (StateDirectory=edge-agent in the "
                          "unit, or chown the directory)")
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
    if created:
        return Check.ok(STATE, f"{directory} ({source}) takes an atomic write; it does not "
                               "exist yet, the daemon creates it")
    return _state_dir_contents(directory, source)


def _state_dir_contents(directory: Path, source: str) -> Check:
    """Warn about a directory others may write (they could plant records: an accepted
    lock, pinned glasses) and about damaged records kept aside (the daemon fails closed
    on them: every sensitive device held, every glasses refused, every command asks)."""
    who = loose_mode(directory)
    if who:
        return Check.warn(STATE, f"{directory} ({source}) may be written by {who}: they "
                                 "could plant records the daemon trusts (it uses it anyway)",
                          f"chmod 700 {directory}")
    try:
        aside = sorted(p.name for p in directory.glob(f"*{ASIDE_SUFFIX}"))
    except OSError:
        aside = []
    if aside:
        return Check.warn(STATE, f"{directory} ({source}): damaged records kept aside: "
                                 f"{', '.join(aside)}; the daemon fails closed on them",
                          "see README \"Safety\" (damaged state records); delete a kept-aside "
                          "copy once you have checked what it guarded")
    return Check.ok(STATE, f"{directory} ({source}) takes an atomic write")


def _atomic_probe(directory: Path) -> None:
    """What `StateStore.save` does: a temporary file, fsync, rename; then removed."""
    fd, tmp = tempfile.mkstemp(prefix=PROBE_PREFIX, suffix=".tmp", dir=directory)
    final = directory / f"{PROBE_PREFIX}json"
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("{}")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, final):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def credentials_check(environ: Mapping[str, str]) -> Check | None:
    """Under systemd, each credential file present can be read (its content is dropped)."""
    raw = environ.get("CREDENTIALS_DIRECTORY", "").strip()
    if not raw:
        return None
    directory = Path(raw)
    advice = ("check LoadCredential=/SetCredential= in the unit; systemd makes the files "
              "readable by the service, do not copy them by hand")
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as exc:
        return Check.fail(CREDENTIALS, f"$CREDENTIALS_DIRECTORY {directory}: cannot list it "
                                       f"({exc.strerror or brief(exc)})", advice)
    unreadable, empty = [], []
    for name in names:
        try:
            blank = not (directory / name).read_bytes().strip()
        except OSError as exc:
            unreadable.append(f"{name} ({exc.strerror or type(exc).__name__})")
            continue
        if blank:
            empty.append(name)
    if unreadable:
        return Check.fail(CREDENTIALS, f"cannot read {', '.join(unreadable)} in {directory}",
                          advice)
    unknown = [n for n in names if n not in KNOWN_CREDENTIALS]
    if empty or unknown:
        said = [f"empty: {', '.join(empty)}"] if empty else []
        said += [f"not used by edge-agent: {', '.join(unknown)}"] if unknown else []
        return Check.warn(CREDENTIALS, f"{'; '.join(said)} (in {directory})",
                          f"edge-agent reads {', '.join(KNOWN_CREDENTIALS)}")
    return Check.ok(CREDENTIALS, f"readable: {', '.join(names) or 'none present'} "
                                 f"(in {directory})")


def socket_door_check() -> Check:
    """The SDK's private socket (ping-confirmed delivery): a warning, the link works on."""
    from daemon.live import socket_door

    ok, detail = socket_door.check()
    return Check.ok("Live SDK socket", detail) if ok else Check.warn(
        "Live SDK socket", detail, "install the google-genai version pinned in pyproject.toml")


def pin_check(settings: Settings, environ: Mapping[str, str]) -> Check:
    """What is pinned (a warning while nothing is: the first look-alike would be taken)."""
    from daemon.peripherals.ble.pinning import describe

    ble = settings.peripheral.ble
    store = StateStore(state_dir_from(settings.ops.state_dir, environ))
    pinned, detail = describe(store, Path(ble.profile).stem, ble.address)
    return Check.ok("pinned glasses", detail) if pinned else Check.warn("pinned glasses", detail)


def safety_warnings(settings: Settings, takes_anonymous: bool | None) -> list[Check]:
    """What weakens the privacy and safety promises in this configuration."""
    out: list[Check] = []
    mqtt, tools = settings.mqtt, settings.tools
    if mqtt.host and mqtt.password is not None and not mqtt.tls:
        out.append(Check.warn("mqtt.tls", "off while a password is set: it crosses the network "
                                          "in clear", "set mqtt.tls = true (port 8883)"))
    taps = settings.peripheral.kind == "ble" and _has_tap(settings)
    strict = [c for c in ("lock", "alarm", "gate")
              if not ((taps and "tap" in getattr(tools.confirm_with, c))
                      or (tools.confirm_pin and "pin" in getattr(tools.confirm_with, c))
                      or "yes" in getattr(tools.confirm_with, c))]
    if strict:
        out.append(Check.warn("tools.confirm_pin", f"not set and no tap here: {', '.join(strict)} "
                              "actions can never be confirmed (set the credential confirm_pin)"))
    if mqtt.host and mqtt.remote_unmute:
        out.append(Check.warn("mqtt.remote_unmute", _remote_unmute(mqtt, takes_anonymous)))
    return out


def _remote_unmute(mqtt: MqttSettings, takes_anonymous: bool | None) -> str:
    topic = f"edge-agent/{mqtt.client_id}/+/set"
    detail = (f"on: whoever may publish to {topic} can turn the microphone and camera "
              "back on; protect it with a broker ACL")
    if takes_anonymous:
        detail += " (this broker accepts clients without a login: anyone can)"
    return detail


def _has_tap(settings: Settings) -> bool:
    try:
        tap = load_profile(settings.peripheral.ble.profile).tap
    except ProfileError:
        return False
    return tap is not None and tap.source != "none"

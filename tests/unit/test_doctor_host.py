"""The doctor's local checks: the clock's bounds, the state directory's probe (which
leaves nothing behind), systemd's credentials, the key's presence, libopus's rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.doctor.clock import MAX_SKEW, clock_check, installed_floor
from daemon.doctor.host import (
    credentials_check,
    key_check,
    libopus_check,
    opus_profile,
    state_dir_check,
)

NOW = 1_796_415_746.0  # 2026-12-04 20:22:26 UTC
FLOOR = (NOW - 86_400 * 40, "the CA bundle's build date (certifi 2026.10.19)")


def test_a_clock_before_the_installation_is_wrong() -> None:
    check = clock_check(0.0, FLOOR, None)
    assert check.status == "fail"
    assert check.detail.startswith("1970-01-01 00:00:00 UTC is before the CA bundle's build date")
    assert "timedatectl set-ntp true" in check.advice


def test_the_server_clock_decides_within_minutes() -> None:
    server = "https://live.example"
    ok = clock_check(NOW, FLOOR, NOW - 3, server)
    assert ok.status == "ok" and ok.detail.endswith("within 3 s of https://live.example's clock")
    ahead = clock_check(NOW, FLOOR, NOW - MAX_SKEW - 60, server)
    assert ahead.status == "fail" and "360 s ahead of https://live.example's clock" in ahead.detail
    behind = clock_check(NOW, FLOOR, NOW + 3600, server)
    assert behind.status == "fail" and "3600 s behind" in behind.detail


def test_without_a_server_the_floor_is_all() -> None:
    check = clock_check(NOW, FLOOR, None)
    assert check.status == "ok"
    assert check.detail == ("2026-12-04 20:22:26 UTC: not before the CA bundle's build date "
                            "(certifi 2026.10.19); no server clock to compare with")
    floor = installed_floor()
    assert floor is not None and floor[0] > 1_700_000_000  # certifi's version is a date


def test_the_state_directory_probe_leaves_nothing(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "state"
    check = state_dir_check(deep, {})
    assert check.status == "ok", check.detail
    assert check.detail == (f"{deep} (ops.state_dir) takes an atomic write; it does not "
                            "exist yet, the daemon creates it")
    assert list(tmp_path.iterdir()) == []  # what it created, it removed
    deep.mkdir(parents=True)
    (deep / "pin.json").write_text("{}")
    assert state_dir_check(None, {"STATE_DIRECTORY": str(deep)}).detail == (
        f"{deep} ($STATE_DIRECTORY) takes an atomic write")
    assert sorted(p.name for p in deep.iterdir()) == ["pin.json"]


def test_an_unwritable_or_missing_state_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    check = state_dir_check(tmp_path / "file" / "state", {})
    assert check.status == "fail"
    assert check.detail == f"{tmp_path / 'file' / 'state'} (ops.state_dir) is not writable: Not a directory"
    assert "StateDirectory=" in check.advice
    none = state_dir_check(None, {})
    assert none.status == "warn" and none.detail.startswith("none ($STATE_DIRECTORY or ")


def test_credentials_readable_unreadable_unknown(tmp_path: Path) -> None:
    assert credentials_check({}) is None  # not under systemd: nothing to say
    (tmp_path / "gemini_api_key").write_text("AIzaSy-not-printed\n")
    (tmp_path / "mqtt_password").write_text("hunter2-not-printed")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    ok = credentials_check(env)
    assert ok is not None and ok.status == "ok"
    assert ok.detail == f"readable: gemini_api_key, mqtt_password (in {tmp_path})"
    (tmp_path / "gemini-api-key").write_text("typo")
    (tmp_path / "confirm_pin").write_text("\n")
    warn = credentials_check(env)
    assert warn is not None and warn.status == "warn"
    assert warn.detail == (f"empty: confirm_pin; not used by edge-agent: gemini-api-key "
                           f"(in {tmp_path})")
    (tmp_path / "mqtt_password").unlink()
    (tmp_path / "mqtt_password").mkdir()  # unreadable even for root
    fail = credentials_check(env)
    assert fail is not None and fail.status == "fail"
    assert fail.detail == f"cannot read mqtt_password (Is a directory) in {tmp_path}"
    gone = credentials_check({"CREDENTIALS_DIRECTORY": str(tmp_path / "nope")})
    assert gone is not None and gone.status == "fail" and "cannot list it" in gone.detail


def test_the_key_is_present_or_not_never_shown(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    check, key = key_check(os.environ)
    assert check.status == "fail" and key is None
    assert check.detail == "not set (nor $CREDENTIALS_DIRECTORY/gemini_api_key)"
    (tmp_path / "gemini_api_key").write_text("AIzaSy-credential-key-42\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    check, key = key_check(os.environ)
    assert check.detail == "set (from the credential gemini_api_key; never shown)"
    assert key is not None and key.get_secret_value() == "AIzaSy-credential-key-42"
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSy-environment-key-42")
    check, _ = key_check(os.environ)
    assert check.detail == "set (from GEMINI_API_KEY; never shown)"
    assert "AIzaSy" not in check.detail


def test_libopus_matters_only_for_opus_glasses() -> None:
    assert libopus_check(None).status == "ok"  # loads here
    omi = Settings.model_validate({"peripheral": {"kind": "ble", "ble": {"profile": "omi"}}})
    assert opus_profile(omi) == "omi"
    assert opus_profile(Settings()) is None  # the file peripheral needs none


def test_a_libopus_that_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for a machine without libopus0: the import fails as it would there."""
    import sys

    monkeypatch.setitem(sys.modules, "daemon.media.opus", None)
    needed = libopus_check("omi")
    assert needed.status == "fail"
    assert needed.detail.startswith("does not load (ModuleNotFoundError")
    assert needed.detail.endswith("profile omi sends Opus")
    assert needed.advice == "install libopus: apt-get install libopus0"
    spare = libopus_check(None)
    assert spare.status == "warn" and spare.detail.endswith("Opus glasses profiles will not work")

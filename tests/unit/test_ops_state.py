"""The state store tells an absent record from a damaged one: a damaged record is kept
aside as `<name>.corrupt` (never overwritten by the next save) and stays damaged
across a restart until a good record replaces it; and a directory others may write is
used but warned about once. The callers that fail closed on it: test_state_damage.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from daemon.ops.state import MAX_RECORD_BYTES, StateStore
from tests.support.logs import warnings_about

GOOD = {"devices": {"front_door": "2:abc"}}


def test_an_absent_record_is_not_damaged(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load_status("rec") == (None, None)
    assert store.load("rec") is None and store.errors == 0 and store.status()["damaged_records"] == 0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (json.dumps(GOOD).encode()[:10], "not valid JSON"),  # truncated
        (b"", "not valid JSON"),  # a zero-length file after a power cut
        (b"\x00" * 512, "not valid JSON"),  # zeroed by the SD card
        (b"[1, 2]", "not a JSON object"),
        (b" " * (MAX_RECORD_BYTES + 1), f"larger than {MAX_RECORD_BYTES} bytes"),
    ],
    ids=["truncated", "empty", "zeroed", "not-object", "huge"],
)
def test_a_damaged_record_is_told_apart_and_kept_aside(
    tmp_path: Path, content: bytes, why: str
) -> None:
    (tmp_path / "rec.json").write_bytes(content)
    store = StateStore(tmp_path)
    record, damaged = store.load_status("rec")
    assert record is None and damaged is not None and damaged.fresh and damaged.why == why
    kept = tmp_path / "rec.corrupt"
    assert damaged.kept == kept and kept.read_bytes() == content  # the evidence, intact
    assert not (tmp_path / "rec.json").exists()
    assert store.errors == 1 and store.status()["damaged_records"] == 1
    assert f"kept as {kept}" in damaged.describe() and why in damaged.describe()


def test_a_record_that_cannot_be_read_is_damaged(tmp_path: Path) -> None:
    (tmp_path / "rec.json").mkdir()  # EISDIR: exists, cannot be read (as EACCES or EIO)
    _, damaged = StateStore(tmp_path).load_status("rec")
    assert damaged is not None and damaged.why.startswith("cannot be read")
    assert (tmp_path / "rec.corrupt").is_dir()


def test_damage_outlives_a_restart_until_a_good_record_replaces_it(tmp_path: Path) -> None:
    (tmp_path / "rec.json").write_bytes(b'{"devi')
    StateStore(tmp_path).load_status("rec")
    restarted = StateStore(tmp_path)
    record, damaged = restarted.load_status("rec")  # absent now, but its copy is kept
    assert record is None and damaged is not None and not damaged.fresh
    assert "found damaged earlier" in damaged.describe() and restarted.errors == 0
    assert restarted.save("rec", GOOD)
    assert StateStore(tmp_path).load_status("rec") == (GOOD, None)
    assert restarted.kept_aside("rec") == tmp_path / "rec.corrupt"  # still there to look at
    assert restarted.delete("rec")  # the record and its damaged copy
    assert sorted(tmp_path.iterdir()) == [] and not restarted.delete("rec")


def test_load_logs_fresh_damage_once_and_reads_it_as_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "rec.json").write_bytes(b"\x00\x00")
    store = StateStore(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert store.load("rec") is None
        assert store.load("rec") is None
    assert len(warnings_about(caplog, "state record rec is damaged")) == 1


def test_a_directory_others_may_write_is_used_and_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with caplog.at_level(logging.WARNING):
        store = StateStore(shared)
        assert store.save("rec", GOOD) and store.load("rec") == GOOD
        assert StateStore(shared).load("rec") == GOOD
    lines = warnings_about(caplog, "may be written by group and others")
    assert len(lines) == 1 and str(shared) in lines[0]
    assert store.status()["loose_directory"] == 1
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    mine = StateStore(private)
    mine.save("rec", GOOD)
    assert mine.status()["loose_directory"] == 0


def test_in_memory_nothing_is_damaged() -> None:
    store = StateStore(None)
    assert store.load_status("rec") == (None, None) and store.kept_aside("rec") is None
    store.save("rec", GOOD)
    assert store.load_status("rec") == (GOOD, None)

"""`doctor` for the file peripheral finds what `run` would refuse (exit 2) in its input
and output, without writing to the output: before, a WAV that was not one, a directory,
or an output that cannot be created passed `doctor` (review of 2026-12-06)."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from daemon.peripherals.file import file_problems

pytestmark = pytest.mark.timeout(10)


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16_000)
        wf.writeframes(bytes(3200))
    return path


def test_what_run_refuses_is_found_and_the_output_is_left_alone(tmp_path: Path) -> None:
    good = _wav(tmp_path / "in.wav")
    (tmp_path / "not.wav").write_text("not a wav")
    kept = tmp_path / "out.wav"
    kept.write_bytes(b"an earlier run's answer")
    assert file_problems(good, kept) == []
    assert kept.read_bytes() == b"an earlier run's answer"
    assert file_problems(good, tmp_path / "new" / "dir" / "out.wav") == []
    assert not (tmp_path / "new").exists()
    problems = file_problems(tmp_path / "not.wav", tmp_path)
    assert problems[0].startswith("peripheral.file.input: ") and "not a readable WAV" in problems[0]
    assert problems[1].startswith("peripheral.file.output: cannot create")
    assert file_problems(None, Path("/proc/edge-agent-test.wav"))[0].startswith(
        "peripheral.file.output: cannot create /proc/edge-agent-test.wav")

"""The doctor's verdict and its two renderings: the exit policy, one advice line only when
not ok, JSON that says the same as the text, and no secret in either."""

from __future__ import annotations

import json

from daemon.doctor.report import Check, exit_code, overall, render_json, render_text
from daemon.ops import logsetup
from tests.support.leaks import assert_no_piece, new_key

OK = Check.ok("configuration", "valid")
WARN = Check.warn("state directory", "none", "set ops.state_dir")
FAIL = Check.fail("GEMINI_API_KEY", "not set", "export GEMINI_API_KEY=...")


def test_exit_policy() -> None:
    assert exit_code([OK], config_loaded=True) == 0
    assert exit_code([OK, WARN], config_loaded=True) == 0  # warnings never change it
    assert exit_code([OK, WARN, FAIL], config_loaded=True) == 1
    assert exit_code([FAIL], config_loaded=False) == 2  # a configuration that does not load
    assert exit_code([], config_loaded=False) == 2


def test_overall_status() -> None:
    assert overall([OK], 0) == "ok"
    assert overall([OK, WARN], 0) == "warn"
    assert overall([OK, FAIL], 1) == "fail"
    assert overall([OK], 2) == "fail"


def test_text_is_one_line_per_check_and_advice_only_when_not_ok() -> None:
    advised_ok = Check("python", "ok", "3.11", advice="never shown")
    text = render_text([advised_ok, WARN, FAIL])
    assert text.splitlines() == [
        "ok   python: 3.11",
        "WARN  state directory: none",
        "      -> set ops.state_dir",
        "FAIL  GEMINI_API_KEY: not set",
        "      -> export GEMINI_API_KEY=...",
    ]


def test_json_says_what_the_text_says() -> None:
    doc = json.loads(render_json([OK, WARN, FAIL], 1))
    assert doc == {
        "status": "fail",
        "exit_code": 1,
        "checks": [
            {"name": "configuration", "status": "ok", "detail": "valid", "advice": None},
            {"name": "state directory", "status": "warn", "detail": "none",
             "advice": "set ops.state_dir"},
            {"name": "GEMINI_API_KEY", "status": "fail", "detail": "not set",
             "advice": "export GEMINI_API_KEY=..."},
        ],
    }


def test_a_secret_in_a_detail_is_never_rendered() -> None:
    """Whatever a check quotes (an error echoing what it was sent), the rendering scrubs it."""
    key = new_key()
    logsetup.add_secret(key)
    leaky = Check.fail("Live API", f"closed: key={key}", f"retry with {key[:20]}")
    for out in (render_text([leaky]), render_json([leaky], 1)):
        assert_no_piece(out, key)
        assert "***" in out
    json.loads(render_json([leaky], 1))  # still a JSON document

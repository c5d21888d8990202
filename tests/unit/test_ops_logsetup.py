"""Secrets never reach a log line; both formats are well formed (in process).

The daemon's own crash output and commands (subprocesses): tests/integration/test_ops_logsetup.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from daemon.ops import logsetup
from tests.support.leaks import assert_clean, assert_no_piece, new_key, new_secret

pytestmark = pytest.mark.timeout(20)

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ [\w.]+: .*")


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Where setup_logging writes; the root logger is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    buf = io.StringIO()
    yield buf
    for handler in list(root.handlers):
        if isinstance(handler, logsetup._ScrubbingHandler):  # noqa: SLF001 - the daemon's own root handler has no public type
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_secret_in_message_and_arguments(stream: io.StringIO) -> None:
    secret = new_secret()
    logsetup.setup_logging("info", "text", [secret], stream=stream)
    log = logging.getLogger("daemon.live")
    log.info("using key %s", secret)
    log.info("config %r", {"api_key": secret})
    log.info(f"inline {secret}")
    log.warning("url https://example.test/v1?key=%s&x=1", quote(secret, safe=""))
    log.warning("form body key=%s", quote_plus(secret))
    log.info("extra field", extra={"token": secret})
    out = stream.getvalue()
    assert_clean(out, secret)
    assert out.count(logsetup.REDACTED) >= 6
    assert "https://example.test/v1?key=***&x=1" in out


def test_secret_in_exception_and_traceback(stream: io.StringIO) -> None:
    secret = new_secret()
    logsetup.setup_logging("debug", "text", [secret], stream=stream)
    log = logging.getLogger("daemon.home")

    def connect(password: str) -> None:
        raise ConnectionError(f"broker refused password {password!r}")

    try:
        try:
            connect(secret)
        except ConnectionError as inner:
            raise RuntimeError(f"giving up with {secret}") from inner
    except RuntimeError:
        log.exception("mqtt failed for %s", secret)
    log.error("stack follows", stack_info=True)
    out = stream.getvalue()
    assert_clean(out, secret)
    assert "Traceback (most recent call last)" in out
    assert "ConnectionError: broker refused password '***'" in out
    assert "RuntimeError: giving up with ***" in out
    assert "The above exception was the direct cause" in out
    assert "Stack (most recent call last)" in out


def test_secret_added_later_is_scrubbed(stream: io.StringIO) -> None:
    logsetup.setup_logging("info", "text", [], stream=stream)
    later = new_secret()
    logsetup.add_secret(later)
    logging.getLogger("daemon.home").info("password is %s", later)
    assert_clean(stream.getvalue(), later)
    assert logsetup.scrub(f"x{later}y") == "x***y"


def test_short_values_are_not_scrubbed(stream: io.StringIO) -> None:
    logsetup.setup_logging("info", "text", ["abc", ""], stream=stream)
    logsetup.add_secret(None)
    logging.getLogger("t").info("abc stays")
    assert "abc stays" in stream.getvalue()


def test_text_format(stream: io.StringIO) -> None:
    logsetup.setup_logging("info", "text", [], stream=stream)
    log = logging.getLogger("daemon.live")
    log.debug("not shown")
    log.info("connected", extra={"model": "gemini-3.8-live", "note": "two words", "n": 3})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert TEXT_LINE.fullmatch(lines[0]), lines[0]
    assert lines[0].endswith(
        ' INFO daemon.live: connected model=gemini-3.8-live note="two words" n=3'
    )


def test_json_format_parses_and_is_scrubbed(stream: io.StringIO) -> None:
    secret = new_secret()
    logsetup.setup_logging("info", "json", [secret], stream=stream)
    log = logging.getLogger("daemon.tools")
    log.info("call %s", "light.turn_on", extra={"device": "lamp", "key": secret, "msg_id": 7})
    try:
        raise ValueError(f"bad token {secret}")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "daemon.tools"
    assert first["msg"] == "call light.turn_on"
    assert first["device"] == "lamp"
    assert first["key"] == "***"
    assert first["msg_id"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert "exc" not in first
    assert second["level"] == "ERROR"
    assert second["exc"].startswith("Traceback (most recent call last)")
    assert second["exc"].endswith("ValueError: bad token ***")
    assert_clean(stream.getvalue(), secret)
    assert_clean(json.dumps([first, second], ensure_ascii=False), secret)


def test_setup_twice_replaces_only_its_own_handler(stream: io.StringIO) -> None:
    other = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(other)
    try:
        logsetup.setup_logging("info", "text", [], stream=io.StringIO())
        logsetup.setup_logging("warning", "json", [], stream=stream)
        ours = [h for h in root.handlers if isinstance(h, logsetup._ScrubbingHandler)]  # noqa: SLF001 - the daemon's own root handler has no public type
        assert len(ours) == 1
        assert other in root.handlers
        assert root.level == logging.WARNING
    finally:
        root.removeHandler(other)


def test_bad_level_or_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="log_level"):
        logsetup.setup_logging("loud", "text", [])
    with pytest.raises(ValueError, match="log_format"):
        logsetup.setup_logging("info", "xml", [])  # type: ignore[arg-type]


def test_logging_errors_do_not_print_arguments(stream: io.StringIO) -> None:
    secret = new_secret()
    handler = logsetup.setup_logging("info", "text", [secret], stream=stream)
    # Wrong conversion: a logging error. Handed to our handler directly, because
    # pytest's own capture handler turns logging errors into test failures.
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%d apples", (secret,), None)
    handler.handle(record)
    out = stream.getvalue()
    assert "logging error" in out
    assert_clean(out, secret)


def test_warnings_are_scrubbed(stream: io.StringIO) -> None:
    secret = new_secret()
    logsetup.setup_logging("info", "text", [secret], stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated key {secret}", UserWarning, stacklevel=1)
    out = stream.getvalue()
    assert "deprecated key ***" in out
    assert_clean(out, secret)


def test_thread_exceptions_are_scrubbed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    secret = new_secret()
    logsetup.install_excepthook([secret])

    def work() -> None:
        raise OSError(f"cannot use {secret}")

    thread = threading.Thread(target=work, name="uplink")
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    assert "Exception in thread uplink:" in err
    assert "OSError: cannot use ***" in err
    assert_clean(err, secret)


def test_excepthook_called_directly_is_scrubbed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    secret = new_secret()
    logsetup.install_excepthook([secret])
    try:
        raise KeyError(secret)
    except KeyError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "KeyError" in err
    assert_clean(err, secret)


async def test_asyncio_handler_scrubs_callback_errors(stream: io.StringIO) -> None:
    secret = new_secret()
    logsetup.setup_logging("info", "text", [secret], stream=stream)
    logsetup.install_asyncio_handler()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def callback() -> None:
        done.set()
        raise RuntimeError(f"callback saw {secret}")

    loop.call_soon(callback)
    await done.wait()
    await asyncio.sleep(0)
    loop.call_exception_handler({"message": f"context with {secret}", "detail": secret})
    out = stream.getvalue()
    assert "daemon.crash" in out
    assert "RuntimeError: callback saw ***" in out
    assert "context with ***" in out
    assert_clean(out, secret)


# -- pieces of a secret: cut messages, prefixes, suffixes, printed output ---------------


def test_a_key_cut_at_200_characters_is_still_hidden(stream: io.StringIO) -> None:
    """The field report: an error cut at 200 characters kept 26 of the key's 39."""
    key = new_key()
    assert len(key) == 39
    logsetup.setup_logging("info", "text", [key], stream=stream)
    head = "server closed the connection (1008: request rejected, " + "x" * 200
    reason = (head[: 200 - 26 - len(" key=")] + f" key={key}")[:200]
    assert reason.endswith(key[:26])  # what the daemon used to log
    logging.getLogger("daemon.live").warning("link lost: %s", reason)
    out = stream.getvalue()
    assert_no_piece(out, key)
    assert out.rstrip().endswith("key=***")


@pytest.mark.parametrize(
    "piece",
    [
        lambda k: k[:26],  # a prefix, as left by a cut
        lambda k: k[:8],  # the shortest prefix that is hidden
        lambda k: k[-12:],  # a suffix
        lambda k: k[10:18],  # any run of 8 in the middle
        lambda k: quote(k, safe="")[:20],  # a cut URL-encoded spelling
    ],
    ids=["prefix26", "prefix8", "suffix", "middle", "url-encoded"],
)
def test_pieces_of_a_secret_are_hidden(stream: io.StringIO, piece: Any) -> None:
    for key in (new_key(), new_secret()):
        logsetup.setup_logging("info", "json", [key], stream=stream)
        text = piece(key)
        logging.getLogger("daemon.live").info("using %s.", text, extra={"detail": f"[{text}]"})
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["msg"] == "using ***."
        assert line["detail"] == "[***]"


def test_short_pieces_and_ordinary_text_are_left_alone() -> None:
    key = new_key()
    logsetup.add_secret(key)
    n = logsetup.FRAGMENT_LENGTH
    assert logsetup.scrub(f"id {key[: n - 1]} and more") == f"id {key[: n - 1]} and more"
    text = "edge_tool_calls_total{outcome=\"ok\",tool=\"control_device\"} 3.0\n"
    assert logsetup.scrub(text) == text
    # Two pieces side by side become one mark; the text around them stays.
    assert logsetup.scrub(f"<{key[:12]}{key[20:30]}>") == "<***>"


def test_clip_scrubs_before_it_cuts() -> None:
    key = new_key()
    logsetup.add_secret(key)
    text = "x" * 195 + key  # cut at 200, only 5 characters of the key would be left
    assert key[:5] in text[:200]
    clipped = logsetup.clip(text, 200)
    assert clipped == "x" * 195 + "***"
    assert logsetup.clip(key, 2) == "**"


def test_a_cut_key_in_a_traceback_is_hidden(stream: io.StringIO) -> None:
    key = new_key()
    logsetup.setup_logging("info", "text", [key], stream=stream)

    def handshake(header: str) -> None:
        raise PermissionError(f"rejected x-goog-api-key: {header}")

    try:
        try:
            handshake(key[:26])
        except PermissionError as exc:
            raise RuntimeError(str(exc)[:40]) from exc
    except RuntimeError:
        logging.getLogger("daemon.live").exception("connect failed")
    out = stream.getvalue()
    assert "Traceback (most recent call last)" in out
    assert "PermissionError: rejected x-goog-api-key: ***" in out
    assert_no_piece(out, key)


def test_scrubbing_stream_scrubs_whole_lines(capsys: pytest.CaptureFixture[str]) -> None:
    key = new_key()
    logsetup.add_secret(key)
    raw = io.StringIO()
    out = logsetup.ScrubbingStream(raw)
    print("split", key[:13], file=out, end="")  # the key arrives in two writes
    assert raw.getvalue() == ""  # a partial line waits ...
    print(key[13:], "done", file=out)
    assert raw.getvalue() == "split *** done\n"
    print("prompt> ", key[-9:], end="", file=out, flush=True)  # ... or a flush
    assert raw.getvalue().endswith("prompt>  ***")


def test_scrubbed_stdio_covers_print_and_is_undone(capsys: pytest.CaptureFixture[str]) -> None:
    key = new_key()
    logsetup.add_secret(key)
    before = sys.stdout, sys.stderr
    with logsetup.scrubbed_stdio():
        print(f"key {key}")
        print(f"cut {key[:26]}", file=sys.stderr)
        with logsetup.scrubbed_stdio():  # nested: not wrapped twice
            assert isinstance(sys.stdout, logsetup.ScrubbingStream)
            assert not isinstance(sys.stdout.raw, logsetup.ScrubbingStream)
    assert (sys.stdout, sys.stderr) == before
    captured = capsys.readouterr()
    assert captured.out == "key ***\n"
    assert captured.err == "cut ***\n"


def test_the_demo_transcript_scrubs_before_it_shortens() -> None:
    """A tool answer cut at 240 characters for the transcript: no piece of the key left."""
    from daemon.live.calls import FunctionCall
    from daemon.transcript import TranscriptPrinter

    key = new_key()
    logsetup.add_secret(key)
    out = io.StringIO()
    printer = TranscriptPrinter(out)
    error = "e" * (237 - len('{"error": "') - 4) + key + "f" * 50  # a cut there keeps 4
    printer.call(FunctionCall("c1", "control_device", {}), "error", {"error": error})
    line = out.getvalue()
    assert "***" in line
    assert key[:4] not in line


def test_the_confirmation_pin_is_not_scrubbed_from_every_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scrubbing a few digits everywhere mangled unrelated numbers (a counter at 14821
    # with PIN 4821) and, where an attacker chose the text (probe topics 4800..4829),
    # the one line showing *** told the PIN. The PIN's way out, the user's words, is
    # redact_digits; the MQTT password is still scrubbed.
    from daemon.cli import _parser
    from daemon.options import settings_from_args

    for name in ("EDGE_AGENT_TOOLS__CONFIRM_PIN", "EDGE_AGENT_MQTT__PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "none"))
    config = tmp_path / "edge-agent.toml"
    config.write_text('[tools]\nconfirm_pin = "730529"\n[mqtt]\npassword = "pw-3e8c1f2a7b"\n')
    settings = settings_from_args(_parser().parse_args(["doctor", "--config", str(config)]))
    assert settings.tools.confirm_pin is not None
    assert logsetup.scrub("probe730529 counted 1730529.0") == "probe730529 counted 1730529.0"
    assert logsetup.scrub("password pw-3e8c1f2a7b") == "password ***"

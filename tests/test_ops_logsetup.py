"""Secrets never reach a log line or crash output; both formats are well formed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from daemon.ops import logsetup

pytestmark = pytest.mark.timeout(20)

REPO = Path(__file__).resolve().parents[1]
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ [\w.]+: .*")


def new_secret() -> str:
    """A unique secret with characters that URL-encoding, repr and JSON all change."""
    return f"k3y/{uuid.uuid4().hex[:12]}+p@ss w\\o'rd\"é"


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Where setup_logging writes; the root logger is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    buf = io.StringIO()
    yield buf
    for handler in list(root.handlers):
        if isinstance(handler, logsetup._ScrubbingHandler):
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def assert_clean(output: str, secret: str) -> None:
    for form in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
        assert form not in output
    assert secret.split("/")[1].split("+")[0] not in output  # not even the random middle


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
        ours = [h for h in root.handlers if isinstance(h, logsetup._ScrubbingHandler)]
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


def test_uncaught_exception_at_crash_is_scrubbed() -> None:
    """A real interpreter dying of an uncaught exception prints a scrubbed traceback."""
    secret = new_secret()
    program = (
        "import sys\n"
        "from daemon.ops.logsetup import install_excepthook\n"
        "install_excepthook([sys.argv[1]])\n"
        "def load(key):\n"
        "    raise PermissionError('rejected key ' + key)\n"
        "load(sys.argv[1])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program, secret],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "PermissionError: rejected key ***" in proc.stderr
    assert_clean(proc.stderr, secret)


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

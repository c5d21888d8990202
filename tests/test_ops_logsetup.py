"""Secrets never reach a log line or crash output; both formats are well formed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
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


# -- pieces of a secret: cut messages, prefixes, suffixes, printed output ---------------


def new_key() -> str:
    """A unique 39-character key shaped like a Google API key."""
    return "AIzaSy" + uuid.uuid4().hex + "Q"


def assert_no_piece(output: str, secret: str) -> None:
    """Not the secret, nor any run of FRAGMENT_LENGTH of its characters."""
    n = logsetup.FRAGMENT_LENGTH
    pieces = [secret[i : i + n] for i in range(len(secret) - n + 1)]
    leaked = [p for p in pieces if p in output]
    assert not leaked, f"pieces of the secret in the output: {leaked}"


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


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_doctor_output_is_scrubbed(tmp_path: Path) -> None:
    """`doctor` prints, it does not log: a path holding a cut key is printed scrubbed."""
    key = new_key()
    (tmp_path / "empty.toml").write_text("")
    proc = _run_cli(
        "doctor", "--ca-file", f"/nonexistent/{key[:26]}/ca.pem",
        env={"GEMINI_API_KEY": key, "EDGE_AGENT_CONFIG": str(tmp_path / "empty.toml")},
    )
    text = proc.stdout + proc.stderr
    assert "/nonexistent/***/ca.pem" in text, text
    assert_no_piece(text, key)


def test_devices_output_is_scrubbed(tmp_path: Path) -> None:
    key = new_key()
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        "[[mqtt.devices]]\n"
        'component = "light"\nid = "lamp"\n'
        f'name = "Lamp {key}"\n'
        'command_topic = "home/lamp/set"\n'
    )
    proc = _run_cli("devices", env={"GEMINI_API_KEY": key, "EDGE_AGENT_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lamp: Lamp ***" in proc.stdout
    assert_no_piece(proc.stdout + proc.stderr, key)


def test_crash_after_any_command_is_scrubbed() -> None:
    """main() installs the crash hook for every command, not only run and demo."""
    key = new_key()
    program = (
        "import os, sys\n"
        "from daemon.cli import main\n"
        "main(['doctor'])\n"
        "raise RuntimeError('handshake with ' + os.environ['GEMINI_API_KEY'][:26])\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "GEMINI"))}
    proc = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env={**clean, "GEMINI_API_KEY": key, "EDGE_AGENT_CONFIG": "/nonexistent/none.toml"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert "RuntimeError: handshake with ***" in proc.stderr
    assert_no_piece(proc.stdout + proc.stderr, key)


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

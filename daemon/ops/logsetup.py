"""Root logging to stderr, text or JSON, with every known secret scrubbed.

Scrubbing happens on the final formatted line, after the message, extras and the
full traceback have been rendered, because that is the only place that sees
everything a line will contain: a secret inside an exception's message, a
chained cause or a repr() of an argument is caught as surely as one passed as a
plain log argument. The same scrubber guards what is printed without logging
(uncaught exceptions in the main thread, in other threads, in __del__, and in
asyncio callbacks), so a secret never reaches stderr or the journal.

Text is often cut short (an error's reason, a close message) and a cut secret is no
longer the whole secret, so the scrubber also hides any run of FRAGMENT_LENGTH or
more characters taken from a secret, and `clip()` scrubs before it cuts. Commands
that print rather than log get the same treatment through `scrubbed_stdio()`.

Module is named `logsetup` so it does not shadow the standard `logging`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TextIO
from urllib.parse import quote, quote_plus

from typing_extensions import override

REDACTED = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not scrubbed: replacing every "a1" would mangle logs and hide nothing."""
FRAGMENT_LENGTH = 8
"""A run this long of a secret's characters is hidden even when the rest was cut off."""

LogFormat = Literal["text", "json"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


@dataclass(frozen=True)
class _Matcher:
    """Everything `scrub()` needs, swapped as one value so readers never need the lock."""

    whole: re.Pattern[str]
    """Every spelling of every secret, longest first."""
    fragments: frozenset[str]
    """Every FRAGMENT_LENGTH-long piece of every spelling."""
    runs: re.Pattern[str] | None
    """Runs of FRAGMENT_LENGTH or more characters that secrets use: the only places
    a fragment can be, found at C speed before the per-position look-ups."""


_lock = threading.Lock()
_secrets: set[str] = set()
_matcher: _Matcher | None = None

_crash_log = logging.getLogger("daemon.crash")


# -- the secret registry ------------------------------------------------------


def _forms(secret: str) -> set[str]:
    """The ways a secret can be spelled in output: raw, URL-encoded, escaped by repr/JSON."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode("utf-8"))[2:-1],
    }
    # Percent-encoding is case-insensitive in its hex digits.
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in forms}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def add_secret(value: str | None) -> None:
    """Register a value that must never be printed; None, empty and short values are ignored."""
    global _matcher
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        forms: set[str] = set()
        for secret in _secrets:
            forms |= _forms(secret)
        # Longest first: at one position the regex takes the first alternative that matches.
        alternatives = sorted(forms, key=lambda f: (-len(f), f))
        fragments = frozenset(
            form[i : i + FRAGMENT_LENGTH]
            for form in forms
            for i in range(len(form) - FRAGMENT_LENGTH + 1)
        )
        alphabet = sorted({c for fragment in fragments for c in fragment})
        runs = (
            re.compile(f"[{''.join(re.escape(c) for c in alphabet)}]{{{FRAGMENT_LENGTH},}}")
            if fragments
            else None
        )
        _matcher = _Matcher(
            re.compile("|".join(re.escape(f) for f in alternatives)), fragments, runs
        )


def scrub(text: str) -> str:
    """`text` with every registered secret (in any known spelling), and every piece of
    one at least FRAGMENT_LENGTH long, replaced by ***."""
    matcher = _matcher
    if matcher is None or not text:
        return text
    text = matcher.whole.sub(REDACTED, text)
    if matcher.runs is None:
        return text
    spans: list[tuple[int, int]] = []
    for run in matcher.runs.finditer(text):
        start, end = run.span()
        for i in range(start, end - FRAGMENT_LENGTH + 1):
            if text[i : i + FRAGMENT_LENGTH] in matcher.fragments:
                stop = i + FRAGMENT_LENGTH
                if spans and spans[-1][1] >= i:  # overlaps or touches the previous hit
                    spans[-1] = (spans[-1][0], stop)
                else:
                    spans.append((i, stop))
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, stop in spans:
        out += (text[last:start], REDACTED)
        last = stop
    out.append(text[last:])
    return "".join(out)


def clip(text: str, limit: int) -> str:
    """`text` scrubbed, then cut to `limit` characters.

    In that order: cutting first can leave a piece of a secret too short to be
    recognised as one, and the piece is still a piece of the key.
    """
    return scrub(text)[: max(limit, 0)]


# -- formatting -----------------------------------------------------------------

_BLANK_RECORD = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
_STANDARD_ATTRS = frozenset(_BLANK_RECORD.__dict__) | {"message", "asctime", "taskName"}
_JSON_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
_BARE_VALUE = re.compile(r"[^\s\"'=\\]+")


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """Fields passed with `extra=`, which become key=value pairs or JSON keys."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _kv_value(value: object) -> str:
    text = str(value)
    return text if _BARE_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class ScrubbingFormatter(logging.Formatter):
    """Renders a record completely, then scrubs the whole result.

    Text: `2026-11-23T18:00:00.123Z INFO daemon.live: message key=value`, then the
    traceback on following lines. JSON: one object per line with ts, level,
    logger, msg, exc (if any), stack (if any) and the extras.
    """

    def __init__(self, fmt: LogFormat = "text") -> None:
        super().__init__()
        if fmt not in ("text", "json"):
            raise ValueError(f"log_format: must be 'text' or 'json', not {fmt!r}")
        self.fmt: LogFormat = fmt

    @override
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exc = ""
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # Replace the cache too, so any other handler reusing it sees the scrubbed text.
            record.exc_text = exc = scrub(record.exc_text)
        stack = self.formatStack(record.stack_info) if record.stack_info else ""
        extras = _extras(record)
        if self.fmt == "json":
            payload: dict[str, object] = {
                "ts": _timestamp(record),
                "level": record.levelname,
                "logger": record.name,
                "msg": scrub(message),
            }
            if exc:
                payload["exc"] = exc
            if stack:
                payload["stack"] = scrub(stack)
            for key, value in extras.items():
                name = f"extra_{key}" if key in _JSON_RESERVED else key
                payload[name] = scrub(value) if isinstance(value, str) else value
            line = json.dumps(payload, ensure_ascii=False, default=str)
        else:
            pairs = "".join(f" {key}={_kv_value(value)}" for key, value in extras.items())
            line = f"{_timestamp(record)} {record.levelname} {record.name}: {message}{pairs}"
            if exc:
                line += "\n" + exc
            if stack:
                line += "\n" + stack
        return scrub(line)


class _ScrubbingHandler(logging.StreamHandler[TextIO]):
    """A stream handler whose own error report cannot leak a record's arguments."""

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints the record's msg and args verbatim: they may hold secrets.
        if not logging.raiseExceptions:
            return
        err = sys.exc_info()[1]
        text = (
            f"--- logging error in {record.name} at {record.pathname}:{record.lineno}: "
            f"{type(err).__name__}: {err}\n"
        )
        try:
            self.stream.write(scrub(text))
            self.flush()
        except Exception:  # the stream itself is broken; nowhere left to report
            pass


def setup_logging(
    level: str = "info",
    fmt: LogFormat = "text",
    secrets: Iterable[str] = (),
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the root logger to stderr (or `stream`) through the scrubbing formatter.

    Calling it again replaces the handler it installed before and leaves any other
    handler (for example a test harness's) alone. Returns the installed handler.
    """
    try:
        numeric = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log_level: unknown level {level!r}") from None
    formatter = ScrubbingFormatter(fmt)
    for secret in secrets:
        add_secret(secret)
    handler = _ScrubbingHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ScrubbingHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)  # warnings.warn text goes through the scrubber too
    return handler


# -- crash output ----------------------------------------------------------------


def _write_stderr(text: str) -> None:
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(scrub(text))
        stream.flush()
    except Exception:
        pass


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _write_stderr("".join(traceback.format_exception(exc_type, exc, tb)))


def _threading_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else str(threading.get_ident())
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    _write_stderr(f"Exception in thread {name}:\n{text}")


def _unraisablehook(args: sys.UnraisableHookArgs) -> None:
    try:
        where = f"{args.err_msg or 'Exception ignored in'}: {args.object!r}"
    except Exception:
        where = args.err_msg or "Exception ignored in"
    text = ""
    if args.exc_type is not None:
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
    _write_stderr(f"{where}\n{text}")


class ScrubbingStream(io.TextIOBase):
    """A text stream that scrubs what it passes on to `raw`, a line at a time.

    Whole lines, because `print()` writes its pieces in separate calls; a partial
    line waits for its newline, a flush, or PENDING_LIMIT characters.
    """

    PENDING_LIMIT = 64 * 1024

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw
        self._pending = ""
        self._lock = threading.Lock()

    @override
    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if len(self._pending) > self.PENDING_LIMIT:
                cut = len(self._pending)
            else:
                cut = self._pending.rfind("\n") + 1
            if cut:
                out, self._pending = self._pending[:cut], self._pending[cut:]
                self.raw.write(scrub(out))
        return len(text)

    @override
    def flush(self) -> None:
        with self._lock:
            out, self._pending = self._pending, ""
            if out:
                self.raw.write(scrub(out))
        self.raw.flush()

    @override
    def writable(self) -> bool:
        return True

    @override
    def fileno(self) -> int:
        return self.raw.fileno()

    @override
    def isatty(self) -> bool:
        return self.raw.isatty()

    @property
    @override
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw.encoding

    @property
    @override
    def errors(self) -> str | None:  # type: ignore[override]
        return self.raw.errors


@contextlib.contextmanager
def scrubbed_stdio() -> Iterator[None]:
    """`sys.stdout` and `sys.stderr` scrubbed for the duration: for commands that print.

    The originals are back afterwards (what was written is flushed first), so an
    in-process caller such as a test is left as it was.
    """
    installed: list[tuple[str, TextIO, ScrubbingStream]] = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, ScrubbingStream):
            continue
        wrapper = ScrubbingStream(stream)
        setattr(sys, name, wrapper)
        installed.append((name, stream, wrapper))
    try:
        yield
    finally:
        for name, stream, wrapper in reversed(installed):
            with contextlib.suppress(Exception):
                wrapper.flush()
            if getattr(sys, name) is wrapper:
                setattr(sys, name, stream)


def install_excepthook(secrets: Iterable[str] = ()) -> None:
    """Scrub crash output printed outside logging: sys, threading and unraisable hooks."""
    for secret in secrets:
        add_secret(secret)
    sys.excepthook = _excepthook
    threading.excepthook = _threading_excepthook
    sys.unraisablehook = _unraisablehook


def asyncio_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log an exception nobody awaited, scrubbed before it reaches any handler.

    asyncio's default handler puts repr()s of futures and callbacks into the log
    record's arguments, where a handler other than ours would print them raw.
    """
    message = str(context.get("message") or "unhandled exception in event loop")
    details: list[str] = []
    for key in sorted(context):
        if key in ("message", "exception"):
            continue
        value = context[key]
        if key in ("source_traceback", "handle_traceback") and isinstance(value, list):
            details.append(f"{key}:\n" + "".join(traceback.format_list(value)).rstrip())
        else:
            try:
                details.append(f"{key}: {value!r}")
            except Exception:
                details.append(f"{key}: <unrepresentable {type(value).__name__}>")
    text = "\n".join([message, *details])
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    _crash_log.error("%s", scrub(text))


def install_asyncio_handler(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Route `loop`'s (default: the running loop's) unhandled errors through the scrubber."""
    target = asyncio.get_running_loop() if loop is None else loop
    target.set_exception_handler(asyncio_exception_handler)

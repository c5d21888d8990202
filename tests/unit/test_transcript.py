"""The demo's transcript shows a spoken PIN no more than Home Assistant does, and keeps
bounded memory however long the conversation or one unfinished turn."""

from __future__ import annotations

import io

import pytest

from daemon.home.answers import redact_digits
from daemon.live.events import InputTranscript, OutputTranscript, TurnComplete
from daemon.transcript import MAX_LINES, MAX_TURN_CHARS, TranscriptPrinter


def test_with_a_pin_set_no_spoken_digit_is_printed() -> None:
    out = io.StringIO()
    printer = TranscriptPrinter(out)
    printer.text_filter = redact_digits  # as `demo` sets it when tools.confirm_pin is set
    printer.event(InputTranscript(" My PIN is 7 3 9 1, or seven three nine one.", True))
    printer.event(OutputTranscript("You said 7391?"))
    printer.event(TurnComplete())
    text = out.getvalue()
    assert "you    My PIN is # # # #, or # # # #." in text
    assert "model  You said ####?" in text
    assert not any(c.isdigit() for line in printer.lines for c in line.split(" ", 1)[1])


def test_lines_kept_are_bounded_and_every_line_is_printed() -> None:
    out = io.StringIO()
    printer = TranscriptPrinter(out)
    for i in range(3 * MAX_LINES):
        printer.event(InputTranscript(f"turn {i}", True))
    assert len(printer.lines) == MAX_LINES
    assert printer.lines[-1].endswith(f"turn {3 * MAX_LINES - 1}")
    assert len(out.getvalue().splitlines()) == 3 * MAX_LINES


@pytest.mark.parametrize("who", ["model", "you"])
def test_a_turn_that_never_completes_is_printed_as_it_grows(who: str) -> None:
    out = io.StringIO()
    printer = TranscriptPrinter(out)
    printer.text_filter = redact_digits
    for _ in range(5_000):  # a digit word split across fragments: never cut apart
        ev = OutputTranscript if who == "model" else InputTranscript
        for part in ("sev", "en ", "word " * 20):
            printer.event(ev(part) if who == "model" else ev(part, False))
    held = "".join(printer._model if who == "model" else printer._user)  # noqa: SLF001
    assert len(held) <= MAX_TURN_CHARS
    printer.event(TurnComplete())
    text = out.getvalue()
    assert text.count("word") == 5_000 * 20  # nothing lost, only printed in pieces
    assert text.count("#") == 5_000
    assert "sev" not in text
    assert max(len(line) for line in text.splitlines()) < MAX_TURN_CHARS + 40

"""A readable transcript of the conversation: who said what, which tools ran."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from daemon.live.calls import FunctionCall
from daemon.live.events import (
    InputTranscript,
    Interrupted,
    LinkStatus,
    LiveEvent,
    OutputTranscript,
    ToolCallCancelled,
    TurnComplete,
)
from daemon.ops.logsetup import scrub

MAX_LINES = 1000  # the newest lines kept in `lines` (all are printed)
MAX_TURN_CHARS = 4000  # a turn longer than this is printed in pieces, as it goes


class TranscriptPrinter:
    """Prints the conversation as it happens, one timestamped line per turn or tool call."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._t0 = time.monotonic()
        self._user: list[str] = []
        self._model: list[str] = []
        self._user_chars = 0
        self._model_chars = 0
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.text_filter: Callable[[str], str] | None = None  # e.g. hides a spoken PIN

    def _print(self, who: str, text: str) -> None:
        if self.text_filter is not None:
            text = self.text_filter(text)
        t = time.monotonic() - self._t0
        line = f"[{int(t // 60):02d}:{t % 60:04.1f}] {who:<6} {text}"
        self.lines.append(line)
        print(line, file=self._out, flush=True)

    def _flush_user(self) -> None:
        if self._user:
            self._print("you", "".join(self._user).strip())
            self._user.clear()
            self._user_chars = 0

    def _flush_model(self, suffix: str = "") -> None:
        if self._model:
            self._print("model", "".join(self._model).strip() + suffix)
            self._model.clear()
            self._model_chars = 0

    def _add_user(self, text: str) -> None:
        self._user.append(text)
        self._user_chars += len(text)
        if self._user_chars > MAX_TURN_CHARS:
            self._user_chars = self._print_part("you", self._user)

    def _add_model(self, text: str) -> None:
        self._model.append(text)
        self._model_chars += len(text)
        if self._model_chars > MAX_TURN_CHARS:
            self._model_chars = self._print_part("model", self._model)

    def _print_part(self, who: str, parts: list[str]) -> int:
        """A turn that never ends (no turnComplete) is printed as it grows, each piece
        up to its last space (a word is not split: `text_filter` sees whole words);
        returns the characters kept."""
        text = "".join(parts)
        while len(text) > MAX_TURN_CHARS:
            cut = text.rfind(" ", 0, MAX_TURN_CHARS)
            cut = cut if cut > 0 else MAX_TURN_CHARS
            self._print(who, text[:cut].strip() + " ...")
            text = text[cut:]
        parts[:] = [text]
        return len(text)

    def event(self, ev: LiveEvent) -> None:
        """Follow one Live event (an `Agent` event observer)."""
        match ev:
            case InputTranscript(text=text, finished=finished):
                self._add_user(text)
                if finished:
                    self._flush_user()
            case OutputTranscript(text=text):
                self._flush_user()
                self._add_model(text)
            case Interrupted():
                self._flush_model(" [interrupted]")
            case TurnComplete():
                self._flush_user()
                self._flush_model()
            case ToolCallCancelled(ids=ids):
                self._print("tool", f"cancelled by the model: {', '.join(ids)}")
            case LinkStatus(state=state, detail=detail, resumed=resumed):
                what = state + (" (resumed)" if resumed else "") + (f": {detail}" if detail else "")
                self._print("link", what)
            case _:
                pass

    def call(self, call: FunctionCall, outcome: str, response: dict[str, Any] | None) -> None:
        """Print a finished tool call (an `Agent` call observer)."""
        self._flush_user()
        args = json.dumps(call.args, sort_keys=True)
        self._print("tool", f"{call.name}({args}) -> {outcome}: {_result(response)}")


# What a device tool did, printed whole: a long message must not hide the command.
_FACTS = ("status", "mqtt", "state")


def _result(response: dict[str, Any] | None) -> str:
    """The tool's status, MQTT command and confirmed state in full, the rest shortened."""
    if response is None:
        return "(no answer sent)"
    output = response.get("output")
    if not isinstance(output, dict) or not any(k in output for k in _FACTS):
        return _short(response)
    facts = {k: output[k] for k in _FACTS if k in output}
    rest = {k: v for k, v in output.items() if k not in facts}
    text = json.dumps(facts, sort_keys=True, default=str)
    return f"{text} {_short(rest)}" if rest else text


def _short(value: Any) -> str:
    text = scrub(json.dumps(value, sort_keys=True, default=str))  # before the cut: see clip()
    return text if len(text) <= 240 else text[:237] + "..."

"""Scripted conversations for the fake Gemini Live server.

A :class:`Scenario` is an ordered list of :class:`Turn` objects; the fake
server consumes one turn per user utterance it "hears". Keeping the script
apart from the server lets the demo, the tests and the benchmarks share one
format and lets a scenario be checked without opening a socket.

File format (TOML shown; JSON uses the same structure and keys)::

    loop = false                    # start again at turn 1 when exhausted

    [[turns]]
    user = "What's the status of the agent?"   # input transcription to report
    reply = "{status}"       # output transcription (see the placeholders below)
    audio_ms = 1200          # generated reply tone length (default 1000)
    tone_hz = 440            # tone frequency (default 440)
    chirp_to_hz = 880        # optional: sweep tone_hz -> chirp_to_hz
    amplitude = 0.3          # 0..1 of full scale (default 0.3)
    # audio_file = "reply.wav"  # instead of a tone: 16-bit WAV, resampled to
    #                           # 24 kHz mono; relative to the scenario file
    cancelled_reply = "OK, never mind."  # optional: said if a call is cancelled
    usage = { prompt_token_count = 40, response_token_count = 30 }  # optional

    [[turns.tool_calls]]     # zero or more; or a single `tool_call = {...}`
    name = "agent_status"
    args = {}
    cancel_after_ms = 500    # optional: server cancels the call after 500 ms

    [[turns]]
    user = "Thank you."
    reply = "You're welcome."

``{result}`` in ``reply`` is replaced by the function response of the first
tool call: a string if the response is ``{"output": "..."}`` or
``{"result": "..."}``, otherwise compact JSON. ``{result[key]}`` picks one
field; ``{results[name]}`` picks the response of the call named ``name``.
``{status}`` is what a model would say about an ``agent_status`` result (the
call of that name, else the first): one short sentence on the link, the
glasses or microphone and the battery, never the JSON itself.
Unknown keys are an error, so a typo never silently changes a test.
"""

from __future__ import annotations

import functools
import json
import math
import tomllib
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon.errors import EdgeAgentError
from daemon.media.wav import read_wav

__all__ = [
    "OUTPUT_SAMPLE_RATE",
    "ReplyAudio",
    "Scenario",
    "ScenarioError",
    "ToolCallSpec",
    "Turn",
    "Usage",
    "default_scenario",
    "describe_status",
    "format_reply",
    "home_demo_scenario",
    "load_scenario",
]

OUTPUT_SAMPLE_RATE = 24_000
"""Sample rate of the model's voice on the Live API (16-bit mono PCM)."""

_MAX_AUDIO_MS = 60_000.0
_MAX_TURNS = 10_000
_FADE_MS = 5.0


class ScenarioError(EdgeAgentError, ValueError):
    """A scenario file or dict is malformed; the message names the field."""


@dataclass(frozen=True)
class ToolCallSpec:
    """A function call the scripted model makes before it replies."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    cancel_after_ms: float | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts reported in ``usageMetadata`` for one turn."""

    prompt_token_count: int
    response_token_count: int

    @property
    def total_token_count(self) -> int:
        """Sum of prompt and response tokens, as the service reports it."""
        return self.prompt_token_count + self.response_token_count


@dataclass(frozen=True)
class ReplyAudio:
    """How the reply voice is made: a deterministic tone/chirp or a WAV file."""

    duration_ms: float = 1000.0
    tone_hz: float = 440.0
    chirp_to_hz: float | None = None
    amplitude: float = 0.3
    wav_path: Path | None = None

    def render(self) -> bytes:
        """Return 24 kHz mono 16-bit little-endian PCM for this reply."""
        if self.wav_path is not None:
            return _load_wav_24k(str(self.wav_path))
        return _render_tone(self.duration_ms, self.tone_hz, self.chirp_to_hz, self.amplitude)


@dataclass(frozen=True)
class Turn:
    """One exchange: what the user said, the optional tool calls, the reply."""

    user: str
    reply: str = ""
    audio: ReplyAudio = field(default_factory=ReplyAudio)
    tool_calls: tuple[ToolCallSpec, ...] = ()
    cancelled_reply: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Scenario:
    """An ordered script of turns; ``loop`` restarts it when exhausted."""

    turns: tuple[Turn, ...]
    loop: bool = False

    def turn_at(self, index: int) -> Turn | None:
        """Return the turn for the ``index``-th utterance, or None past the end."""
        if not self.turns:
            return None
        if self.loop:
            return self.turns[index % len(self.turns)]
        return self.turns[index] if 0 <= index < len(self.turns) else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: Path | None = None) -> Scenario:
        """Build a scenario from parsed TOML/JSON; relative paths use ``base_dir``."""
        _check_keys(data, {"loop", "turns"}, "scenario")
        raw_turns = data.get("turns")
        if not isinstance(raw_turns, list) or not raw_turns:
            raise ScenarioError("scenario.turns: must be a non-empty list of tables")
        if len(raw_turns) > _MAX_TURNS:
            raise ScenarioError(f"scenario.turns: at most {_MAX_TURNS} turns")
        loop = data.get("loop", False)
        if not isinstance(loop, bool):
            raise ScenarioError("scenario.loop: must be true or false")
        turns = tuple(
            _parse_turn(t, f"turns[{i}]", base_dir) for i, t in enumerate(raw_turns)
        )
        return cls(turns=turns, loop=loop)


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario from a ``.toml`` or ``.json`` file (by extension)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{p}: not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}: top level must be a table/object")
    try:
        return Scenario.from_dict(data, base_dir=p.parent)
    except ScenarioError as exc:
        raise ScenarioError(f"{p}: {exc}") from exc


def default_scenario() -> Scenario:
    """The demo script: ask for the agent's status (a tool call), then thank it."""
    return Scenario(
        turns=(
            Turn(
                user="What's the status of the agent?",
                reply="The agent is running: {result}",
                audio=ReplyAudio(duration_ms=1500.0, tone_hz=440.0, chirp_to_hz=660.0),
                tool_calls=(ToolCallSpec(name="agent_status"),),
            ),
            Turn(
                user="Thank you.",
                reply="You're welcome.",
                audio=ReplyAudio(duration_ms=800.0, tone_hz=523.25),
            ),
        )
    )


def home_demo_scenario() -> Scenario:
    """The home demo (assets/home_demo.wav): turn on the kitchen light, then ask for status.

    The first turn calls the `control_device` tool on the default virtual home's
    kitchen light (simulator.home.default_devices, unique id `sim-kitchen_light`).
    """
    return Scenario(
        turns=(
            Turn(
                user="Turn on the kitchen light.",
                reply="Done, the kitchen light is on.",
                audio=ReplyAudio(duration_ms=1200.0, tone_hz=392.0, chirp_to_hz=587.33),
                tool_calls=(
                    ToolCallSpec(
                        name="control_device",
                        args={"device_id": "sim-kitchen_light", "action": "turn_on"},
                    ),
                ),
            ),
            Turn(
                user="What's the status of the agent?",
                reply="{status}",
                audio=ReplyAudio(duration_ms=1500.0, tone_hz=440.0, chirp_to_hz=660.0),
                tool_calls=(ToolCallSpec(name="agent_status"),),
            ),
        )
    )


def describe_status(response: Mapping[str, Any] | None) -> str:
    """Say an agent_status result the way a model would: a sentence, not its JSON.

    Takes the function response as sent (``{"output": {...}}``) or the status
    itself; reads the link state, the peripheral and the battery, and ignores
    what it does not know, so a changed status never breaks the demo.
    """
    status: Any = response or {}
    if isinstance(status, Mapping) and len(status) == 1 and "error" in status:
        return f"I couldn't read my status: {status['error']}."
    if isinstance(status, Mapping) and set(status) <= {"output", "result"} and status:
        status = next(iter(status.values()))
    if not isinstance(status, Mapping):
        return f"I'm up and running: {status}." if status else "I'm up and running."
    parts: list[str] = []
    link = status.get("live_link")
    if isinstance(link, str) and link:
        parts.append(f"the Live link is {link}")
    peripheral = status.get("peripheral")
    peripheral = peripheral if isinstance(peripheral, Mapping) else {}
    if (said := _peripheral_phrase(peripheral)) is not None:
        parts.append(said)
    battery = status.get("battery_percent", peripheral.get("battery"))
    if isinstance(battery, int | float) and not isinstance(battery, bool):
        parts.append(f"the battery is at {round(battery)} percent")
    if status.get("microphone_muted") is True:
        parts.append("the microphone is muted")
    if not parts:
        return "I'm up and running."
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"I'm up and running: {listed}."


def _peripheral_phrase(peripheral: Mapping[str, Any]) -> str | None:
    """What the status says about where the audio comes from, if anything."""
    kind = peripheral.get("kind")
    if kind == "ble":
        device = peripheral.get("device") or peripheral.get("name") or "glasses"
        connected = "connected" if peripheral.get("connected") else "not connected"
        return f"the {device} is {connected}"
    if kind == "kiosk":
        return "I'm listening on the local microphone"
    if kind == "file":
        return "I'm listening to a recording"
    if isinstance(kind, str) and kind:
        return f"the {kind} peripheral is in use"
    return None


class _JsonView(dict[str, Any]):
    """A dict that formats as compact JSON, so ``{result}`` reads naturally."""

    def __format__(self, spec: str) -> str:
        return format(json.dumps(self, separators=(",", ":"), ensure_ascii=False), spec)

    def __str__(self) -> str:
        return json.dumps(self, separators=(",", ":"), ensure_ascii=False)


def _result_value(response: Mapping[str, Any] | None) -> Any:
    if response is None:
        return ""
    if len(response) == 1:
        key = next(iter(response))
        if key in ("output", "result"):
            inner = response[key]
            return _JsonView(inner) if isinstance(inner, dict) else inner
    return _JsonView(response)


def format_reply(
    template: str,
    responses: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
) -> str:
    """Fill ``{result}``/``{results[name]}`` from (name, response) pairs.

    A template that does not format (missing key, stray brace) falls back to
    replacing the literal ``{result}`` only, so a script mistake still yields
    a reply rather than a crashed session.
    """
    first = _result_value(responses[0][1]) if responses else ""
    by_name = {name: _result_value(resp) for name, resp in responses}
    status = ""
    if "{status" in template:
        asked = dict(responses).get("agent_status", responses[0][1] if responses else None)
        status = describe_status(asked)
    try:
        return template.format(result=first, results=by_name, status=status)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError):
        return template.replace("{result}", str(first)).replace("{status}", status)


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _number(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}.{key}: must be a number")
    return float(value)


def _text(data: Mapping[str, Any], key: str, where: str, default: str | None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ScenarioError(f"{where}.{key}: must be a string")
    return value


def _parse_tool_call(raw: Any, where: str) -> ToolCallSpec:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table")
    _check_keys(raw, {"name", "args", "cancel_after_ms"}, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}.name: must be a non-empty string")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise ScenarioError(f"{where}.args: must be a table")
    cancel: float | None = None
    if "cancel_after_ms" in raw:
        cancel = _number(raw, "cancel_after_ms", where, 0.0)
        if cancel < 0:
            raise ScenarioError(f"{where}.cancel_after_ms: must be >= 0")
    return ToolCallSpec(name=name, args=dict(args), cancel_after_ms=cancel)


def _parse_turn(raw: Any, where: str, base_dir: Path | None) -> Turn:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table")
    _check_keys(
        raw,
        {
            "user", "reply", "audio_ms", "tone_hz", "chirp_to_hz", "amplitude",
            "audio_file", "tool_call", "tool_calls", "cancelled_reply", "usage",
        },
        where,
    )
    user = _text(raw, "user", where, None)
    if user is None:
        raise ScenarioError(f"{where}.user: required (the text the user is heard saying)")
    reply = _text(raw, "reply", where, "") or ""
    audio = _parse_audio(raw, where, base_dir)
    calls = _parse_tool_calls(raw, where)
    usage = _parse_usage(raw["usage"], f"{where}.usage") if "usage" in raw else None
    return Turn(
        user=user,
        reply=reply,
        audio=audio,
        tool_calls=calls,
        cancelled_reply=_text(raw, "cancelled_reply", where, None),
        usage=usage,
    )


def _parse_audio(raw: Mapping[str, Any], where: str, base_dir: Path | None) -> ReplyAudio:
    """The reply voice of a turn: a tone (or chirp), or a WAV file that must load."""
    duration = _number(raw, "audio_ms", where, 1000.0)
    if not 0 <= duration <= _MAX_AUDIO_MS:
        raise ScenarioError(f"{where}.audio_ms: must be between 0 and {_MAX_AUDIO_MS:.0f}")
    tone = _number(raw, "tone_hz", where, 440.0)
    if not 20 <= tone <= OUTPUT_SAMPLE_RATE / 2:
        raise ScenarioError(f"{where}.tone_hz: must be between 20 and 12000")
    chirp: float | None = None
    if "chirp_to_hz" in raw:
        chirp = _number(raw, "chirp_to_hz", where, tone)
        if not 20 <= chirp <= OUTPUT_SAMPLE_RATE / 2:
            raise ScenarioError(f"{where}.chirp_to_hz: must be between 20 and 12000")
    amplitude = _number(raw, "amplitude", where, 0.3)
    if not 0 <= amplitude <= 1:
        raise ScenarioError(f"{where}.amplitude: must be between 0 and 1")
    wav: Path | None = None
    audio_file = _text(raw, "audio_file", where, None)
    if audio_file is not None:
        wav = Path(audio_file)
        if not wav.is_absolute() and base_dir is not None:
            wav = base_dir / wav
        try:
            _load_wav_24k(str(wav))
        except (OSError, wave.Error, ValueError) as exc:
            raise ScenarioError(f"{where}.audio_file: {wav}: {exc}") from exc
    return ReplyAudio(
        duration_ms=duration, tone_hz=tone, chirp_to_hz=chirp, amplitude=amplitude,
        wav_path=wav,
    )


def _parse_tool_calls(raw: Mapping[str, Any], where: str) -> tuple[ToolCallSpec, ...]:
    """A turn's calls, from ``tool_call`` (one) or ``tool_calls`` (a list), not both."""
    if "tool_call" in raw and "tool_calls" in raw:
        raise ScenarioError(f"{where}: give tool_call or tool_calls, not both")
    if "tool_call" in raw:
        return (_parse_tool_call(raw["tool_call"], f"{where}.tool_call"),)
    if "tool_calls" not in raw:
        return ()
    raw_calls = raw["tool_calls"]
    if not isinstance(raw_calls, list) or len(raw_calls) > 64:
        raise ScenarioError(f"{where}.tool_calls: must be a list of at most 64 tables")
    return tuple(
        _parse_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(raw_calls)
    )


def _parse_usage(u: Any, where: str) -> Usage:
    if not isinstance(u, dict):
        raise ScenarioError(f"{where}: must be a table")
    _check_keys(u, {"prompt_token_count", "response_token_count"}, where)
    counts = []
    for key in ("prompt_token_count", "response_token_count"):
        v = u.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ScenarioError(f"{where}.{key}: must be a non-negative integer")
        counts.append(v)
    return Usage(prompt_token_count=counts[0], response_token_count=counts[1])


@functools.lru_cache(maxsize=64)
def _render_tone(
    duration_ms: float, tone_hz: float, chirp_to_hz: float | None, amplitude: float
) -> bytes:
    """Synthesize a tone or linear chirp with short fades (no clicks)."""
    n = round(OUTPUT_SAMPLE_RATE * min(max(duration_ms, 0.0), _MAX_AUDIO_MS) / 1000.0)
    if n == 0:
        return b""
    t = np.arange(n, dtype=np.float64) / OUTPUT_SAMPLE_RATE
    f1 = tone_hz if chirp_to_hz is None else chirp_to_hz
    duration_s = n / OUTPUT_SAMPLE_RATE
    # Phase of a linear sweep: 2*pi*(f0*t + (f1-f0)*t^2/(2*T)).
    phase = 2.0 * np.pi * (tone_hz * t + (f1 - tone_hz) * t * t / (2.0 * duration_s))
    signal = np.sin(phase) * amplitude
    fade = min(n // 2, round(OUTPUT_SAMPLE_RATE * _FADE_MS / 1000.0))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        signal[:fade] *= ramp
        signal[n - fade :] *= ramp[::-1]
    pcm = np.clip(np.round(signal * 32767.0), -32768, 32767).astype("<i2")
    return pcm.tobytes()


@functools.lru_cache(maxsize=16)
def _load_wav_24k(path: str) -> bytes:
    """Read a 16-bit WAV, downmix to mono and resample to 24 kHz if needed."""
    return read_wav(path, OUTPUT_SAMPLE_RATE, max_seconds=_MAX_AUDIO_MS / 1000.0)[0]

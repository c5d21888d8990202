"""Sessions of the fake Live API: what outlives a connection, found again by handle.

A session holds the conversation's place in the script, its transcript, and a
turn blocked on tool calls, so a call made on one connection can be answered
on the connection that resumed it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.live_server.records import TurnRecord
from simulator.scenario import Turn

_HANDLES_PER_SESSION = 32
_ANSWERED_CALLS = 1000
_MAX_SESSIONS = 1000


@dataclass
class PendingCall:
    """A function call the fake model made, until it is answered or cancelled."""

    id: str
    name: str
    args: Mapping[str, Any]
    sent_at: float
    cancel_at: float | None
    state: str = "pending"  # pending | answered | cancelled
    response: Any = None
    scheduling: str | None = None


@dataclass
class AwaitingTools:
    """A turn blocked on tool responses; owned by the session, not a socket."""

    turn: Turn
    record: TurnRecord
    calls: dict[str, PendingCall]
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def unresolved(self) -> list[PendingCall]:
        """The calls still waiting for an answer."""
        return [c for c in self.calls.values() if c.state == "pending"]


@dataclass
class SessionState:
    """Server-side state that survives reconnects via resumption handles."""

    id: str
    created_at: float
    next_turn: int = 0
    transcript: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=1000))
    handles: deque[str] = field(default_factory=lambda: deque(maxlen=_HANDLES_PER_SESSION))
    connection_indices: list[int] = field(default_factory=list)
    heard_audio_s: float = 0.0
    video_frames: int = 0
    text_chars: int = 0
    awaiting: AwaitingTools | None = None
    answered_calls: deque[str] = field(default_factory=lambda: deque(maxlen=_ANSWERED_CALLS))
    system_instruction: Any = None
    tools: Any = None

    @property
    def pending_tool_calls(self) -> list[str]:
        """Ids of tool calls still waiting for a response."""
        if self.awaiting is None:
            return []
        return [c.id for c in self.awaiting.unresolved()]


class SessionBook:
    """Every session by id, and the session each live resumption handle resumes."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionState] = {}
        self._handles: dict[str, SessionState] = {}

    def for_handle(self, handle: str) -> SessionState | None:
        """The session a resumption handle would resume, if it is known."""
        return self._handles.get(handle)

    def new(self, in_use: Callable[[], set[str]]) -> SessionState:
        """A fresh session; at the bound, the oldest one no connection uses is forgotten."""
        if len(self.sessions) >= _MAX_SESSIONS:
            busy = in_use()
            for sid in list(self.sessions):
                if sid not in busy:
                    self.forget(self.sessions[sid])
                    break
        session = SessionState(id=secrets.token_hex(8), created_at=time.monotonic())
        self.sessions[session.id] = session
        return session

    def forget(self, session: SessionState) -> None:
        """The session and its handles are gone: resuming it fails from now on."""
        for h in session.handles:
            self._handles.pop(h, None)
        session.handles.clear()
        self.sessions.pop(session.id, None)

    def issue_handle(self, session: SessionState) -> str:
        """A new handle for the session (its oldest one expires at the bound)."""
        handle = secrets.token_urlsafe(24)
        if len(session.handles) == session.handles.maxlen:
            self._handles.pop(session.handles[0], None)
        session.handles.append(handle)
        self._handles[handle] = session
        return handle

"""The Live link: one conversation with the Gemini Live API that outlives any socket.

Reading order: `link` (LiveLink, the supervisor the Agent holds), `sender` and
`receiver` (one connection's traffic), `resumption` (what a session carries
across connections: handle, open calls, GoAway), `uplink` (what waits to go
up), `wire` (SDK types in and out, pure), `events` and `calls` (the values the
Agent and the tools see), `tool_offer`, `failures`, `socket_life`,
`session_record` (the session kept across restarts, in the state directory),
and `socket_door` (the only module that touches google-genai's private socket).

Nothing is imported here: `events` and `calls` stay cheap for the layers that
need only them (google-genai is imported by `link`, `wire` and their parts).
"""

__all__ = [
    "calls",
    "events",
    "failures",
    "link",
    "receiver",
    "resumption",
    "sender",
    "session_record",
    "socket_door",
    "socket_life",
    "tool_offer",
    "uplink",
    "wire",
]

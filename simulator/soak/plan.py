"""What the soak does, decided before it runs: the faults, their order and parameters,
their recovery bounds, and the conversation the fake model follows.

Pure (no sockets, no clock): the same seed gives the same faults in the same order
with the same parameters, so a failing run can be replayed with `--seed`. The
faults come as a shuffled deck (every kind in each deck, process kills rarer), so a
short run still meets every kind and a long one meets each many times.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn

__all__ = [
    "CLOSE_CODES",
    "DEFAULT_BOUNDS",
    "DEFAULT_WEIGHTS",
    "FaultKind",
    "PlannedFault",
    "SoakScript",
    "fault_plan",
]


class FaultKind(enum.Enum):
    """Every fault the injector can fire, named by the part it hits."""

    LIVE_GOAWAY = "live_goaway"  # goAway{timeLeft}, then 1011 if still open
    LIVE_CLOSE = "live_close"  # a close with one of CLOSE_CODES
    LIVE_ABORT = "live_abort"  # TCP reset (the client sees 1006)
    LIVE_QUIET = "live_quiet"  # the server stops sending anything, pongs included
    LIVE_DEAF = "live_deaf"  # the server stops reading but keeps sending (then may drop)
    LIVE_REJECT_RESUME = "live_reject_resume"  # the next resume refused with 1007
    LIVE_SETUP_HANG = "live_setup_hang"  # the next setup never answered
    LIVE_REFUSED = "live_refused"  # the next handshake refused with HTTP 403
    BLE_DISCONNECT = "ble_disconnect"  # the glasses hang up
    BLE_VANISH = "ble_vanish"  # the glasses die, stay away a while, come back
    BLE_MALFORMED = "ble_malformed"  # audio notifications no decoder can use
    BROKER_RESTART = "broker_restart"  # mosquitto stopped and started (SIGTERM)
    BROKER_KILL = "broker_kill"  # mosquitto SIGKILLed and started
    DEVICE_SILENT = "device_silent"  # a device that never confirms a command
    TOOL_CANCEL = "tool_cancel"  # the model cancels a call while it runs
    DAEMON_KILL = "daemon_kill"  # SIGKILL, then start again
    DAEMON_TERM = "daemon_term"  # SIGTERM (must exit 0), then start again


CLOSE_CODES: Final = (1000, 1001, 1007, 1008, 1011, 1013)
"""Live closes of every kind the service is known to send (1007 ends the session)."""

PROCESS_KINDS: Final = frozenset({FaultKind.DAEMON_KILL, FaultKind.DAEMON_TERM})

DEFAULT_WEIGHTS: Final[Mapping[FaultKind, int]] = {
    **{kind: 3 for kind in FaultKind if kind not in PROCESS_KINDS},
    FaultKind.LIVE_CLOSE: 4,  # six codes to go round
    FaultKind.DAEMON_KILL: 1,
    FaultKind.DAEMON_TERM: 1,
}
"""Copies of each kind per deck: a daemon lives through ~24 faults (minutes) between
restarts, long enough for its memory and counts to be judged after warm-up."""

DEFAULT_BOUNDS: Final[Mapping[FaultKind, float]] = {
    # Seconds from the fault (or from the glasses' return) to working again, on a
    # loaded 2-core machine; the soak's configuration scales the daemon's timers
    # down (see rig.daemon_config), so these are a few of those timers plus slack.
    FaultKind.LIVE_GOAWAY: 15.0,
    FaultKind.LIVE_CLOSE: 15.0,
    FaultKind.LIVE_ABORT: 15.0,
    FaultKind.LIVE_QUIET: 20.0,  # the stall timeout first
    FaultKind.LIVE_DEAF: 20.0,  # the stall timeout first
    FaultKind.LIVE_REJECT_RESUME: 15.0,
    FaultKind.LIVE_SETUP_HANG: 20.0,  # the connect timeout first
    FaultKind.LIVE_REFUSED: 20.0,  # the refusal backoff first
    FaultKind.BLE_DISCONNECT: 15.0,
    FaultKind.BLE_VANISH: 15.0,  # after they are back
    FaultKind.BLE_MALFORMED: 10.0,
    FaultKind.BROKER_RESTART: 15.0,
    FaultKind.BROKER_KILL: 15.0,
    FaultKind.DEVICE_SILENT: 12.0,  # from the call to its answer: the call deadline first
    FaultKind.TOOL_CANCEL: 20.0,  # from the call to the next turn completed
    FaultKind.DAEMON_KILL: 30.0,
    FaultKind.DAEMON_TERM: 30.0,
}


@dataclass(frozen=True)
class PlannedFault:
    """One fault to fire: its kind, its parameters and the pause before it."""

    index: int
    kind: FaultKind
    pause: float  # seconds of calm between the previous recovery and this fault
    params: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """`kind` plus its parameters, for the log and the report."""
        if not self.params:
            return self.kind.value
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.kind.value}({args})"


def _params(kind: FaultKind, rng: random.Random) -> dict[str, Any]:
    """The knobs of one fault, drawn from the plan's generator."""
    if kind is FaultKind.LIVE_GOAWAY:
        return {"time_left": round(rng.uniform(0.5, 8.0), 2)}
    if kind is FaultKind.LIVE_CLOSE:
        return {"code": rng.choice(CLOSE_CODES)}
    if kind is FaultKind.LIVE_DEAF:  # half of them end in a TCP reset, as a wedged frontend
        return {"drop_after": rng.choice((None, round(rng.uniform(8.0, 14.0), 1)))}
    if kind is FaultKind.BLE_VANISH:
        return {"away": round(rng.uniform(1.5, 6.0), 2)}
    if kind is FaultKind.BLE_MALFORMED:
        return {"count": rng.randint(1, 5)}
    if kind in (FaultKind.DEVICE_SILENT, FaultKind.TOOL_CANCEL):
        return {"device": rng.choice(CONTROLLED)}
    return {}


def fault_plan(
    seed: int,
    *,
    mean_pause: float = 4.0,
    weights: Mapping[FaultKind, int] | None = None,
) -> Iterator[PlannedFault]:
    """The faults of a run, forever, in a seeded order: shuffled decks of `weights`.

    A deck never starts with a process kill (the previous deck may end with one, so
    two kills could meet), and the pause before each fault is uniform in
    [0.25, 1.75] x `mean_pause`.
    """
    rng = random.Random(seed)
    chosen = dict(DEFAULT_WEIGHTS if weights is None else weights)
    deck_kinds = [kind for kind, n in chosen.items() for _ in range(max(0, n))]
    if not deck_kinds:
        raise ValueError("the fault weights leave nothing to fire")
    index = 0
    while True:
        deck = list(deck_kinds)
        rng.shuffle(deck)
        if deck[0] in PROCESS_KINDS and len(deck) > 1:
            swap = next((i for i, k in enumerate(deck) if k not in PROCESS_KINDS), 0)
            deck[0], deck[swap] = deck[swap], deck[0]
        for kind in deck:
            pause = round(rng.uniform(0.25, 1.75) * mean_pause, 2)
            yield PlannedFault(index, kind, pause, _params(kind, rng))
            index += 1


# -- the conversation -------------------------------------------------------------

CONTROLLED: Final = ("kitchen_light", "living_room_switch", "bedroom_fan")
"""Devices the script switches (not sensitive: no confirmation turn needed)."""

_REPLY = ReplyAudio(duration_ms=600.0, tone_hz=440.0, chirp_to_hz=660.0)


def _control(device: str, action: str, cancel_after_ms: float | None = None) -> Turn:
    words = device.replace("_", " ")
    verb = "on" if action == "turn_on" else "off"
    return Turn(
        user=f"Turn {verb} the {words}.",
        reply=f"The {words} is {verb}.",
        audio=_REPLY,
        tool_calls=(ToolCallSpec(
            name="control_device",
            args={"device_id": f"sim-{device}", "action": action},
            cancel_after_ms=cancel_after_ms,
        ),),
        cancelled_reply="OK, never mind.",
    )


def _cycle() -> tuple[Turn, ...]:
    status = Turn(user="How are you doing?", reply="{status}", audio=_REPLY,
                  tool_calls=(ToolCallSpec(name="agent_status"),))
    chat = Turn(user="Nice weather today.", reply="It is.", audio=_REPLY)
    turns: list[Turn] = []
    for action in ("turn_on", "turn_off"):
        for device in CONTROLLED:
            turns.append(_control(device, action))
        turns.append(status if action == "turn_on" else chat)
    return tuple(turns)


class SoakScript(Scenario):
    """The fake model's side: a looping cycle of device commands and status questions.

    The injector may ask for one special turn (`request`): a command on a chosen
    device, optionally cancelled by the model `cancel_after_ms` after it was made.
    The next turn any session starts takes it; the loop then goes on where it was.
    """

    def __init__(self) -> None:
        super().__init__(turns=_cycle(), loop=True)
        self._special: deque[Turn] = deque()  # the frozen base guards its own fields only
        self._served = 0

    def request(self, device: str, *, cancel_after_ms: float | None = None,
                action: str = "turn_on") -> None:
        """The next turn commands `device`, and the model cancels it if asked to."""
        self._special.append(_control(device, action, cancel_after_ms))

    @property
    def turns_served(self) -> int:
        """How many turns the server has taken from the script."""
        return self._served

    def turn_at(self, index: int) -> Turn | None:
        """The special turn if one waits, else the cycle's turn for `index`."""
        self._served += 1
        if self._special:
            return self._special.popleft()
        return super().turn_at(index)

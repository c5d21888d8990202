"""`edge-agent demo --scene tasks`: a background task in the middle of a conversation.

The user asks for a long piece of research; the scripted Live model calls
`start_task`, the daemon answers "started" at once and the conversation goes on
(the kitchen light). The fake research agent on the fake Interactions service
(the fake Live server's port, as the real endpoint) finishes only after that
second exchange; the daemon's poller sees it, waits for a quiet moment and puts
the spoken summary into the conversation, and the model says it. The transcript
shows each step: `task` lines are the service's side and the delivery.

The scene always runs on the fake servers and the virtual glasses (a scripted
model is what makes the steps certain), turns `[interactions]` on for itself,
keeps its task database in a temporary directory, and exits 0 once the summary
was said (1 if it never was).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from daemon.app import EXIT_OK, serve
from daemon.config import Settings
from daemon.transcript import TranscriptPrinter
from simulator.interactions import FakeInteractions, TaskScript
from simulator.live_server import FakeLiveServer
from simulator.probe import stamped_wav
from simulator.scenario import ReplyAudio, Scenario, ToolCallSpec, Turn

__all__ = ["SUMMARY", "TASK_NAME", "run_scene", "tasks_scenario"]

TASK_NAME = "heat pump research"
SUMMARY = ("For a 1930s house, an air-to-water heat pump of about eight kilowatts fits best, "
           "with larger radiators in the coldest rooms. Insulate the loft and seal draughts "
           "first; then it should heat the house for about a third of the cost of gas.")
ANSWER = {
    "spoken_summary": SUMMARY,
    "key_points": ["air-to-water, about 8 kW for a 1930s semi",
                   "larger radiators or underfloor heating in the coldest rooms",
                   "loft insulation and draught-proofing first"],
    "sources": [{"title": "Heat pumps in older homes (demo source)",
                 "url": "https://example.org/heat-pumps-older-homes"}],
}
# The utterances the virtual glasses speak: (speech?, seconds). The second one
# comes while the task is still running on the service.
SPEECH = ((False, 0.5), (True, 1.2), (False, 3.0), (True, 1.2), (False, 1.0))
DELIVERY_BOUND = 90.0  # seconds after the glasses went silent: then the scene failed


def tasks_scenario() -> Scenario:
    """The scripted model: start the task, turn on the light, say the delivered summary."""
    return Scenario(turns=(
        Turn(user="Research the best heat pump for a 1930s house; take your time.",
             reply="I've started the {result[task]} in the background and will tell you "
                   "when it's done.",
             audio=ReplyAudio(duration_ms=1200.0, tone_hz=392.0),
             tool_calls=(ToolCallSpec(name="start_task", args={
                 "request": "research the best heat pump for a 1930s house",
                 "name": TASK_NAME}),)),
        Turn(user="Meanwhile, turn on the kitchen light.",
             reply="Done, the kitchen light is on.",
             audio=ReplyAudio(duration_ms=1000.0, tone_hz=440.0),
             tool_calls=(ToolCallSpec(name="control_device", args={
                 "device_id": "sim-kitchen_light", "action": "turn_on"}),)),
        # The delivered result arrives as text (clientContent): no user words to show.
        Turn(user="", reply=f"The {TASK_NAME} is done. {SUMMARY}",
             audio=ReplyAudio(duration_ms=2500.0, tone_hz=523.25)),
    ))


class ScenePrinter(TranscriptPrinter):
    """The transcript, plus `task` lines for what happens off the Live socket."""

    def __init__(self) -> None:
        super().__init__()
        self._new_line = asyncio.Event()

    def note(self, text: str) -> None:
        """One line about the task, in the transcript's timeline."""
        self._print("task", text)

    def _print(self, who: str, text: str) -> None:
        super()._print(who, text)
        self._new_line.set()

    async def printed(self, part: str, within: float) -> None:
        """Wait (bounded) until a line with `part` was printed."""
        async with asyncio.timeout(within):
            while not any(part in line for line in self.lines):
                self._new_line.clear()
                await self._new_line.wait()


def run_scene(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scene (blocking); exit code 0 once the summary was said."""
    from daemon.app import run_until_signal

    with _no_systemd_state():
        return run_until_signal(_scene(args, settings))


@contextlib.contextmanager
def _no_systemd_state() -> Iterator[None]:
    """The scene's task database is its own, even under a unit with a StateDirectory."""
    saved = os.environ.pop("STATE_DIRECTORY", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["STATE_DIRECTORY"] = saved


async def _scene(args: argparse.Namespace, settings: Settings) -> int:
    from simulator.cli import DEMO_KEY, _demo_glasses
    from simulator.home import demo_home

    printer = ScenePrinter()
    service = FakeInteractions(api_key=DEMO_KEY,
                               default_script=TaskScript(duration_s=None, answer=ANSWER))
    output = Path(args.output) if args.output else Path("out/demo-tasks-reply.wav")
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-agent-demo-")))
        live_server = await stack.enter_async_context(
            FakeLiveServer(api_key=DEMO_KEY, scenario=tasks_scenario(), http_router=service))
        print(f"edge-agent demo: fake Live server and fake Interactions service at "
              f"{live_server.base_url}", flush=True)
        mqtt = await stack.enter_async_context(demo_home(settings.mqtt))
        print(f"edge-agent demo: home on mqtt://{mqtt.host}:{mqtt.port}", flush=True)
        glasses_done = asyncio.Event()
        profile = args.profile or settings.peripheral.ble.profile
        backend, has_speaker = await _demo_glasses(stack, profile, _speech_wav(tmp / "you.wav"),
                                                   output, glasses_done)
        print(f"edge-agent demo: virtual {profile} glasses on a virtual radio; "
              f"task database in {tmp}", flush=True)
        settings = _scene_settings(settings, live_server, mqtt, backend, tmp)
        input_done = asyncio.Event()
        scene = _Scene(printer, service, live_server)
        async with asyncio.TaskGroup() as tg:
            watch = tg.create_task(scene.follow(glasses_done, input_done), name="scene")
            code = await serve(settings, SecretStr(DEMO_KEY), exit_when_idle=2.0,
                               printer=printer, input_done=input_done,
                               speaker_wav=None if has_speaker else output)
            watch.cancel()
    print(f"edge-agent demo: the model's audio is in {output}", flush=True)
    if code != EXIT_OK:
        return code
    if not scene.said:
        print("edge-agent demo: the task's summary was never said", flush=True)
        return 1
    return EXIT_OK


def _scene_settings(settings: Settings, server: FakeLiveServer, mqtt: Any, backend: str,
                    tmp: Path) -> Settings:
    live = settings.live.model_copy(
        update={"base_url": server.base_url, "ca_file": Path(server.ca_pem_path)})
    # The Interactions endpoint follows the Live link's (the fake serves both).
    interactions = settings.interactions.model_copy(update={
        "enabled": True, "fallback": False, "base_url": None, "ca_file": None,
        "api_version": None, "poll_initial": 0.5, "poll_max": 1.0, "deliver_quiet": 1.0})
    ble = settings.peripheral.ble.model_copy(update={"backend": backend})
    peripheral = settings.peripheral.model_copy(update={"kind": "ble", "ble": ble})
    ops = settings.ops.model_copy(update={"state_dir": tmp})
    return settings.model_copy(update={"live": live, "interactions": interactions, "mqtt": mqtt,
                                       "peripheral": peripheral, "ops": ops})


class _Scene:
    """Drives the service's side and prints it: the task ends after the second exchange."""

    def __init__(self, printer: ScenePrinter, service: FakeInteractions,
                 live: FakeLiveServer) -> None:
        self.printer = printer
        self.service = service
        self.live = live
        self.said = False
        self._said = asyncio.Event()
        self._polled = asyncio.Event()

    def _turn_done(self, reason: str) -> bool:
        return any(t.turn_complete_at is not None and t.utterance_reason == reason
                   for t in self.live.turns)

    async def follow(self, glasses_done: asyncio.Event, input_done: asyncio.Event) -> None:
        """Each step in order. The daemon's input ends (and the demo may stop when all is
        quiet) only once the result waits for delivery: in the demo, the daemon counts
        itself busy until its input ended, so the quiet moment comes after that."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._steps())
                await glasses_done.wait()
                async with asyncio.timeout(DELIVERY_BOUND):
                    await self._polled.wait()
                input_done.set()
                async with asyncio.timeout(DELIVERY_BOUND):
                    await self._said.wait()
        except* TimeoutError:
            pass
        finally:
            input_done.set()

    async def _steps(self) -> None:
        service, note = self.service, self.printer.note
        await service.wait_until(lambda: bool(service.interactions), within=120)
        (iid, interaction), *_ = service.interactions.items()
        who = interaction.body.get("agent") or interaction.body.get("model")
        note(f"service: interaction {iid} runs in the background ({who})")
        await self.printer.printed("kitchen light is on", within=120)
        await service.finish(iid)
        finished = time.monotonic()
        note(f"service: the {TASK_NAME} finished")
        await service.wait_until(lambda: any(r.method == "GET" and r.at >= finished
                                             and r.status == 200 for r in service.requests),
                                 within=60)
        note("daemon: polled it, result valid; waiting for a quiet moment")
        self._polled.set()
        await self.live.wait_until(lambda: bool(self._delivered()), timeout=60)
        note(f"daemon -> conversation: {self._delivered()[0]}")
        await self.live.wait_until(lambda: self._turn_done("client_content"), timeout=60)
        self.said = True
        self._said.set()

    def _delivered(self) -> list[str]:
        out: list[str] = []
        for conn in self.live.connections:
            for m in conn.messages:
                if m.kind == "client_content":
                    out.append(_text_of(m.message) or json.dumps(m.message)[:200])
        return out


def _text_of(turns: Any) -> str:
    """The text parts of a clientContent's turns."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(turns)
    return " ".join(found)


def _speech_wav(path: Path) -> Path:
    """What the user says (tones a VAD hears as speech), as a 16 kHz WAV."""
    return stamped_wav(path, SPEECH)

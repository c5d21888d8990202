"""The world the soaked daemon lives in, and the observers that watch it.

The fake Live server (TLS, the soak script), a private mosquitto with the virtual
home on it, the virtual radio with one pair of virtual glasses streaming a looped
speech WAV, an MQTT monitor on every command topic, and the daemon as a child
process (daemon_proc.py) with a generated configuration. Everything but the daemon
and mosquitto runs in this process, so the injector reaches every part directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from daemon.config import MqttSettings
from daemon.home.mqtt import MqttConnection, MqttMessage
from daemon.media.wav import read_wav
from simulator.broker import PrivateBroker, free_port
from simulator.glasses import VirtualGlasses
from simulator.home import VirtualHome, default_devices
from simulator.live_server import FakeLiveServer
from simulator.radio import VirtualRadio
from simulator.soak.daemon_proc import SOAK_KEY, DaemonProcess
from simulator.soak.plan import SoakScript

__all__ = ["CommandMonitor", "GlassesHost", "Rig", "daemon_config"]

PROFILE = "omi"
SUPERVISION_TIMEOUT = 1.0  # the radio ends a vanished device's links after this


def daemon_config(rig: Rig) -> str:
    """The daemon's TOML: the real defaults, but its timers scaled to the fault rate.

    Faults come every few seconds instead of every few days, so a backoff that only
    resets after a minute of calm (live.stable_after) would never reset, and a stall
    detector that waits 45 s would see one stall per minute. The soak shortens them
    so every fault is recovered from the way it would be in life, only sooner.
    """
    server, broker = rig.server, rig.broker
    return f"""\
[live]
base_url = "{server.base_url}"
ca_file = "{server.ca_pem_path}"
stall_timeout = 4.0
ping_interval = 1.0
connect_timeout = 4.0
backoff_initial = 0.2
backoff_max = 2.0
stable_after = 3.0
refused_backoff_initial = 1.0
refused_backoff_max = 2.0

[peripheral]
kind = "ble"

[peripheral.ble]
profile = "{PROFILE}"
backend = "virtual:{rig.radio.transport(1)}"
backoff_initial = 0.2
backoff_max = 2.0
scan_timeout = 3.0

[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "edge-agent-soak"

[tools]
deadline = 4.0

[ops]
health_port = {rig.health_port}
state_dir = "{rig.workdir / 'state'}"
"""


@dataclass
class GlassesEvent:
    """Something the glasses reported, with the audio frames sent so far."""

    t: float
    event: str
    frames: int  # audio frames the glasses had sent (all instances) at that moment


class GlassesHost:
    """The glasses across their lives: a vanished pair is a new instance on return."""

    def __init__(self, transport: str, pcm: bytes) -> None:
        self.transport = transport
        self.pcm = pcm
        self.events: list[GlassesEvent] = []
        self.malformed_sent = 0
        self.past_frames = 0  # audio frames of instances that are gone
        self._glasses: VirtualGlasses | None = None
        self._changed = asyncio.Event()

    @property
    def glasses(self) -> VirtualGlasses | None:
        """The current instance (None while vanished)."""
        return self._glasses

    def frames(self) -> int:
        """Audio frames sent by every instance so far."""
        now = self._glasses.stats.audio_frames if self._glasses is not None else 0
        return self.past_frames + now

    def _on_event(self, event: dict[str, Any]) -> None:
        name = str(event.get("event", ""))
        if name in ("connected", "disconnected", "streaming", "advertising", "vanished"):
            self.events.append(GlassesEvent(time.monotonic(), name, self.frames()))
            self._changed.set()

    async def start(self) -> None:
        """Power on a new instance (advertising when this returns)."""
        glasses = VirtualGlasses(PROFILE, self.transport, pcm=self.pcm, loop=True,
                                 on_event=self._on_event)
        await glasses.__aenter__()
        self._glasses = glasses

    async def vanish(self) -> None:
        """The glasses die: their radio goes silent and the instance stops."""
        glasses = self._glasses
        if glasses is None:
            return
        await glasses.vanish()  # its event still counts this instance's frames
        await glasses.__aexit__(None, None, None)
        self.past_frames += glasses.stats.audio_frames
        self._glasses = None

    async def disconnect(self) -> None:
        """The glasses hang up the current connection."""
        if self._glasses is not None:
            await self._glasses.disconnect()

    async def malformed(self, count: int) -> int:
        """Send `count` unusable audio notifications; returns how many went out."""
        glasses = self._glasses
        if glasses is None or not glasses.connected:
            return 0
        before = glasses.stats.malformed_sent
        for _ in range(count):
            await glasses.send_malformed()
        sent = glasses.stats.malformed_sent - before
        self.malformed_sent += sent
        return sent

    def streaming_since(self, t: float) -> float | None:
        """When the glasses began streaming to a central after `t`, if they have."""
        return next((e.t for e in self.events if e.event == "streaming" and e.t > t), None)

    async def wait(self, predicate: Callable[[], object], timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until `predicate()` holds, re-checked on every event; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return bool(predicate())
        return True

    async def close(self) -> None:
        """Stop the current instance."""
        glasses = self._glasses
        if glasses is not None:
            await glasses.__aexit__(None, None, None)
            self.past_frames += glasses.stats.audio_frames
            self._glasses = None


@dataclass
class CommandMonitor:
    """Every device command the broker passed on, with when: QoS 0, so nothing twice."""

    commands: list[tuple[float, str, str]] = field(default_factory=list)


async def _monitor(broker: PrivateBroker, topics: list[str],
                   monitor: CommandMonitor, stack: contextlib.AsyncExitStack) -> None:
    conn = MqttConnection(
        MqttSettings(host=broker.host, port=broker.port, client_id="edge-soak-monitor"),
        availability_topic="", clean_session=True, backoff_initial=0.05, backoff_max=0.5,
        stable_after=1.0,
    )
    await stack.enter_async_context(conn)

    def seen(msg: MqttMessage) -> None:
        monitor.commands.append((time.monotonic(), msg.topic, msg.text()))

    subs = [conn.subscribe(t, seen, qos=0) for t in topics]
    if not await conn.wait_subscribed(*subs, timeout=10):
        raise ConnectionError("the soak's command monitor could not subscribe")


class Rig:
    """Everything but the injector: ``async with Rig(workdir, wav) as rig``."""

    def __init__(self, workdir: Path, wav: Path) -> None:
        self.workdir = workdir
        self.wav = wav
        self.script = SoakScript()
        self.health_port = free_port()
        self.server: FakeLiveServer
        self.broker: PrivateBroker
        self.home: VirtualHome
        self.radio: VirtualRadio
        self.glasses: GlassesHost
        self.monitor = CommandMonitor()
        self.daemon: DaemonProcess
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        stack = self._stack
        (self.workdir / "state").mkdir(parents=True, exist_ok=True)
        self.server = await stack.enter_async_context(FakeLiveServer(
            api_key=SOAK_KEY, scenario=self.script, cert_dir=self.workdir / "live",
            record_limit=20_000,
        ))
        # Its own directory: run as root, mosquitto drops to its user, which cannot
        # reach a workdir under pytest's 0700 tmp_path, so it would save nothing and a
        # restart would lose every retained discovery config. Its log is kept here.
        self.broker = await stack.enter_async_context(PrivateBroker())
        stack.callback(self._keep_broker_log)
        devices = default_devices()
        self.home = await stack.enter_async_context(
            VirtualHome(self.broker.host, self.broker.port, devices))
        topics = sorted({t for d in devices for t in d.command_topics()})
        await _monitor(self.broker, topics, self.monitor, stack)
        self.radio = await stack.enter_async_context(
            VirtualRadio(participants=2, supervision_timeout=SUPERVISION_TIMEOUT))
        pcm = read_wav(self.wav, 16_000)[0]
        self.glasses = GlassesHost(self.radio.transport(0), pcm)
        stack.push_async_callback(self.glasses.close)
        await self.glasses.start()
        config = self.workdir / "edge-agent.toml"
        config.write_text(daemon_config(self))
        self.daemon = DaemonProcess(self.workdir, config, self.health_port,
                                    self.glasses.frames)
        stack.push_async_callback(self.daemon.close)

    def _keep_broker_log(self) -> None:
        (self.workdir / "mosquitto.log").write_text(self.broker.log_text())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

"""Push-to-talk from Home Assistant's switch when the broker link fails: a press it
holds is let go once nothing could send the release (as the key and GPIO sources let go
when their device goes away), and a press the broker queued while the daemon was away
does not open the microphone on reconnect.

The real home service and MQTT connection on a private mosquitto behind a relay the
test cuts; the kiosk is a stand-in holding the real `PushToTalk` (the microphone side
is tests/integration/test_kiosk_ptt_mqtt.py). Review of 2026-12-06.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from daemon.audio.ptt import PushToTalk
from daemon.config import KioskPeripheralSettings, PeripheralSettings
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry
from tests.support.home import CLIENT_ID, home_rig
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(60)]
BASE = f"edge-agent/{CLIENT_ID}/push_to_talk"


class Kiosk:
    """The talk button of a kiosk, without its sound card."""

    kind = "kiosk"

    def __init__(self) -> None:
        self.ptt = PushToTalk(60.0)

    def push_to_talk(self, pressed: bool, source: str = "mqtt") -> None:
        self.ptt.set(source, pressed, time.monotonic())

    def status(self) -> dict[str, Any]:
        return {"kind": "kiosk", "assistant": "listening" if self.ptt.pressed else "idle",
                "push_to_talk": self.ptt.pressed}


class FakeAgent:
    """What the home service asks of the Agent."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.registry = ToolRegistry()
        self.peripheral = Kiosk()

    def status(self) -> dict[str, Any]:
        return {"peripheral": self.peripheral.status(), "microphone_muted": False}

    def set_mic_muted(self, muted: bool) -> None: ...
    def set_camera_enabled(self, enabled: bool) -> None: ...
    def add_observer(self, observer: Any) -> None: ...
    def taps_possible(self) -> bool:
        return False

    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_ptt_is_let_go_when_the_mqtt_link_is_lost() -> None:
    ks = KioskPeripheralSettings(echo="off", vad="off", listen="push_to_talk",
                                 push_to_talk_mqtt=True, earcons=False)
    agent = FakeAgent()
    async with home_rig(with_home=False, proxy=True, agent=agent,
                        peripheral=PeripheralSettings(kind="kiosk", kiosk=ks)) as rig:
        conn = rig.service.conn
        assert conn is not None
        await rig.watcher.publish(f"{BASE}/set", "ON")
        await eventually(lambda: agent.peripheral.ptt.pressed, 10)
        rig.proxy.accepting = False
        rig.proxy.cut()  # the broker (or the daemon's network) is gone
        await eventually(lambda: not conn.connected, 10)
        await asyncio.sleep(2.0)
        assert not agent.peripheral.ptt.pressed, (
            "the kiosk still listens with its only release path (MQTT) gone")


async def test_a_press_queued_while_offline_does_not_open_the_mic_on_reconnect() -> None:
    """Not retained, but stale all the same: a QoS 1 ON the broker kept for the
    daemon's persistent session while it was away is applied on reconnect."""
    ks = KioskPeripheralSettings(echo="off", vad="off", listen="push_to_talk",
                                 push_to_talk_mqtt=True, earcons=False)
    agent = FakeAgent()
    async with home_rig(with_home=False, proxy=True, agent=agent,
                        peripheral=PeripheralSettings(kind="kiosk", kiosk=ks)) as rig:
        conn = rig.service.conn
        assert conn is not None
        await asyncio.sleep(0.5)
        rig.proxy.accepting = False
        rig.proxy.cut()
        await eventually(lambda: not conn.connected, 10)
        await asyncio.sleep(1.0)
        await rig.watcher.publish(f"{BASE}/set", "ON")  # while the daemon is away
        connects = conn.stats.connects
        await asyncio.sleep(1.0)
        rig.proxy.accepting = True
        await eventually(lambda: conn.stats.connects > connects and conn.connected, 10)
        await asyncio.sleep(1.5)
        assert not agent.peripheral.ptt.pressed, "a stale queued ON opened the microphone"


async def test_a_press_from_before_a_short_blip_is_let_go() -> None:
    """The link drops and is back within the service's one-second watch: the release
    sent meanwhile is lost (QoS 0), so the press, tied to the connection it came on,
    is let go at the next watch rather than at the hold limit."""
    ks = KioskPeripheralSettings(echo="off", vad="off", listen="push_to_talk",
                                 push_to_talk_mqtt=True, earcons=False)
    agent = FakeAgent()
    async with home_rig(with_home=False, proxy=True, agent=agent,
                        peripheral=PeripheralSettings(kind="kiosk", kiosk=ks)) as rig:
        service, conn = rig.service, rig.service.conn
        assert conn is not None
        watched = asyncio.Event()
        watch = service._watch_link  # noqa: SLF001 - to time the blip between two watches

        def spy() -> None:
            watched.set()
            watch()

        service._watch_link = spy  # type: ignore[method-assign]  # noqa: SLF001
        await rig.watcher.publish(f"{BASE}/set", "ON")
        await eventually(lambda: agent.peripheral.ptt.pressed, 10)
        watched.clear()
        await watched.wait()  # just after a watch: the blip fits before the next one
        connects = conn.stats.connects
        rig.proxy.accepting = False
        rig.proxy.cut()
        await eventually(lambda: not conn.connected, 5)
        await rig.watcher.publish(f"{BASE}/set", "OFF")  # the user let go meanwhile: lost
        rig.proxy.accepting = True
        await eventually(lambda: conn.stats.connects > connects and conn.connected, 10)
        await eventually(lambda: not agent.peripheral.ptt.pressed, 5)
        assert agent.peripheral.ptt.stats.stray_releases == 0

"""Push-to-talk from Home Assistant's "Push to talk" switch, end to end: a real
mosquitto, the real home service and Agent, the real kiosk on a virtual sound card
through PyAudio. The microphone reaches the link only while the switch is ON; OFF
ends the utterance; the switch's state follows the button."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from daemon.agent import Agent
from daemon.config import KioskPeripheralSettings, PeripheralSettings
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry
from simulator.home import default_devices
from tests.support.home import CLIENT_ID, FakeLink, Rig, home_rig
from tests.support.pulse import virtual_sound_card
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

BASE = f"edge-agent/{CLIENT_ID}/push_to_talk"


def switch_state(rig: Rig) -> str | None:
    texts = [m.text() for m in rig.watcher.messages if m.topic == BASE]
    return texts[-1] if texts else None


def seconds(link: FakeLink) -> float:
    return sum(c.duration for c in link.audio)


async def test_the_home_assistant_switch_opens_and_closes_the_microphone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyaudio")
    from daemon.peripherals.kiosk import KioskPeripheral

    kiosk_settings = KioskPeripheralSettings(
        echo="off", vad="off", listen="push_to_talk", push_to_talk_mqtt=True,
        earcons=False, hangover_ms=200,
    )
    with virtual_sound_card(tmp_path / "pulse") as card:
        for key, value in card.env.items():
            monkeypatch.setenv(key, value)
        kiosk = KioskPeripheral("pulse", "pulse", block_ms=20, settings=kiosk_settings)
        link = FakeLink()
        agent = Agent(cast(Any, link), kiosk, ToolRegistry(), Metrics())
        async with home_rig(default_devices()[:1], agent=agent,
                            peripheral=PeripheralSettings(kind="kiosk",
                                                          kiosk=kiosk_settings)) as rig:
            config = [m for m in rig.watcher.messages
                      if m.topic.endswith(f"/{CLIENT_ID}/push_to_talk/config")]
            assert config, "the switch was not announced to Home Assistant"
            await eventually(lambda: kiosk.status()["state"] == "listening", 15)
            await asyncio.sleep(1.0)  # the microphone runs, the button is up
            assert seconds(link) == 0 and switch_state(rig) in (None, "OFF")

            await rig.watcher.publish(f"{BASE}/set", "ON")
            await eventually(lambda: seconds(link) >= 1.0, 15)
            assert kiosk.status()["push_to_talk"] is True
            await eventually(lambda: switch_state(rig) == "ON", 10)

            await rig.watcher.publish(f"{BASE}/set", "OFF")
            await eventually(lambda: link.stream_ends >= 1, 10)  # the utterance ended
            sent = seconds(link)
            await asyncio.sleep(1.0)
            assert seconds(link) == sent  # nothing after the release
            assert kiosk.status()["push_to_talk"] is False
            assert kiosk.status()["push_to_talk_counts"]["presses"] == 1
            await eventually(lambda: switch_state(rig) == "OFF", 10)

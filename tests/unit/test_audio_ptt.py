"""Push-to-talk: one button from many sources (key, GPIO, MQTT, tap), and debouncing."""

from __future__ import annotations

import numpy as np

from daemon.audio.frontend import FRAME, FrontEnd, FrontEndOptions
from daemon.audio.ptt import Debounce, PushToTalk
from daemon.audio.reference import FarEndTimeline
from daemon.config import KioskPeripheralSettings, MqttSettings, PeripheralSettings, Settings
from daemon.home.mqtt import MqttMessage
from daemon.home.service import HomeService
from daemon.ops.metrics import Metrics
from daemon.tools.registry import ToolRegistry


def test_the_button_is_down_while_any_source_holds_it() -> None:
    ptt = PushToTalk()
    assert ptt.press("gpio", 0.0) is True
    assert ptt.press("mqtt", 0.1) is None  # already down
    assert ptt.release("gpio", 0.2) is None  # mqtt still holds it
    assert ptt.pressed and ptt.sources == ("mqtt",)
    assert ptt.release("mqtt", 0.3) is False
    assert (ptt.stats.presses, ptt.stats.releases) == (1, 1)


def test_a_repeated_press_or_a_stray_release_changes_nothing() -> None:
    ptt = PushToTalk()
    assert ptt.release("key", 0.0) is None
    assert ptt.stats.stray_releases == 1
    assert ptt.press("key", 0.1) is True
    assert ptt.press("key", 0.2) is None  # key repeat
    assert ptt.set("key", False, 0.3) is False
    assert ptt.set("key", False, 0.4) is None


def test_a_source_without_release_toggles() -> None:
    ptt = PushToTalk()
    assert ptt.toggle("tap", 0.0) is True
    assert ptt.toggle("tap", 2.0) is False
    assert ptt.stats.presses == 1


def test_a_lost_release_is_let_go_after_max_hold() -> None:
    ptt = PushToTalk(max_hold_s=10.0)
    ptt.press("mqtt", 0.0)
    ptt.press("gpio", 5.0)
    assert ptt.tick(9.9) is None
    assert ptt.tick(10.0) is None  # mqtt let go, gpio still holds
    assert ptt.sources == ("gpio",) and ptt.stats.timeouts == 1
    assert ptt.tick(15.0) is False
    assert ptt.stats.timeouts == 2 and not ptt.pressed


def test_bounces_are_not_presses() -> None:
    d = Debounce(0.03)  # active low: 0 = pressed
    # contact bounce for 6 ms, then held
    for k, level in enumerate([0, 1, 0, 1, 0]):
        d.edge(level, 1.0 + 0.0015 * k)
    assert d.poll(1.01) is None  # not yet settled
    assert d.due is not None and abs(d.due - (1.006 + 0.03)) < 1e-9
    assert d.poll(1.036) is True
    assert d.poll(1.5) is None  # no change
    assert d.bounces >= 1
    # a 10 ms glitch while held is ignored
    d.edge(1, 2.0)
    d.edge(0, 2.01)
    assert d.poll(2.05) is None and d.stable
    # the release
    d.edge(1, 3.0)
    assert d.poll(3.02) is None
    assert d.poll(3.03) is False
    assert d.due is None


def test_an_active_high_button() -> None:
    d = Debounce(0.02, active_low=False)
    d.edge(1, 0.0)
    assert d.poll(0.02) is True
    d.edge(0, 1.0)
    assert d.poll(1.02) is False


def test_in_push_to_talk_mode_only_the_button_opens_the_uplink() -> None:
    """The front end sends while the button is down (pre-roll and hangover around it)."""
    fe = FrontEnd(FrontEndOptions(echo="off", listen="push_to_talk", preroll_ms=100,
                                  hangover_ms=200), canceller=None, vad=None,
                  timeline=FarEndTimeline())
    block = (np.sin(np.arange(FRAME * 2) / 5) * 3000).astype(np.int16)  # loud, 20 ms

    def sent(t0: float, n: int) -> int:
        return sum(len(fe.process(block, t0 + 0.02 * k, playing=False).send)
                   for k in range(n))

    assert sent(0.0, 50) == 0  # talking, not pressed: nothing goes up
    fe.listen.press(True)
    assert sent(1.0, 50) > 0
    fe.listen.press(False)
    sent(2.0, 20)  # the hangover runs out
    assert sent(2.4, 50) == 0


class KioskLike:
    """Records what the home service tells the kiosk's talk button."""

    def __init__(self) -> None:
        self.presses: list[tuple[bool, str]] = []

    def push_to_talk(self, pressed: bool, source: str = "mqtt") -> None:
        self.presses.append((pressed, source))

    def toggle_talk(self, source: str) -> None:
        self.presses.append((not self.presses[-1][0] if self.presses else True, source))


class AgentLike:
    def __init__(self) -> None:
        self.peripheral = KioskLike()

    def status(self) -> dict[str, object]:
        return {"peripheral": {"kind": "kiosk", "assistant": "idle", "push_to_talk": False}}

    def set_mic_muted(self, muted: bool) -> None:
        pass

    def set_camera_enabled(self, enabled: bool) -> None:
        pass

    def add_observer(self, observer: object) -> None:
        pass

    def taps_possible(self) -> bool:
        return False


def kiosk_settings(**kiosk: object) -> Settings:
    return Settings(mqtt=MqttSettings(client_id="kiosk-1"),
                    peripheral=PeripheralSettings(kind="kiosk",
                                                  kiosk=KioskPeripheralSettings(**kiosk)))


def test_home_assistant_gets_a_push_to_talk_switch_when_opted_in() -> None:
    agent = AgentLike()
    service = HomeService(kiosk_settings(listen="push_to_talk", push_to_talk_mqtt=True),
                          ToolRegistry(), Metrics(), agent)  # type: ignore[arg-type]
    own = service.own_device
    switch = next(e for e in own.entities if e.object_id == "push_to_talk")
    config = own.discovery_config(switch)
    assert switch.component == "switch"
    assert config["command_topic"] == "edge-agent/kiosk-1/push_to_talk/set"
    assert own.entity_states()["push_to_talk"] == "OFF"
    topic = own.command_topic(switch)
    own._on_command(switch, MqttMessage(topic, b"ON"))  # noqa: SLF001
    own._on_command(switch, MqttMessage(topic, b"ON", retain=True))  # noqa: SLF001 stale
    own._on_command(switch, MqttMessage(topic, b"off"))  # noqa: SLF001
    assert agent.peripheral.presses == [(True, "mqtt"), (False, "mqtt")]


def test_no_push_to_talk_switch_without_the_opt_in() -> None:
    for kiosk in ({"listen": "push_to_talk"}, {"push_to_talk_mqtt": True}):
        service = HomeService(kiosk_settings(**kiosk), ToolRegistry(), Metrics(),
                              AgentLike())  # type: ignore[arg-type]
        assert not any(e.object_id == "push_to_talk" for e in service.own_device.entities)


def test_the_configured_sources_are_chosen_and_gpio_lines_parsed() -> None:
    from daemon.peripherals.ptt_sources import parse_gpio, sources

    kiosk = AgentLike().peripheral
    assert sources(KioskPeripheralSettings(push_to_talk_key="terminal"), kiosk) == []  # not ptt
    chosen = sources(KioskPeripheralSettings(listen="push_to_talk", push_to_talk_key="terminal",
                                             push_to_talk_gpio="gpiochip0:17"), kiosk)
    assert len(chosen) == 2
    for make in chosen:  # coroutine functions; nothing opened until awaited
        make().close()
    assert parse_gpio("gpiochip0:17") == ("/dev/gpiochip0", 17, True)
    assert parse_gpio("/dev/gpiochip2:4:active_high") == ("/dev/gpiochip2", 4, False)

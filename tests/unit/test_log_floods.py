"""Lines a peer can provoke are written seldom, with the count, and every one is counted.

The broker, the Live server and the glasses can repeat a bad message for months;
a line for each would fill the SD card (daemon.ops.lograte).
"""

from __future__ import annotations

import logging

import aiomqtt
import pytest

from daemon.home.inventory import Inventory
from daemon.home.mqtt.intake import counting_queue
from daemon.home.mqtt.messages import MqttStats
from daemon.ops.lograte import LineBudget, seldom

pytestmark = pytest.mark.timeout(20)


def test_seldom_is_the_powers_of_two() -> None:
    assert [n for n in range(0, 70) if seldom(n)] == [1, 2, 4, 8, 16, 32, 64]


def test_a_line_budget_refills_each_period_and_says_what_it_held_back() -> None:
    now = [0.0]
    budget = LineBudget(burst=3, period=60.0, clock=lambda: now[0])
    assert [budget.take() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 59.9
    assert budget.take() is None
    now[0] = 60.0
    assert budget.take() == 3  # written now, mentioning the three held back
    assert budget.take() == 0
    assert budget.suppressed == 3


@pytest.mark.parametrize("rotate", [False, True], ids=["one-topic", "rotating-topics"])
def test_bad_discovery_configs_are_counted_each_and_logged_a_few_times(
    rotate: bool, caplog: pytest.LogCaptureFixture
) -> None:
    inv = Inventory()
    bad = ["{not json", "[1, 2]"]
    with caplog.at_level(logging.INFO):
        for i in range(2000):
            topic = f"homeassistant/switch/x{i if rotate else 0}/config"
            inv.handle_discovery(topic, bad[i % 2])
    lines = [r for r in caplog.records if "discovery" in r.getMessage()]
    assert inv.stats.discovery_errors == 2000
    assert 1 <= len(lines) <= 10
    assert "ignored discovery config homeassistant/switch/x0/config" in lines[0].getMessage()


def test_a_full_message_queue_drops_and_counts_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Raising QueueFull made aiomqtt log a warning per dropped message.
    stats = MqttStats()
    queue = counting_queue(stats, lambda _m: False, 1 << 30)(maxsize=10)
    with caplog.at_level(logging.WARNING):
        for i in range(1000):
            queue.put_nowait(aiomqtt.Message("zigbee2mqtt/plug", b'{"state":"ON"}', 0, False,
                                             i, None))
    assert queue.qsize() == 10
    assert stats.messages_dropped == 990
    assert len(caplog.records) == 10  # the 1st, 2nd, 4th ... 512th


def test_bad_switch_commands_from_the_broker_are_counted_and_logged_a_few_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from daemon.home.mqtt import MqttMessage
    from daemon.home.service import HomeService
    from daemon.ops.metrics import Metrics
    from daemon.tools.registry import ToolRegistry
    from tests.unit.test_audio_ptt import AgentLike, kiosk_settings

    metrics = Metrics()
    service = HomeService(kiosk_settings(listen="push_to_talk", push_to_talk_mqtt=True),
                          ToolRegistry(), metrics, AgentLike())  # type: ignore[arg-type]
    own = service.own_device
    switch = next(e for e in own.entities if e.object_id == "push_to_talk")
    with caplog.at_level(logging.WARNING):
        for i in range(500):
            own._on_command(switch, MqttMessage(own.command_topic(switch),  # noqa: SLF001
                                                f"MAYBE{i}".encode()))
    assert metrics.value("edge_home_ha_commands_total", entity="push_to_talk",
                         result="invalid") == 500
    assert 1 <= len(caplog.records) <= 10

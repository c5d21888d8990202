"""The health server from the settings: port 0 means off (nothing is started).

Over real loopback TCP: tests/integration/test_ops_health.py.
"""

from __future__ import annotations

import pytest

from daemon.config import OpsSettings
from daemon.ops.health import (
    HealthServer,
    health_server_from_settings,
)
from daemon.ops.metrics import Metrics
from tests.support.ops import Health

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_port_zero_in_settings_means_off(metrics: Metrics, health: Health) -> None:
    assert health_server_from_settings(OpsSettings(health_port=0), metrics, health) is None
    srv = health_server_from_settings(OpsSettings(health_port=9102), metrics, health)
    assert isinstance(srv, HealthServer)
    assert srv.port is None  # not started yet

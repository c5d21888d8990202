"""The bleak backend's selection from `peripheral.ble.backend` (no radio).

The backend over Bumble on a virtual radio: tests/integration/test_ble_backend.py.
"""

from __future__ import annotations

import pytest

from daemon.peripherals.ble.backends import BackendError, BleBackend, open_backend

pytestmark = pytest.mark.timeout(60)


def test_backend_selection() -> None:
    assert open_backend("bluez") == BleBackend("bluez")
    assert open_backend("bluez").scanner is None
    with pytest.raises(BackendError, match="backend: unknown value"):
        open_backend("usb:0")
    with pytest.raises(BackendError, match="needs a Bumble transport"):
        open_backend("virtual:")
    virtual = open_backend("virtual:tcp-client:127.0.0.1:1")
    assert virtual.virtual and virtual.scanner is not None and virtual.client is not None

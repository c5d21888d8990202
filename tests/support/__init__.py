"""Helpers the tests share: rigs, fakes, waits. Not a test module (nothing here is collected),
and the only place a test imports helpers from: a test module never imports another.

- `waiting`: the one `eventually` (poll until a condition holds, or fail the test).
- `tls`: the one test CA (trustme); the `ca_pem` fixture in tests/conftest.py writes it.
- `paths`: the repository root.
- `mqtt`: a quickly reconnecting connection, a `Watcher` on `#`, a `SpyPublisher`, a TCP
  `Proxy` a test can cut or make refuse, `publish_raw` (from another process).
- `home`: the home service on a private broker (`home_rig`), a `FakeUser` who answers,
  the confirmation gate's pieces, an Agent's stand-ins (`FakeLink`, `FakeGlasses`).
- `home_fuzz`: the allow-list oracle the home property tests check commands against.
- `live`: the fake Live server with the real SDK: a stamped `Talker`, `running`,
  `bare_link`, test audio, an SDK that keeps its socket elsewhere.
- `agent`: an Agent with the real (unconnected) Live link and a stand-in `Camera`.
- `ble`: a `Sink` for a `BlePeripheral`, `make_ble`, `running`, `tone`, `FakeSpeaker`.
- `tools`: a `ToolDispatcher` harness with three tools, and a readiness hook.
- `config`, `leaks`, `logs`, `ops`: config files, secrets and their leak checks, log
  filters, a switchable health check.
- `kiosk_probe`: run as `python -m tests.support.kiosk_probe` (a subprocess).
- `speech`, `echo_room`, `pulse`: espeak-ng speech, a room on arrays, the virtual sound
  card and its room process (simulator.soundcard; a skip where the Debian parts are
  missing); `frontend_loop`: the kiosk's audio front end in a closed loop on arrays.

The one private mosquitto is `simulator.broker.PrivateBroker`; a test gets it from the
`broker` fixture in tests/integration/conftest.py (or inside `home_rig`).
"""

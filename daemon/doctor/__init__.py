"""`edge-agent doctor`: what this machine and this configuration can and cannot do.

Each check says ok, WARN or FAIL, what it looked at and, when not ok, one line of
what to do; `--json` prints the same as one document. The exit code is 0 only
when every check the configured mode needs is ok (warnings do not count), 2 for
a configuration that does not load, 1 otherwise.

One module per area: `live` (the key, against the endpoint), `mqtt` (the broker),
`ble` (the radio and the glasses), `kiosk` (the sound devices), `clock`, `host`
(the rest of this machine), `report` (the verdict and its renderings, pure) and
`command` (all of it, concurrently and bounded).
"""

from daemon.doctor.command import cmd_doctor

__all__ = ["cmd_doctor"]

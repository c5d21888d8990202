"""Which glasses are the user's: pinned after the first connection that really worked.

Why: omi-class glasses do not bond, so a reconnect used to take the first device
advertising a matching name or service UUID, and its speech and taps counted as the
user's (a tap confirms a door unlock). Now, after the first connection that delivered
audio (services found, first audio decoded, never on a mere connect), the device's
address - and, where the profile bonds, the fact that it bonded - is saved in the state
directory (record `ble-glasses`). From then on:

- only that address is connected; every other device that advertises the profile's
  name or UUID is refused, counted and named in a rate-limited warning;
- on a bonding profile (Frame) the pinned address must also prove the existing bond:
  a bond this host holds but the device cannot use is refused - never paired anew, or
  an impostor copying the address would simply bond;
- unless the HOST holds no bond at all for the pinned address (its own bond store lost
  it: a lost BlueZ database, or the virtual radio's host, which keeps its keys in
  memory only, after a daemon restart). Then the device at the pinned address - never
  another - is paired anew, at most once per daemon run, with a WARNING, the counter
  `pin.rebonds` and the time in the record (`rebonded_at`). Refusing instead would lock
  the user out of their own glasses for good; the price is that an impostor copying
  the address while the host's bond is gone could bond in their place (the warning
  says so, and the real glasses are then refused until `devices --unpair`);
- `peripheral.ble.address` is an explicit pin; the record then only adds the bond;
- a record that is unusable (bad content, or pinned for another profile) or damaged
  (truncated, not JSON: kept aside as `ble-glasses.corrupt`, see daemon/ops/state.py)
  refuses every device until `edge-agent devices --unpair`: failing closed, with a
  reason to show.

Without a state directory the pin lasts until the daemon stops. An address can be
copied by anyone who has seen it advertised; only a bond proves who is there, so a tap
on bonded glasses is the strong confirmation. The decisions are pure code; the only
I/O is the store's load and save. The record never holds a key: bonds stay in the
host's own store (BlueZ's, or the virtual host's memory).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from daemon.errors import EdgeAgentError
from daemon.ops.state import StateStore

log = logging.getLogger(__name__)

RECORD: Final = "ble-glasses"
RECORD_VERSION: Final = 1
WARN_INTERVAL: Final = 60.0  # at most one refusal warning a minute, whatever the radio hears
MAX_NAME: Final = 64
UNPAIR_HINT: Final = "run `edge-agent devices --unpair`, then restart the daemon"

_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Verdict = Literal["take", "refuse", "ignore"]


class PinError(EdgeAgentError, ValueError):
    """An address or a pin record that cannot be used; the message says why."""


def normalize_address(text: str) -> str:
    """``aa:bb:...`` -> ``AA:BB:...``; PinError unless it is a 48-bit Bluetooth address."""
    address = text.strip().upper()
    if not _ADDRESS.match(address):
        raise PinError(f"not a Bluetooth address (AA:BB:CC:DD:EE:FF): {text[:40]!r}")
    return address


def clean_name(name: str | None) -> str:
    """A device-supplied name made safe for a log line and a record: no control
    characters, at most MAX_NAME characters."""
    return _CONTROL.sub("", name or "")[:MAX_NAME]


@dataclass(frozen=True, slots=True)
class Pin:
    """The user's glasses: their address, their profile, whether they bonded."""

    address: str
    profile: str
    bonded: bool = False
    name: str = ""
    pinned_at: str = ""  # ISO 8601 UTC, for people reading `doctor`
    rebonded_at: str = ""  # last time the host, having lost the bond, paired anew

    def to_record(self) -> dict[str, Any]:
        """The pin as stored in the state directory (versioned)."""
        return {"version": RECORD_VERSION, **asdict(self)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Pin:
        """PinError naming the field for anything but a record this module wrote."""
        if record.get("version") != RECORD_VERSION:
            raise PinError(f"unknown record version {record.get('version')!r}")
        address, profile = record.get("address"), record.get("profile")
        bonded, name = record.get("bonded", False), record.get("name", "")
        pinned_at = record.get("pinned_at", "")
        rebonded_at = record.get("rebonded_at", "")
        if not isinstance(address, str):
            raise PinError("address: missing")
        if not isinstance(profile, str) or not profile or len(profile) > MAX_NAME:
            raise PinError("profile: missing or too long")
        if not isinstance(bonded, bool):
            raise PinError("bonded: not true or false")
        if not all(isinstance(v, str) for v in (name, pinned_at, rebonded_at)):
            raise PinError("name, pinned_at or rebonded_at: not text")
        return cls(normalize_address(address), profile, bonded, clean_name(name),
                   clean_name(pinned_at), clean_name(rebonded_at))


@dataclass(slots=True)
class PinStats:
    """Refusals and trust decisions (cumulative, in /metrics under `pin.`)."""

    refused_devices: int = 0  # a look-alike at another address, once per scan each
    refused_bond: int = 0  # the pinned address without the pinned bond
    rebonds: int = 0  # the host had lost the pinned bond: paired anew at the pinned address
    untrusted_taps: int = 0  # taps from a device that is not (yet) the pinned one
    untrusted_talks: int = 0  # talk gestures from such a device: no microphone opened
    pins_saved: int = 0
    save_failures: int = 0  # the pin holds in memory; the state store says why
    warnings_suppressed: int = 0  # refusals not logged because of the rate limit


class Pinning:
    """The pin and every decision made from it, for one daemon run."""

    def __init__(
        self,
        profile: str,
        store: StateStore | None = None,
        *,
        configured: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`configured` is `peripheral.ble.address` (PinError if it is not an address)."""
        self.profile = profile
        self.store = store if store is not None else StateStore(None)
        self.configured = normalize_address(configured) if configured.strip() else ""
        self.stats = PinStats()
        self.pin: Pin | None = None
        self.blocked = ""  # why every device is refused; empty when not blocked
        self._saved: Pin | None = None  # what the store holds, as far as we know
        self._clock = clock
        self._last_warning: float | None = None
        self._rebonded = False  # the host's lost bond was renewed in this run
        self.damaged_record = False  # a damaged pin record is kept aside (state.py)
        self._load()

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        stored, problem = read_pin(self.store)
        self.damaged_record = self.store.kept_aside(RECORD) is not None
        if problem and not self.configured:
            self.blocked = problem
            log.error("BLE: %s; every device is refused: %s", problem, UNPAIR_HINT)
            return
        if problem:
            log.warning("BLE: %s; the glasses of peripheral.ble.address are used", problem)
        if stored is not None and stored.profile != self.profile and not self.configured:
            self.blocked = (
                f"the pinned glasses ({stored.address}) use profile {stored.profile!r}, "
                f"not {self.profile!r}"
            )
            log.error("BLE: %s; every device is refused: %s", self.blocked, UNPAIR_HINT)
            return
        if self.configured:
            same = (stored is not None and stored.address == self.configured
                    and stored.profile == self.profile)
            self.pin = stored if same else Pin(self.configured, self.profile)
            self._saved = stored if same else None
            return
        self.pin = self._saved = stored
        if stored is not None:
            log.info("BLE: only the pinned glasses %s (%s) are used", stored.address,
                     stored.name or "no name")

    # ---------------------------------------------------------------- decisions
    def decide(self, address: str, looks_like_profile: bool) -> Verdict:
        """Whether a scanned device is connected ("take"), refused or none of ours."""
        if self.blocked:
            return "refuse" if looks_like_profile else "ignore"
        if self.pin is not None:
            if address.upper() == self.pin.address:
                return "take"
            return "refuse" if looks_like_profile else "ignore"
        return "take" if looks_like_profile else "ignore"

    def allows(self, address: str) -> bool:
        """Whether a link to `address` may carry media at all."""
        if self.blocked:
            return False
        return self.pin is None or address.upper() == self.pin.address

    def must_keep_bond(self, address: str) -> bool:
        """The pinned device bonded: a link to its address must use that bond."""
        pin = self.pin
        return pin is not None and pin.bonded and address.upper() == pin.address

    def may_rebond(self, address: str) -> bool:
        """Whether the pinned glasses at `address` may be paired anew, the caller having
        found that this HOST holds no bond at all for them (its store lost it).

        Only the pinned address, only a pin that bonded, at most once per daemon run: a
        bond that the host held and the device cannot use is never renewed (an impostor
        copying the address), nor one lost again after it was renewed in this run.
        """
        return self.must_keep_bond(address) and not self.blocked and not self._rebonded

    def trusted(self, address: str) -> bool:
        """Input from `address` is the user's: it is the pinned device.

        Called only for a link that passed the connect checks (including the bond).
        """
        return not self.blocked and self.pin is not None and address.upper() == self.pin.address

    # ------------------------------------------------------------------ changes
    def confirm(self, address: str, name: str | None, *, bonded: bool) -> bool:
        """The link to `address` really worked (audio decoded): pin it if not yet.

        True if the pin is held (in memory at least). Saves only what changed, so it
        is cheap to call once per connection.
        """
        address = address.upper()
        if not self.allows(address):
            return False
        pin = self.pin
        if pin is not None and self._saved == pin and (pin.bonded or not bonded):
            return True
        new = Pin(
            address,
            self.profile,
            bonded or (pin is not None and pin.bonded),
            clean_name(name) or (pin.name if pin is not None else ""),
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            pin.rebonded_at if pin is not None else "",
        )
        first = pin is None
        self.pin = new
        if self.store.save(RECORD, new.to_record()):
            self._saved = new
            self.stats.pins_saved += 1
        else:
            self.stats.save_failures += 1
        if first:  # info: a first pairing is normal (a demo pins its glasses every run)
            where = "saved" if self._saved == new else "kept in memory only"
            log.info(
                "BLE: pinned the glasses %s (%s), %s; no other device will be used "
                "(to pair others, %s)",
                new.address, new.name or "no name", where, UNPAIR_HINT,
            )
        return True

    def rebonded(self, address: str) -> None:
        """The host, which had lost the pinned bond, paired anew with `address`: count
        it, warn, and record when (never the key: that stays in the host's store)."""
        pin = self.pin
        if pin is None or address.upper() != pin.address:
            return
        self._rebonded = True
        self.stats.rebonds += 1
        new = replace(pin, bonded=True,
                      rebonded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.pin = new
        if self.store.save(RECORD, new.to_record()):
            self._saved = new
        else:
            self.stats.save_failures += 1
        log.warning(
            "BLE: this host had lost its bond with the pinned glasses %s (%s): its bond "
            "store held none for them (a lost BlueZ bond store, or the virtual radio's "
            "host after a restart), so it paired anew with the device at the pinned "
            "address and uses that bond from now on. If the glasses were not with you, "
            "an impostor may have bonded: %s, and pair them again",
            new.address, new.name or "no name", UNPAIR_HINT,
        )

    def refuse(self, address: str, reason: Literal["device", "bond"], detail: str = "") -> None:
        """Count a refused device; warn about it at most once per WARN_INTERVAL."""
        if reason == "bond":
            self.stats.refused_bond += 1
        else:
            self.stats.refused_devices += 1
        now = self._clock()
        if self._last_warning is not None and now - self._last_warning < WARN_INTERVAL:
            self.stats.warnings_suppressed += 1
            return
        self._last_warning = now
        if self.blocked:
            why = self.blocked
        elif reason == "bond":
            why = f"it is at the pinned address but without the pinned bond ({detail})"
        else:
            assert self.pin is not None
            why = f"it is not the pinned glasses {self.pin.address}"
        log.warning(
            "BLE: refused %s: %s (refusals: %d device, %d bond; at most one warning a "
            "minute)",
            address.upper(), why, self.stats.refused_devices, self.stats.refused_bond,
        )

    # ------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """The pin and its counters, for `status()` and `doctor`."""
        pin = self.pin
        return {
            "pinned": pin is not None,
            "blocked": bool(self.blocked),
            "saved": pin is not None and self._saved == pin,
            "bonded": pin is not None and pin.bonded,
            "address": pin.address if pin is not None else None,
            "source": "config" if self.configured else ("state" if pin is not None else None),
            "damaged_record": self.damaged_record,
            **asdict(self.stats),
        }


# ================================================================ for the CLI
def read_pin(store: StateStore) -> tuple[Pin | None, str]:
    """(the stored pin or None, why the record is unusable or "").

    A damaged record (kept aside by the store) is unusable too: never "nothing pinned",
    which would pin the next look-alike."""
    record, damaged = store.load_status(RECORD)
    if damaged is not None:
        return None, damaged.describe()
    if record is None:
        return None, ""
    try:
        return Pin.from_record(record), ""
    except PinError as exc:
        return None, f"the pin record {RECORD} is unusable ({exc})"


def describe(store: StateStore, profile: str, configured: str = "") -> tuple[bool, str]:
    """(ok, one line) for `doctor`: what is pinned, or why nothing safely is."""
    stored, problem = read_pin(store)
    if configured.strip():
        try:
            address = normalize_address(configured)
        except PinError as exc:
            return False, f"peripheral.ble.address: {exc}"
        return True, f"{address} (peripheral.ble.address)"
    if problem:
        return False, f"{problem}: every device is refused; {UNPAIR_HINT}"
    if stored is not None and stored.profile != profile:
        return False, (f"pinned {stored.address} uses profile {stored.profile!r}, not "
                       f"{profile!r}: every device is refused; {UNPAIR_HINT}")
    if stored is not None:
        where = "" if store.persistent else " (in memory)"
        again = f", re-bonded {stored.rebonded_at}" if stored.rebonded_at else ""
        return True, (f"{stored.address} ({stored.name or 'no name'}, pinned "
                      f"{stored.pinned_at or 'earlier'}{again}){where}")
    if not store.persistent:
        return False, ("nothing pinned, and no state directory ($STATE_DIRECTORY or "
                       "ops.state_dir): the first matching glasses are pinned only until "
                       "the daemon stops")
    return False, ("nothing pinned: the first glasses found advertising the profile's name "
                   "will be pinned (set peripheral.ble.address to choose them)")


def unpair(store: StateStore) -> tuple[bool, Pin | None]:
    """Forget the pinned glasses: (a record was removed, the pin it held if readable).

    OSError if the record exists but cannot be removed (the caller says why).
    """
    stored, _ = read_pin(store)
    removed = store.delete(RECORD)
    return removed, stored if removed else None

"""Virtual glasses: a Bumble GATT peripheral that behaves like the wearable in a profile.

Why: the daemon's BLE path (scan, connect, MTU, bonding, framing, codecs, photos,
speaker, reconnects) must be exercised end to end on a machine with no radio. Any
profile in device_profiles/ can be served: its service and characteristics, its
advertised name and service UUID, the codec id characteristic, a battery service, a
button. The microphone streams a WAV file encoded with the profile's codec and framing
(Opus 20 ms, PCM16/PCM8, µ-law; omi packet ids with wraparound; the Frame message
layer), paced in real time on an absolute schedule. Photos (a given JPEG or a synthetic
one) are sent as the profile frames them when asked through the photo control
characteristic. What arrives on the speaker characteristic is decoded and recorded to a
WAV file. A tap (`tap()`, or the `tap-at` fault) is sent the way the profile's `[tap]`
says: a button notification or a Frame data message.

The microphone never stops on its own, like real firmware: once the WAV has played
(event ``audio_end``) the glasses stream silence, encoded in the codec, until a fault
silences them; with `loop` the WAV repeats instead. The WAV position belongs to the
glasses, not to a connection: a reconnect goes on where the last connection stopped
(what the wearer said while the link was down is not heard again), unless
`rewind_on_connect` starts every connection from the top.

Like the firmware: nothing streams until the MTU reaches the profile's `min_mtu`, a
notification never exceeds MTU - 3 (Bumble would silently truncate it), bonded profiles
serve their characteristics to encrypted links only (the bond survives a restart with
`bond_store`, as in flash), and every per-connection task ends with the connection.
Faults (`Faults`) drop, duplicate, reorder or corrupt audio notifications by rate or by
index, drop photo chunks, go silent, disconnect or vanish.

Run it with ``edge-agent sim glasses`` (`main`) or in process with `VirtualGlasses`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import random
import signal
import struct
import sys
import time
import wave
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr
from bumble import gatt, hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.keys import JsonKeyStore
from bumble.transport import open_transport
from bumble.transport.common import Transport

from daemon.media.codecs import CodecSpec, mulaw_encode, pcm16_to_pcm8
from daemon.media.opus import OpusDecoder, OpusEncoder, OpusError
from daemon.media.wav import read_wav
from daemon.peripherals.ble.framing import (
    FrameFlags,
    frame_data_messages,
    frame_tap_message,
    omi_audio_notifications,
    omi_button_notification,
    omi_photo_chunks,
)
from daemon.peripherals.ble.profile import (
    BLUETOOTH_BASE_UUID_SUFFIX,
    DeviceProfile,
    ProfileError,
    load_profile,
)

log = logging.getLogger(__name__)

SAMPLE_WIDTH: Final = 2
ADV_INTERVAL_MS: Final = 100.0  # FACTS: connection time is about one advertising interval
MAX_RECORD_SECONDS: Final = 600.0
BATTERY_SERVICE: Final = "0000180f" + BLUETOOTH_BASE_UUID_SUFFIX
_RATE_KEYS: Final = ("drop", "duplicate", "reorder", "malformed")
_INDEX_KEYS: Final = ("drop-at", "duplicate-at", "reorder-at", "malformed-at", "photo-drop-at")
_TIME_KEYS: Final = ("silent-after", "silent-for", "disconnect-after", "vanish-after")
_TIMES_KEYS: Final = ("tap-at",)


# ===================================================================== photos
# A genuine baseline encoder for one grey channel (no imaging library in the project):
# 8x8 DCT, one quantisation table and Huffman tables of our own - DC categories as 4-bit
# codes, every AC run/size symbol as an 8-bit code - valid per ITU T.81, so any baseline
# decoder opens the result. The picture is a gradient with seeded noise.
_ZIGZAG: Final = np.array(
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
        12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ]
)  # fmt: skip

# DC: categories 0..11, all 4-bit codes. AC: EOB, ZRL and run/size (run 0..15, size 1..10),
# 162 symbols, all 8-bit codes (canonical: codes are assigned in symbol order).
_DC_SYMBOLS: Final = list(range(12))
_AC_SYMBOLS: Final = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]
_DC_CODES: Final = {sym: (i, 4) for i, sym in enumerate(_DC_SYMBOLS)}
_AC_CODES: Final = {sym: (i, 8) for i, sym in enumerate(_AC_SYMBOLS)}


def _dct_matrix() -> npt.NDArray[np.float64]:
    k = np.arange(8)
    m: npt.NDArray[np.float64] = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(
        2 / 8
    )
    m[0, :] = np.sqrt(1 / 8)
    return m


_DCT: Final = _dct_matrix()


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._n = 0

    def write(self, code: int, length: int) -> None:
        self._acc = (self._acc << length) | (code & ((1 << length) - 1))
        self._n += length
        while self._n >= 8:
            self._n -= 8
            byte = (self._acc >> self._n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:  # byte stuffing: 0xFF in entropy data is followed by 0x00
                self.out.append(0x00)
        self._acc &= (1 << self._n) - 1

    def finish(self) -> bytes:
        if self._n:
            self.write((1 << (8 - self._n)) - 1, 8 - self._n)  # pad with one-bits
        return bytes(self.out)


def _category(value: int) -> tuple[int, int]:
    """JPEG magnitude category and the value's extra bits."""
    size = int(abs(value)).bit_length()
    bits = value if value >= 0 else value + (1 << size) - 1
    return size, bits


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(table_class: int, table_id: int, symbols: list[int], length: int) -> bytes:
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes([(table_class << 4) | table_id, *counts, *symbols])


def synthetic_jpeg(
    width: int = 160,
    height: int = 120,
    *,
    seed: int = 0,
    quality_step: int = 6,
    detail: float = 1.0,
) -> bytes:
    """A grey baseline JPEG of `width` x `height` pixels (multiples of 8 are not needed)."""
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise ValueError("synthetic_jpeg: width and height must be 8..4096")
    rng = np.random.default_rng(seed)
    bw, bh = -(-width // 8), -(-height // 8)
    y, x = np.mgrid[0 : bh * 8, 0 : bw * 8]
    image = 128 + 60 * np.sin(x / (9 + seed % 7)) * np.cos(y / 13) + (x - y) * 0.2
    image += rng.normal(0, 18 * detail, image.shape)
    image = np.clip(image, 0, 255) - 128.0

    q = np.full(64, max(1, min(255, quality_step)), dtype=np.int32)
    writer = _BitWriter()
    prev_dc = 0
    for by in range(bh):
        for bx in range(bw):
            block = image[by * 8 : by * 8 + 8, bx * 8 : bx * 8 + 8]
            coeffs = (_DCT @ block @ _DCT.T).reshape(64)[_ZIGZAG]
            quant = np.rint(coeffs / q).astype(np.int64)
            quant = np.clip(quant, -1023, 1023)  # keep AC sizes within 1..10
            dc = int(np.clip(quant[0], -2047, 2047))
            size, bits = _category(dc - prev_dc)
            if size > 11:
                dc, size, bits = prev_dc, 0, 0
            prev_dc = dc
            writer.write(*_DC_CODES[size])
            if size:
                writer.write(bits, size)
            run = 0
            for ac in quant[1:]:
                value = int(ac)
                if value == 0:
                    run += 1
                    continue
                while run > 15:
                    writer.write(*_AC_CODES[0xF0])
                    run -= 16
                size, bits = _category(value)
                writer.write(*_AC_CODES[(run << 4) | size])
                writer.write(bits, size)
                run = 0
            if run:
                writer.write(*_AC_CODES[0x00])
    scan = writer.finish()

    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = bytes([0x00]) + bytes(int(v) for v in q)  # 8-bit table 0 (zigzag order)
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    dht = _dht(0, 0, _DC_SYMBOLS, 4) + _dht(1, 0, _AC_SYMBOLS, 8)
    sos = bytes([1, 1, 0x00, 0, 63, 0])
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, jfif),
            _segment(0xDB, dqt),
            _segment(0xC0, sof),
            _segment(0xC4, dht),
            _segment(0xDA, sos),
            scan,
            b"\xff\xd9",
        )
    )


# ===================================================================== faults
@dataclass(frozen=True, slots=True)
class Faults:
    """What to break. Rates are per audio notification (0..1); indices count the audio
    notifications (or photo chunks) of each connection from 0; times count seconds of
    streaming since the first connection's stream began and fire once per instance."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # send this notification after the next one
    malformed: float = 0.0  # send a too-short notification before this one
    drop_at: frozenset[int] = frozenset()
    duplicate_at: frozenset[int] = frozenset()
    reorder_at: frozenset[int] = frozenset()
    malformed_at: frozenset[int] = frozenset()
    photo_drop_at: frozenset[int] = frozenset()
    silent_after: float | None = None  # stop sending audio, stay connected
    silent_for: float | None = None  # ... for this long (None: until the link ends)
    disconnect_after: float | None = None  # terminate the connection
    vanish_after: float | None = None  # radio gone: stop advertising, links time out
    tap_at: frozenset[float] = frozenset()  # the wearer taps the glasses at these times
    seed: int = 0

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        """``name=value`` items, e.g. ``drop=0.05``, ``drop-at=3,4``, ``silent-after=2``,
        ``tap-at=1.5,4``.

        ValueError with one line naming the item on any mistake.
        """
        values: dict[str, Any] = {}
        for spec in specs:
            name, sep, raw = spec.partition("=")
            name = name.strip().lower()
            if not sep:
                raise ValueError(f"--fault {spec!r}: expected name=value")
            try:
                if name in _RATE_KEYS:
                    rate = float(raw)
                    if not 0.0 <= rate <= 1.0:
                        raise ValueError("a rate is 0..1")
                    values[name] = rate
                elif name in _INDEX_KEYS:
                    items = {int(v) for v in raw.split(",") if v.strip()}
                    if any(i < 0 for i in items):
                        raise ValueError("indices are >= 0")
                    values[name.replace("-", "_")] = frozenset(items)
                elif name in _TIME_KEYS:
                    seconds = float(raw)
                    if seconds < 0:
                        raise ValueError("seconds are >= 0")
                    values[name.replace("-", "_")] = seconds
                elif name in _TIMES_KEYS:
                    times = {float(v) for v in raw.split(",") if v.strip()}
                    if not times or any(t < 0 for t in times):
                        raise ValueError("give seconds >= 0, e.g. 1.5,4")
                    values[name.replace("-", "_")] = frozenset(times)
                elif name == "seed":
                    values["seed"] = int(raw)
                else:
                    known = ", ".join(
                        (*_RATE_KEYS, *_INDEX_KEYS, *_TIME_KEYS, *_TIMES_KEYS, "seed")
                    )
                    raise ValueError(f"unknown fault (known: {known})")
            except ValueError as exc:
                raise ValueError(f"--fault {spec!r}: {exc}") from None
        return cls(**values)


@dataclass(slots=True)
class GlassesStats:
    """Everything the glasses did, for tests and the event log."""

    connections: int = 0
    disconnections: int = 0
    audio_frames: int = 0
    silence_frames: int = 0  # of audio_frames: sent after the WAV ended
    audio_notifications: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    malformed_sent: int = 0
    truncated: int = 0  # notifications cut to MTU - 3 (photo chunks on a small MTU)
    photos_sent: int = 0
    photo_chunks: int = 0
    photo_chunks_dropped: int = 0
    photos_skipped: int = 0  # asked for a photo while nobody was subscribed
    speaker_writes: int = 0
    speaker_bytes: int = 0
    speaker_utterances: int = 0
    speaker_decode_errors: int = 0
    speaker_overflow: int = 0  # more PCM than the length prefix announced
    speaker_record_dropped: int = 0
    taps: int = 0
    taps_skipped: int = 0  # tapped while nobody was subscribed (or not yet encrypted)
    commands: dict[str, int] = field(default_factory=dict)
    unknown_commands: int = 0
    faults_fired: list[str] = field(default_factory=list)


# ================================================================ audio source
def _resample(pcm: bytes, src: int, dst: int) -> bytes:
    if src == dst or not pcm:
        return pcm
    out = soxr.resample(np.frombuffer(pcm, dtype="<i2"), src, dst)
    return bytes(np.asarray(out, dtype="<i2").tobytes())


class _Encoder:
    """One connection's microphone stream: PCM at the codec rate to codec frames."""

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = spec
        self.frame_bytes = spec.frame_samples * SAMPLE_WIDTH
        self._opus = OpusEncoder(spec.rate, spec.frame_ms) if spec.kind == "opus" else None

    def encode(self, pcm: bytes) -> bytes:
        if len(pcm) < self.frame_bytes:
            pcm = pcm + bytes(self.frame_bytes - len(pcm))
        if self._opus is not None:
            return self._opus.encode(pcm)
        if self.spec.kind == "mulaw":
            return mulaw_encode(pcm)
        if self.spec.kind == "pcm8":
            return pcm16_to_pcm8(pcm)
        return pcm

    def close(self) -> None:
        if self._opus is not None:
            self._opus.close()


# ==================================================================== helpers
def _bumble_uuid(text: str) -> UUID:
    """Profile UUID (lower-case 128-bit) as a Bumble UUID; SIG ones in 16-bit form."""
    if text.endswith(BLUETOOTH_BASE_UUID_SUFFIX) and text.startswith("0000"):
        return UUID.from_16_bits(int(text[4:8], 16))
    return UUID(text)


def default_address(profile: str, name: str) -> str:
    """A stable static random address per (profile, name), so a restart keeps it."""
    digest = bytearray(hashlib.sha256(f"{profile}/{name}".encode()).digest()[:6])
    digest[0] |= 0xC0  # static random: two top bits set (MSB first in the string)
    return ":".join(f"{b:02X}" for b in digest)


def _advertising_data(name: str, service: str | None) -> bytes:
    """Name and service UUID in at most 31 bytes (flags dropped, name shortened if not)."""
    uuid_part: list[tuple[int, bytes]] = []
    if service is not None:
        u = _bumble_uuid(service)
        kind = (
            AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS
            if len(u.to_bytes()) == 2
            else AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS
        )
        uuid_part = [(kind, u.to_bytes())]
    flags = [(AdvertisingData.FLAGS, bytes([0x06]))]
    encoded = name.encode()
    for structures in (
        flags + uuid_part + [(AdvertisingData.COMPLETE_LOCAL_NAME, encoded)],
        [*uuid_part, (AdvertisingData.COMPLETE_LOCAL_NAME, encoded)],
    ):
        data = bytes(AdvertisingData(structures))
        if len(data) <= 31:
            return data
    room = max(0, 31 - len(bytes(AdvertisingData(uuid_part))) - 2)
    return bytes(
        AdvertisingData([*uuid_part, (AdvertisingData.SHORTENED_LOCAL_NAME, encoded[:room])])
    )


async def _to_completion(coro: Coroutine[Any, Any, None], limit: float = 2.0) -> None:
    """Run an HCI sequence to its end even if the caller is cancelled meanwhile.

    Bumble fails (InvalidStateError) when a response arrives for a command whose waiter
    was cancelled, so commands are never cancelled mid-flight; errors are logged.
    """
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=limit)
        raise
    except Exception as exc:
        log.debug("HCI sequence failed: %s", exc)
    finally:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: never "exception was never retrieved"
        elif not task.done():
            task.cancel()


class _Link:
    """State of one connection; everything here dies with it."""

    def __init__(self, conn: Connection, needs_start: bool) -> None:
        self.conn = conn
        self.gone = asyncio.Event()
        self.subscribed: set[int] = set()
        self.mic_on = not needs_start  # profiles with audio.control wait for "start"
        self.stream_ok = asyncio.Event()
        self.audio_index = 0
        self.photo_index = 0
        self.held: bytes | None = None  # a notification waiting to be sent out of order
        self.photo_commands: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=16)
        self.speaker_remaining: int | None = None  # bytes left in the current utterance


class _LinkGone(Exception):
    """The connection ended: unwinds the per-connection TaskGroup."""


# =================================================================== glasses
class VirtualGlasses:
    """One virtual wearable on one radio transport.

    ``async with VirtualGlasses(profile, transport, pcm=..., pcm_rate=...) as g`` runs it
    in the background until the block ends; `run()` runs it in the caller's task.
    """

    def __init__(
        self,
        profile: DeviceProfile | str,
        transport: str,
        *,
        pcm: bytes = b"",
        pcm_rate: int = 16_000,
        loop: bool = False,
        rewind_on_connect: bool = False,
        speaker: bool = True,
        codec_id: int | None = None,
        name: str | None = None,
        address: str | None = None,
        jpeg: bytes | None = None,
        battery: int | None = 87,
        faults: Faults | None = None,
        record_speaker: Path | None = None,
        bond_store: Path | None = None,
        packet_id_start: int = 0,
        advertising_interval_ms: float = ADV_INTERVAL_MS,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_audio_notify: Callable[[bytes, float], None] | None = None,
    ) -> None:
        """`loop` repeats the WAV; without it silence follows. `rewind_on_connect` starts
        the WAV over on every connection instead of going on where it was. `speaker`
        False serves no speaker characteristic even if the profile has one (a production
        omi). `on_audio_notify` is a measurement hook (bench/ble_pipeline.py): called with
        every notification on the audio characteristic and `time.monotonic()` just before
        it is handed to the BLE stack. Unset, it costs one attribute test per notification.
        `bond_store` keeps bonds in a JSON file, so a restarted device still holds them
        as real firmware does in flash; without it a restart forgets every bond.
        """
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        p = self.profile
        self.transport_spec = transport
        self.codec_id = p.audio.default_codec if codec_id is None else codec_id
        spec = p.audio.codec(self.codec_id)
        if spec is None:
            raise ValueError(f"codec id {self.codec_id} is not in profile {p.name!r}")
        self.codec = spec
        self.name = name or (p.discovery.name_prefixes[0] if p.discovery.name_prefixes else p.name)
        self.address = address or default_address(p.name, self.name)
        self.pcm = _resample(pcm, pcm_rate, spec.rate)
        self.loop = loop
        self.rewind_on_connect = rewind_on_connect
        self.speaker = speaker and p.downlink.kind != "none"
        self._position = 0  # bytes of `pcm` streamed (wraps with `loop`)
        self._audio_ended = False  # `audio_end` emitted: silence from now on
        self.jpeg = jpeg if jpeg is not None else synthetic_jpeg(160, 120, seed=1, detail=0.5)
        self.battery = battery
        self.faults = faults or Faults()
        self.advertising_interval_ms = advertising_interval_ms
        self.stats = GlassesStats()
        self.speaker_pcm = bytearray()
        self.ready = asyncio.Event()  # advertising
        self._on_event = on_event
        self._on_audio_notify = on_audio_notify
        self._record_path = record_speaker
        self.bond_store = bond_store
        self._recorder: wave.Wave_write | None = None
        self._speaker_decoder: OpusDecoder | None = None
        self._rng = random.Random(self.faults.seed)
        self._packet_id = packet_id_start % 0x10000
        self._stream_clock: float | None = None  # seconds streamed since the first stream
        self._silent_until: float | None = None
        self._fired: set[str] = set()
        self._stop = asyncio.Event()
        self._vanished = False  # no HCI left to talk to (vanished, or the radio is gone)
        self.radio_lost = False
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._link: _Link | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._chars: dict[str, gatt.Characteristic[bytes]] = {}

    # ------------------------------------------------------------------ events
    def _emit(self, event: str, **data: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event({"event": event, **data})
            except Exception:
                log.exception("event callback failed")

    # ----------------------------------------------------------------- control
    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def mtu(self) -> int:
        return int(self._link.conn.att_mtu) if self._link is not None else 0

    def stop(self) -> None:
        """End `run()` cleanly (disconnect, power off)."""
        self._stop.set()

    async def vanish(self) -> None:
        """The device dies: the HCI socket closes, the hub times out its links."""
        self._vanished = True
        self._emit("vanished")
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()
        self._stop.set()

    def _on_radio_lost(self, _done: object) -> None:
        if not self._vanished and self._device is not None:  # not our own shutdown
            log.warning("virtual radio gone; glasses stop")
            self.radio_lost = self._vanished = True
            self._emit("radio_lost")
        self._stop.set()

    async def disconnect(self) -> None:
        """Terminate the current connection (the device hangs up)."""
        link = self._link
        if link is not None:
            with contextlib.suppress(Exception):
                await link.conn.disconnect(
                    hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR
                )

    def go_silent(self, seconds: float | None = None) -> None:
        """Stop sending audio (stay connected) for `seconds`, or until the link ends."""
        self._silent_until = float("inf") if seconds is None else time.monotonic() + seconds

    async def set_battery(self, level: int) -> None:
        self.battery = max(0, min(100, level))
        char = self._chars.get("battery")
        link = self._link
        if char is not None and link is not None:
            await self._notify(link, char, bytes([self.battery]))

    async def send_malformed(self) -> None:
        link = self._link
        if link is not None:
            await self._send_malformed(link)

    async def tap(self) -> bool:
        """The wearer taps the glasses; False if the profile has no tap or nobody listens."""
        p, link = self.profile, self._link
        if p.tap.source == "none":
            raise ValueError(f"profile {p.name!r} has no tap source")
        if p.tap.source == "button":
            char = self._chars.get(p.characteristics.button or "")
            value = omi_button_notification(p.tap.events[0])
        else:
            char = self._chars.get(p.characteristics.audio_data)
            value = frame_tap_message(p.frame_flags or FrameFlags())
        if (
            link is None
            or char is None
            or char.handle not in link.subscribed
            or not self._secure_ok(link)
        ):
            self.stats.taps_skipped += 1
            self._emit("tap", sent=False)
            return False
        await self._notify(link, char, value)
        self.stats.taps += 1
        self._emit("tap", sent=True)
        return True

    # ------------------------------------------------------------- GATT setup
    def _build_services(self, device: Device) -> None:
        p, ch = self.profile, self.profile.characteristics
        secure = p.bonding_required
        perms = gatt.Characteristic.Permissions
        none = perms(0)
        read_perm = perms.READABLE | (perms.READ_REQUIRES_ENCRYPTION if secure else none)
        write_perm = perms.WRITEABLE | (perms.WRITE_REQUIRES_ENCRYPTION if secure else none)
        props = gatt.Characteristic.Properties
        wanted: dict[str, int] = {}

        def want(uuid: str | None, flags: int) -> None:
            if uuid is not None:
                wanted[uuid] = wanted.get(uuid, 0) | flags

        want(ch.audio_data, props.NOTIFY)
        want(ch.photo_data if p.photo.framing != "none" else None, props.NOTIFY)
        want(ch.codec_id, props.READ)
        want(
            ch.audio_control if p.audio.control else None,
            props.WRITE | props.WRITE_WITHOUT_RESPONSE,
        )
        want(
            ch.photo_control if p.photo.control else None,
            props.WRITE | props.WRITE_WITHOUT_RESPONSE,
        )
        want(ch.speaker if self.speaker else None, props.WRITE | props.WRITE_WITHOUT_RESPONSE)

        characteristics: list[gatt.Characteristic[bytes]] = []
        for uuid, flags in wanted.items():
            perm = (read_perm if flags & (props.READ | props.NOTIFY) else none) | (
                write_perm if flags & (props.WRITE | props.WRITE_WITHOUT_RESPONSE) else none
            )
            value: Any = b""
            if uuid == ch.codec_id:
                value = bytes([self.codec_id])
            elif flags & props.WRITE:
                value = gatt.CharacteristicValue(write=lambda c, v, u=uuid: self._on_write(u, c, v))
            char: gatt.Characteristic[bytes] = gatt.Characteristic(
                _bumble_uuid(uuid), props(flags), perm, value
            )
            characteristics.append(char)
            self._chars[uuid] = char
        service_uuid = ch.service or (
            p.discovery.service_uuids[0] if p.discovery.service_uuids else ch.audio_data
        )
        if p.tap.source == "button" and ch.button is not None and ch.button_service is None:
            characteristics.append(self._button_char())
        device.add_service(gatt.Service(_bumble_uuid(service_uuid), characteristics))
        if p.tap.source == "button" and ch.button is not None and ch.button_service is not None:
            device.add_service(gatt.Service(_bumble_uuid(ch.button_service), [self._button_char()]))
        if self.battery is not None:
            reader: Any = gatt.CharacteristicValue(read=lambda _c: bytes([self.battery or 0]))
            level: gatt.Characteristic[bytes] = gatt.Characteristic(
                _bumble_uuid(ch.battery_level), props.READ | props.NOTIFY, perms.READABLE, reader
            )
            self._chars["battery"] = level
            device.add_service(gatt.Service(_bumble_uuid(ch.battery_service), [level]))

    def _button_char(self) -> gatt.Characteristic[bytes]:
        """omi's button: read gives the last event (none yet: 0), notify sends events."""
        ch, perms = self.profile.characteristics, gatt.Characteristic.Permissions
        read = perms.READABLE | (
            perms.READ_REQUIRES_ENCRYPTION if self.profile.bonding_required else perms(0)
        )
        assert ch.button is not None
        props = gatt.Characteristic.Properties
        char: gatt.Characteristic[bytes] = gatt.Characteristic(
            _bumble_uuid(ch.button), props.READ | props.NOTIFY, read, omi_button_notification(0)
        )
        self._chars[ch.button] = char
        return char

    # ------------------------------------------------------------------- run
    async def __aenter__(self) -> VirtualGlasses:
        self._task = asyncio.create_task(self.run(), name=f"glasses-{self.name}")
        ready = asyncio.create_task(self.ready.wait())
        try:
            done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        if self._task in done:
            self._task.result()  # raises what stopped it
            raise RuntimeError("virtual glasses stopped before advertising")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.stop()
        try:
            await asyncio.wait_for(task, 5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Advertise and serve connections until `stop()`, `vanish()` or cancellation."""
        self._open_recorder()
        try:
            self._transport = await open_transport(self.transport_spec)
            device = Device.with_hci(
                self.name,
                hci.Address(self.address, hci.Address.RANDOM_DEVICE_ADDRESS),
                self._transport.source,
                self._transport.sink,
            )
            self._device = device
            # Like the firmware: the identity handed out when bonding is the static random
            # address the glasses advertise, not the virtual controller's public one.
            device.config.identity_address_type = hci.Address.RANDOM_DEVICE_ADDRESS
            if self.bond_store is not None:
                device.keystore = JsonKeyStore(self.address, str(self.bond_store))
            device.gatt_server.max_mtu = self.profile.max_mtu or 517
            device.advertising_data = _advertising_data(
                self.name,
                self.profile.discovery.service_uuids[0]
                if self.profile.discovery.service_uuids
                else None,
            )
            self._build_services(device)
            self._transport.source.terminated.add_done_callback(self._on_radio_lost)
            device.on(device.EVENT_CONNECTION, self._on_connection)
            device.on("characteristic_subscription", self._on_subscription)
            await device.power_on()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._fault_clock())
                await self._advertise()
                self.ready.set()
                self._emit(
                    "advertising",
                    name=self.name,
                    address=self.address,
                    profile=self.profile.name,
                    codec_id=self.codec_id,
                )
                await self._stop.wait()
                raise _LinkGone  # unwind every connection task
        except* _LinkGone:
            pass
        finally:
            self._tg = None
            await self._shutdown()

    async def _shutdown(self) -> None:
        device, transport = self._device, self._transport
        self._device = self._transport = None
        if device is not None and transport is not None and not self._vanished:
            for conn in list(device.connections.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.disconnect(), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(device.stop_advertising(), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(device.power_off(), 1.0)
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()
        self._close_recorder()
        self._emit("stopped", stats=asdict(self.stats))

    async def _advertise(self) -> None:
        device = self._device
        if device is None or self._stop.is_set():
            return
        await device.start_advertising(
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )

    # ------------------------------------------------------------ connections
    def _on_connection(self, conn: Connection) -> None:
        tg = self._tg
        if tg is None:
            return
        if self._link is not None:  # one central at a time, like the firmware
            tg.create_task(self._refuse(conn))
            return
        tg.create_task(self._serve(conn))

    async def _refuse(self, conn: Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect()

    async def _serve(self, conn: Connection) -> None:
        link = _Link(conn, needs_start=self.profile.audio.control is not None)
        self._link = link
        self.stats.connections += 1
        conn.on(conn.EVENT_DISCONNECTION, lambda reason: link.gone.set())
        self._emit("connected", peer=conn.peer_address.to_string(False))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._stream_audio(link))
                tg.create_task(self._photo_loop(link))
                await link.gone.wait()
                raise _LinkGone
        except* _LinkGone:
            pass
        finally:
            self._link = None
            self.stats.disconnections += 1
            self._silent_until = None
            self._emit("disconnected")
            if not self._stop.is_set():
                await _to_completion(self._advertise())

    def _on_subscription(
        self, bearer: Any, characteristic: gatt.Characteristic[bytes], notify: bool, indicate: bool
    ) -> None:
        link = self._link
        if link is None:
            return
        if notify or indicate:
            link.subscribed.add(characteristic.handle)
        else:
            link.subscribed.discard(characteristic.handle)
        self._emit("subscription", uuid=str(characteristic.uuid), on=bool(notify or indicate))
        self._update_stream_gate(link)

    def _update_stream_gate(self, link: _Link) -> None:
        audio = self._chars[self.profile.characteristics.audio_data]
        if link.mic_on and audio.handle in link.subscribed:
            link.stream_ok.set()
        else:
            link.stream_ok.clear()

    def _secure_ok(self, link: _Link) -> bool:
        return not self.profile.bonding_required or link.conn.is_encrypted

    # ------------------------------------------------------------------ audio
    async def _stream_audio(self, link: _Link) -> None:
        spec = self.codec
        encoder = _Encoder(spec)
        frame_s, frame_bytes = spec.frame_ms / 1000, encoder.frame_bytes
        if self.rewind_on_connect:
            self._position, self._audio_ended = 0, False
        try:
            while True:
                await link.stream_ok.wait()
                while link.conn.att_mtu < self.profile.min_mtu or not self._secure_ok(link):  # noqa: ASYNC110 - two Bumble states, no event for both
                    await asyncio.sleep(0.01)  # firmware: nothing useful below min_mtu
                self._emit("streaming", mtu=int(link.conn.att_mtu))
                start = asyncio.get_running_loop().time()
                k = 0
                while link.stream_ok.is_set():
                    due = start + k * frame_s
                    delay = due - asyncio.get_running_loop().time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if not link.stream_ok.is_set():
                        break
                    k += 1
                    self._advance_clock(frame_s)
                    chunk = self._next_pcm(frame_bytes)
                    if self._silent_until is not None:
                        if time.monotonic() < self._silent_until:
                            continue
                        self._silent_until = None
                    await self._send_audio_frame(link, encoder.encode(chunk), not chunk)
        finally:
            encoder.close()

    def _next_pcm(self, size: int) -> bytes:
        """The next frame of the WAV (padded by the encoder), b"" for silence after it."""
        if self._position >= len(self.pcm):
            if self.loop and self.pcm:
                self._position = 0
            else:
                if not self._audio_ended:
                    self._audio_ended = True
                    self._emit("audio_end")
                return b""
        chunk = self.pcm[self._position : self._position + size]
        self._position += size
        return chunk

    async def _send_audio_frame(self, link: _Link, frame: bytes, silence: bool = False) -> None:
        p = self.profile
        mtu = int(link.conn.att_mtu)
        self.stats.audio_frames += 1
        self.stats.silence_frames += silence
        if p.audio.framing == "omi":
            notes, self._packet_id = omi_audio_notifications(self._packet_id, frame, mtu - 6)
        else:
            flags = p.frame_flags or FrameFlags()
            notes = frame_data_messages(flags, "audio", frame, mtu - 5, final=False)
        char = self._chars[p.characteristics.audio_data]
        for note in notes:
            await self._send_faulty(link, char, note)

    async def _send_faulty(
        self, link: _Link, char: gatt.Characteristic[bytes], note: bytes
    ) -> None:
        f, rng = self.faults, self._rng
        index = link.audio_index
        link.audio_index += 1
        if index in f.malformed_at or (f.malformed and rng.random() < f.malformed):
            await self._send_malformed(link)
        if index in f.drop_at or (f.drop and rng.random() < f.drop):
            self.stats.dropped += 1
            return
        if link.held is None and (
            index in f.reorder_at or (f.reorder and rng.random() < f.reorder)
        ):
            link.held = note
            self.stats.reordered += 1
            return
        await self._notify(link, char, note)
        self.stats.audio_notifications += 1
        if index in f.duplicate_at or (f.duplicate and rng.random() < f.duplicate):
            await self._notify(link, char, note)
            self.stats.duplicated += 1
        if link.held is not None:
            held, link.held = link.held, None
            await self._notify(link, char, held)
            self.stats.audio_notifications += 1

    async def _send_malformed(self, link: _Link) -> None:
        """A notification no decoder can use: too short for its header."""
        bad = bytes([0x01]) if self.profile.audio.framing == "frame" else b"\xab\xcd"
        await self._notify(link, self._chars[self.profile.characteristics.audio_data], bad)
        self.stats.malformed_sent += 1

    async def _notify(self, link: _Link, char: gatt.Characteristic[bytes], value: bytes) -> None:
        device = self._device
        if device is None or link.gone.is_set():
            return
        limit = int(link.conn.att_mtu) - 3
        if len(value) > limit:  # what the stack would do anyway, counted here
            self.stats.truncated += 1
            value = value[:limit]
        hook = self._on_audio_notify
        if hook is not None and char is self._chars.get(self.profile.characteristics.audio_data):
            hook(value, time.monotonic())
        try:
            await device.notify_subscriber(link.conn, char, value)
        except Exception as exc:  # the link went away under us
            log.debug("notify failed: %s", exc)

    # ----------------------------------------------------------------- photos
    async def _photo_loop(self, link: _Link) -> None:
        interval: float | None = None
        while True:
            try:
                async with asyncio.timeout(interval):
                    kind, seconds = await link.photo_commands.get()
            except TimeoutError:
                await self._send_photo(link)
                continue
            if kind == "shot":
                await self._send_photo(link)
            elif kind == "interval":
                interval = float(seconds)
                await self._send_photo(link)
            else:
                interval = None

    async def _send_photo(self, link: _Link) -> None:
        p = self.profile
        uuid = p.characteristics.photo_data
        char = self._chars.get(uuid) if uuid else None
        if char is None or char.handle not in link.subscribed or not self._secure_ok(link):
            self.stats.photos_skipped += 1
            return
        mtu = int(link.conn.att_mtu)
        if p.photo.framing == "omi":
            orientation = 1 if p.photo.orientation_byte else None
            chunks = omi_photo_chunks(self.jpeg, orientation, p.photo.chunk_bytes or 200)
        else:
            chunks = frame_data_messages(p.frame_flags or FrameFlags(), "photo", self.jpeg, mtu - 5)
        for i, chunk in enumerate(chunks):
            index = link.photo_index
            link.photo_index += 1
            if index in self.faults.photo_drop_at:
                self.stats.photo_chunks_dropped += 1
                continue
            await self._notify(link, char, chunk)
            self.stats.photo_chunks += 1
            if i % 8 == 7:
                await asyncio.sleep(0.001)  # let audio interleave, like the firmware's queue
        self.stats.photos_sent += 1
        self._emit("photo", bytes=len(self.jpeg), chunks=len(chunks))

    # ------------------------------------------------------------------ writes
    def _on_write(self, uuid: str, conn: Connection, value: bytes) -> None:
        link = self._link
        if link is None or link.conn is not conn:
            return
        ch, p = self.profile.characteristics, self.profile
        value = bytes(value)
        if uuid == ch.speaker:
            self._on_speaker(link, value)
            return
        handled = False
        if uuid == ch.audio_control and p.audio.control is not None:
            handled = self._on_audio_command(link, value)
        if not handled and uuid == ch.photo_control and p.photo.control is not None:
            handled = self._on_photo_command(link, value)
        if not handled:
            self.stats.unknown_commands += 1
            self._emit("unknown_command", data=value.hex())

    def _count(self, command: str) -> None:
        self.stats.commands[command] = self.stats.commands.get(command, 0) + 1
        self._emit("command", command=command)

    def _on_audio_command(self, link: _Link, value: bytes) -> bool:
        control = self.profile.audio.control
        assert control is not None
        if value == control.start:
            link.mic_on = True
        elif value == control.stop:
            link.mic_on = False
        else:
            return False
        self._count("mic_start" if link.mic_on else "mic_stop")
        self._update_stream_gate(link)
        return True

    def _on_photo_command(self, link: _Link, value: bytes) -> bool:
        control = self.profile.photo.control
        assert control is not None
        width = 2 if control.interval_encoding == "u16le" else 1
        if value == control.one_shot:
            command: tuple[str, int] = ("shot", 0)
        elif value == control.stop:
            command = ("stop", 0)
        elif (
            value.startswith(control.interval_prefix)
            and len(value) == len(control.interval_prefix) + width
        ):
            raw = value[len(control.interval_prefix) :]
            seconds = int.from_bytes(raw, "little", signed=control.interval_encoding == "i8")
            if not control.interval_min_s <= seconds <= control.interval_max_s:
                return False
            command = ("interval", seconds)
        else:
            return False
        self._count(f"photo_{command[0]}")
        try:
            link.photo_commands.put_nowait(command)
        except asyncio.QueueFull:
            self._count("photo_queue_full")
        return True

    def _on_speaker(self, link: _Link, value: bytes) -> None:
        dl = self.profile.downlink
        self.stats.speaker_writes += 1
        if dl.length_prefix == "u32le" and link.speaker_remaining in (None, 0) and len(value) == 4:
            link.speaker_remaining = int.from_bytes(value, "little")
            self.stats.speaker_utterances += 1
            self._emit("speaker_utterance", bytes=link.speaker_remaining)
            return
        if link.speaker_remaining is not None:  # the prefix counts written bytes (Opus too)
            if len(value) > link.speaker_remaining:
                self.stats.speaker_overflow += 1
            link.speaker_remaining = max(0, link.speaker_remaining - len(value))
        if dl.kind == "opus":
            if self._speaker_decoder is None:
                self._speaker_decoder = OpusDecoder(dl.rate)
            try:
                pcm = self._speaker_decoder.decode(value)
            except OpusError:
                self.stats.speaker_decode_errors += 1
                return
        else:
            pcm = value
        self.stats.speaker_bytes += len(pcm)
        self._record(pcm)

    # --------------------------------------------------------------- recorder
    def _open_recorder(self) -> None:
        path = self._record_path
        if path is None or not self.speaker:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = wave.open(str(path), "wb")  # noqa: SIM115 - lives as long as the glasses
        rec.setnchannels(1)
        rec.setsampwidth(SAMPLE_WIDTH)
        rec.setframerate(self.profile.downlink.rate)
        self._recorder = rec

    def _record(self, pcm: bytes) -> None:
        limit = int(MAX_RECORD_SECONDS * self.profile.downlink.rate) * SAMPLE_WIDTH
        if len(self.speaker_pcm) + len(pcm) > limit:
            self.stats.speaker_record_dropped += len(pcm)
            return
        self.speaker_pcm += pcm
        if self._recorder is not None:
            self._recorder.writeframes(pcm)  # patches the header: valid even if killed
            with contextlib.suppress(Exception):
                self._recorder._file.flush()  # type: ignore[attr-defined]

    def _close_recorder(self) -> None:
        rec, self._recorder = self._recorder, None
        if rec is not None:
            with contextlib.suppress(Exception):
                rec.close()

    # ------------------------------------------------------------ fault clock
    def _advance_clock(self, seconds: float) -> None:
        self._stream_clock = (self._stream_clock or 0.0) + seconds

    def _due(self, name: str, at: float | None) -> bool:
        if at is None or name in self._fired or self._stream_clock is None:
            return False
        if self._stream_clock < at:
            return False
        self._fired.add(name)
        self.stats.faults_fired.append(name)
        self._emit("fault", fault=name)
        return True

    async def _fault_clock(self) -> None:
        """Fires the time-based faults once each, on the streamed-seconds clock."""
        f = self.faults
        if (
            f.silent_after is None
            and f.disconnect_after is None
            and f.vanish_after is None
            and not f.tap_at
        ):
            return
        while True:
            await asyncio.sleep(0.02)
            if self._due("silent", f.silent_after):
                self.go_silent(f.silent_for)
            for at in sorted(f.tap_at):
                if self._due(f"tap@{at:g}", at):
                    await self.tap()
            if self._due("disconnect", f.disconnect_after):
                await self.disconnect()
            if self._due("vanish", f.vanish_after):
                await self.vanish()
                return


# ======================================================================== CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent sim glasses",
        description="Virtual BLE glasses on the virtual radio. Prints JSON event lines.",
    )
    p.add_argument("--profile", required=True, help="device profile name or path (e.g. omi)")
    p.add_argument(
        "--transport", required=True, help="Bumble transport, e.g. tcp-client:127.0.0.1:9001"
    )
    p.add_argument("--wav", type=Path, help="16-bit WAV to stream as the microphone")
    p.add_argument(
        "--loop", action="store_true", help="repeat the WAV forever (default: silence after it)"
    )
    p.add_argument(
        "--rewind-on-connect",
        action="store_true",
        help="start the WAV over on every connection (default: go on where it was)",
    )
    p.add_argument(
        "--no-speaker",
        action="store_true",
        help="serve no speaker characteristic, like a production omi",
    )
    p.add_argument("--codec", type=int, help="codec id to report (default: the profile's)")
    p.add_argument("--name", help="advertised name (default: the profile's first prefix)")
    p.add_argument("--address", help="static random address (default: derived from the name)")
    p.add_argument("--jpeg", type=Path, help="photo to send (default: a synthetic JPEG)")
    p.add_argument("--battery", type=int, default=87, help="battery percent (default 87)")
    p.add_argument("--record-speaker", type=Path, help="write speaker audio to this WAV")
    p.add_argument(
        "--bond-store",
        type=Path,
        help="keep bonds in this JSON file across restarts (default: forgotten on exit)",
    )
    p.add_argument("--packet-id-start", type=int, default=0, help="first omi packet id")
    p.add_argument("--adv-interval-ms", type=float, default=ADV_INTERVAL_MS)
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="drop|duplicate|reorder|malformed=RATE, drop-at|duplicate-at|reorder-at|"
        "malformed-at|photo-drop-at=I,J, silent-after|silent-for|disconnect-after|"
        "vanish-after=SECONDS, tap-at=SECONDS,SECONDS (the wearer taps), seed=N "
        "(repeatable)",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def _print_event(event: dict[str, Any]) -> None:
    print(json.dumps(event, default=str), flush=True)


async def _serve(glasses: VirtualGlasses) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, glasses.stop)
    await glasses.run()
    if glasses.radio_lost:
        print("edge-agent sim glasses: the virtual radio went away", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``edge-agent sim glasses``: serve one virtual wearable until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    prog = "edge-agent sim glasses"
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"{prog}: --profile: {exc}", file=sys.stderr)
        return 2
    try:
        faults = Faults.parse(args.fault)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    pcm, rate = b"", 16_000
    if args.wav is not None:
        try:
            pcm, rate = read_wav(args.wav)
        except ValueError as exc:
            print(f"{prog}: --wav: {exc}", file=sys.stderr)
            return 2
    jpeg = None
    if args.jpeg is not None:
        try:
            jpeg = args.jpeg.read_bytes()
        except OSError as exc:
            print(f"{prog}: --jpeg: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        glasses = VirtualGlasses(
            profile,
            args.transport,
            pcm=pcm,
            pcm_rate=rate,
            loop=args.loop,
            rewind_on_connect=args.rewind_on_connect,
            speaker=not args.no_speaker,
            codec_id=args.codec,
            name=args.name,
            address=args.address,
            jpeg=jpeg,
            battery=args.battery,
            faults=faults,
            record_speaker=args.record_speaker,
            bond_store=args.bond_store,
            packet_id_start=args.packet_id_start,
            advertising_interval_ms=args.adv_interval_ms,
            on_event=_print_event,
        )
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(glasses))
    except OSError as exc:
        print(f"{prog}: --transport: cannot reach the radio: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

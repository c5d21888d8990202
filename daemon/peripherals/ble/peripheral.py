"""Glasses over BLE as a `Peripheral`: media up from notifications, model audio down.

Why this shape: `BleCentral` keeps a link up (scan, connect, MTU, bond, backoff); this
module turns one link into media. Each connection gets a session whose tasks live in
one TaskGroup and die with the link: the link watcher, the silence watchdog (connected
but no audio for `silence_timeout` -> disconnect and reconnect), the control writer
(photo commands) and the speaker writer. Notifications are decoded synchronously in
bleak's callback: framing (`AudioPacketTracker` or `FrameMessageDecoder`, told the
fragment size from the MTU) -> `StreamDecoder` (loss concealment) -> 16 kHz
`AudioChunk` -> `sink.audio()`; photos (`PhotoAssembler` or the Frame decoder) ->
`VideoFrame` -> `sink.video()`. Decoders never raise on bad bytes, and the callback
catches anything else, so a malformed packet is a counter, never a crash.

Downlink: the model's 24 kHz PCM is resampled to the device's rate (and Opus-encoded if
the profile says so), queued (bounded, every drop counted by reason) and written in
MTU-sized writes paced in real time. Whenever no connected device speaker can play it -
the profile has none, the connected device lacks the characteristic (a production omi),
its MTU cannot carry the profile's write size, or no glasses are connected - playback
goes to the optional local fallback (e.g. a kiosk speaker), else it is counted as
dropped ("no_speaker" / "not_connected").

Taps: a button characteristic (omi family) or a Frame data message, as the profile's
`[tap]` says, becomes `sink.user_tap()` (counted in `media.taps`) - only while the link
is to the pinned glasses (`input_trusted`); any other tap is dropped and counted in
`pin.untrusted_taps`. The pin (`pinning.Pinning`) is taken at the first audio decoded
on a link, kept in the state directory, and from then on decides which device the
central may connect to at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Protocol

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError

from daemon.media.codecs import CodecSpec, DecoderStats, StreamDecoder
from daemon.media.opus import OpusEncoder, OpusError
from daemon.media.resample import Resampler
from daemon.media.types import SAMPLE_WIDTH, VideoFrame, pcm_duration
from daemon.ops.state import StateStore
from daemon.peripherals.base import CameraUnavailable, MediaSink, Peripheral
from daemon.peripherals.ble.backends import BleBackend, open_backend
from daemon.peripherals.ble.central import (
    BleCentral,
    Link,
    SetupError,
    bounded,
    reraise_pending_cancel,
)
from daemon.peripherals.ble.framing import (
    AudioPacketTracker,
    ButtonDecoder,
    FrameAudio,
    FrameEvent,
    FrameMessageDecoder,
    FrameTap,
    Photo,
    PhotoAssembler,
)
from daemon.peripherals.ble.pinning import Pinning
from daemon.peripherals.ble.profile import DeviceProfile

log = logging.getLogger(__name__)

GATT_TIMEOUT: Final = 3.0
PHOTO_COMMAND_TIMEOUT: Final = 2 * GATT_TIMEOUT  # queued behind others, then written
SEGMENT_SECONDS: Final = 1.0  # longest length-prefixed utterance written at once
TAIL_FLUSH_SECONDS: Final = 0.15  # no new model audio for this long: flush the resampler


class PhotoUnavailable(CameraUnavailable):
    """No photo can be taken now: not connected, the device has no camera control, the
    camera is switched off, or the command was not written in time."""


class Speaker(Protocol):
    """Where audio goes when the glasses have no speaker (e.g. a kiosk or file output)."""

    def play(self, pcm: bytes, rate: int) -> None: ...

    def flush_playback(self) -> float: ...

    def playback_pending(self) -> float: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class MediaStats:
    """Uplink counters not kept by the framing/codec classes."""

    notifications: int = 0  # on the audio characteristic
    photo_notifications: int = 0  # on a separate photo characteristic
    audio_chunks: int = 0
    audio_seconds: float = 0.0
    photos: int = 0
    callback_errors: int = 0  # a bug, not bad input: decoders never raise
    late_notifications: int = 0  # arrived after their session ended
    codec_read_failures: int = 0
    unknown_codec: int = 0  # device reported an id the profile lacks: default used
    missing_characteristics: int = 0  # optional ones (photo, control, speaker, button)
    speaker_mtu_too_small: int = 0  # links whose MTU cannot carry downlink.chunk_bytes
    taps: int = 0  # deliberate taps handed to the sink
    watchdog_disconnects: int = 0
    battery_read_failures: int = 0
    control_writes: int = 0
    control_write_errors: int = 0


@dataclass(slots=True)
class PlaybackStats:
    """Downlink counters; `dropped_seconds` by reason."""

    queued_seconds: float = 0.0
    written_seconds: float = 0.0
    writes: int = 0
    write_errors: int = 0
    utterances: int = 0  # length prefixes written
    padding_seconds: float = 0.0  # silence finishing an utterance cut by an interruption
    fallback_seconds: float = 0.0
    dropped_seconds: dict[str, float] = field(default_factory=dict)


def jpeg_dimensions(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, (0, 0) if none is found."""
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        if marker in (0xC0, 0xC1, 0xC2) and i + 9 <= len(jpeg):
            height, width = struct.unpack(">HH", jpeg[i + 5 : i + 9])
            return width, height
        if marker == 0xDA:
            break
        i += 2 + ((jpeg[i + 2] << 8) | jpeg[i + 3])
    return 0, 0


def _sum_decoder_stats(stats: list[DecoderStats]) -> dict[str, int]:
    return {f.name: sum(getattr(s, f.name) for s in stats) for f in fields(DecoderStats)}


class _SessionEnd(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Session:
    """One connection's media: set up, run its tasks, clean up. Dies with the link."""

    def __init__(self, owner: BlePeripheral, link: Link, sink: MediaSink) -> None:
        self.owner = owner
        self.link = link
        self.client = link.client
        self.sink = sink
        self.active = True
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_audio = time.monotonic()
        self.codec_id = owner.profile.audio.default_codec
        self.codec: CodecSpec | None = None
        self.decoder: StreamDecoder | None = None
        self.subscribed: list[BleakGATTCharacteristic] = []
        self.speaker: BleakGATTCharacteristic | None = None
        self.photo_control: BleakGATTCharacteristic | None = None
        self.audio_control: BleakGATTCharacteristic | None = None
        self.control: asyncio.Queue[tuple[bytes, asyncio.Future[None] | None] | None] = (
            asyncio.Queue(maxsize=8)
        )
        self.wakeup = asyncio.Event()  # playback queued
        self.pin_checked = False  # the first audio of this link went through Pinning

    # ------------------------------------------------------------ lookups
    def _char(self, uuid: str | None, service: str | None = None) -> BleakGATTCharacteristic | None:
        if uuid is None:
            return None
        services = self.client.services
        try:
            if service is not None:
                svc = services.get_service(service)
                if svc is not None:
                    found = svc.get_characteristic(uuid)
                    if found is not None:
                        return found
            return services.get_characteristic(uuid)
        except BleakError:  # the UUID is ambiguous on this device
            return None

    def _end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    # -------------------------------------------------------------- setup
    async def _setup(self) -> None:
        owner, p = self.owner, self.owner.profile
        ch = p.characteristics
        stats = owner.media_stats
        audio = self._char(ch.audio_data, ch.service)
        if audio is None:
            raise SetupError("gatt", f"audio characteristic {ch.audio_data} not found")

        # codec
        codec_char = self._char(ch.codec_id, ch.service)
        if codec_char is not None:
            try:
                async with asyncio.timeout(GATT_TIMEOUT):
                    raw = await self.client.read_gatt_char(codec_char)
                if raw:
                    self.codec_id = raw[0]
                else:
                    stats.codec_read_failures += 1
            except (BleakError, TimeoutError) as exc:
                stats.codec_read_failures += 1
                log.warning("BLE: codec id read failed (%s); using %d", exc, self.codec_id)
        spec = p.audio.codec(self.codec_id)
        if spec is None:
            stats.unknown_codec += 1
            log.warning("BLE: unknown codec id %d; using %d", self.codec_id, p.audio.default_codec)
            self.codec_id = p.audio.default_codec
            spec = p.audio.codec(self.codec_id)
            assert spec is not None  # the profile loader checks default_codec
        self.codec = spec
        self.decoder = owner._decoder_for(self.codec_id, spec)
        owner._reset_framing(self.link.mtu)

        # battery (optional)
        battery = self._char(ch.battery_level, ch.battery_service)
        if battery is not None:
            try:
                async with asyncio.timeout(GATT_TIMEOUT):
                    raw = await self.client.read_gatt_char(battery)
                if raw:
                    owner.battery = min(100, raw[0])
                if "notify" in battery.properties:
                    await self._subscribe(battery, self._on_battery)
            except (BleakError, TimeoutError) as exc:
                stats.battery_read_failures += 1
                log.info("BLE: battery level unavailable: %s", exc)

        # uplink subscriptions
        await self._subscribe(audio, self._on_audio)
        if p.photo.framing != "none":
            photo = self._char(ch.photo_data, ch.service)
            if photo is None:
                stats.missing_characteristics += 1
            elif photo.handle != audio.handle:  # Frame: one characteristic carries both
                await self._subscribe(photo, self._on_photo)

        # control and speaker characteristics (optional)
        if p.audio.control is not None:
            self.audio_control = self._char(ch.audio_control, ch.service)
        if p.photo.control is not None:
            self.photo_control = self._char(ch.photo_control, ch.service)
        if p.downlink.kind != "none":
            self.speaker = self._char(ch.speaker, ch.service)
        for wanted, got in (
            (p.audio.control, self.audio_control),
            (p.photo.control, self.photo_control),
            (p.downlink.kind != "none", self.speaker),
        ):
            if wanted and got is None:
                stats.missing_characteristics += 1
        chunk = p.downlink.chunk_bytes
        if self.speaker is not None and chunk > self.link.mtu - 3:
            # The firmware counts its writes by this size (omi: 400 B each), so smaller
            # or long (prepared) writes would garble the audio: leave the speaker alone.
            stats.speaker_mtu_too_small += 1
            log.warning(
                "BLE: MTU %d cannot carry the speaker's %d-byte writes; speaker not used",
                self.link.mtu,
                chunk,
            )
            self.speaker = None
        if p.tap.source == "button":
            await self._subscribe_button()
        if p.audio.control is not None and self.audio_control is not None:
            async with asyncio.timeout(GATT_TIMEOUT):
                await self._write(self.audio_control, p.audio.control.start)
        if self.photo_control is not None:
            if not owner.camera_enabled:
                self.queue_command(owner._interval_command(None))
            elif owner.photo_interval is not None:
                self.queue_command(owner._interval_command(owner.photo_interval))

    async def _subscribe_button(self) -> None:
        """The optional button: absent or refusing notifications costs only the taps."""
        ch = self.owner.profile.characteristics
        button = self._char(ch.button, ch.button_service)
        if button is None:
            self.owner.media_stats.missing_characteristics += 1
            return
        try:
            await self._subscribe(button, self._on_button)
        except (BleakError, TimeoutError) as exc:
            self.owner.media_stats.missing_characteristics += 1
            log.info("BLE: button notifications unavailable: %s", exc)

    async def _subscribe(self, char: BleakGATTCharacteristic, callback: Any) -> None:
        async with asyncio.timeout(GATT_TIMEOUT):
            await self.client.start_notify(char, callback)
        self.subscribed.append(char)

    async def _write(self, char: BleakGATTCharacteristic, data: bytes) -> None:
        self.owner.media_stats.control_writes += 1
        await self.client.write_gatt_char(char, data, response="write" in char.properties)

    # ------------------------------------------------------ notifications
    def _on_audio(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        owner = self.owner
        if not self.active:
            owner.media_stats.late_notifications += 1
            return
        owner.media_stats.notifications += 1
        now = time.monotonic()
        try:
            if owner.tracker is not None:
                push = owner.tracker.push(bytes(data))
                hook = owner.on_audio_frame
                for frame in push.frames:
                    if hook is not None:
                        hook(frame.packet_id, now)
                    self._decode(frame.payload, frame.lost_before, frame.discontinuity, now)
            elif owner.frame_decoder is not None:
                self._frame_event(owner.frame_decoder.push(bytes(data)), now)
        except Exception:  # a bug, not bad input; keep the stream alive
            owner.media_stats.callback_errors += 1
            log.exception("BLE audio notification handling failed")

    def _frame_event(self, event: FrameEvent | None, now: float) -> None:
        if isinstance(event, FrameAudio):
            if event.pcm:
                self._decode(event.pcm, 0, False, now)
        elif isinstance(event, Photo):
            self._emit_photo(event, now)
        elif isinstance(event, FrameTap):
            self._tap()

    def _on_photo(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        owner = self.owner
        if not self.active:
            owner.media_stats.late_notifications += 1
            return
        owner.media_stats.photo_notifications += 1
        try:
            if owner.photo_assembler is not None:
                photo = owner.photo_assembler.push(bytes(data))
                if photo is not None:
                    self._emit_photo(photo, time.monotonic())
            elif owner.frame_decoder is not None:
                self._frame_event(owner.frame_decoder.push(bytes(data)), time.monotonic())
        except Exception:
            owner.media_stats.callback_errors += 1
            log.exception("BLE photo notification handling failed")

    def _on_button(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        owner = self.owner
        if not self.active:
            owner.media_stats.late_notifications += 1
            return
        try:
            if owner.button_decoder is not None and owner.button_decoder.push(bytes(data)):
                self._tap()
        except Exception:
            owner.media_stats.callback_errors += 1
            log.exception("BLE button notification handling failed")

    def _tap(self) -> None:
        owner = self.owner
        if not owner.input_trusted:  # not (yet) the pinned glasses: a tap confirms nothing
            owner.pinning.stats.untrusted_taps += 1
            return
        owner.media_stats.taps += 1
        self.sink.user_tap()

    def _on_battery(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self.active and data:
            self.owner.battery = min(100, data[0])

    def _decode(self, payload: bytes, lost: int, discontinuity: bool, now: float) -> None:
        assert self.decoder is not None
        chunk = self.decoder.decode(
            payload, lost_before=lost, discontinuity=discontinuity, captured_at=now
        )
        if chunk is None:
            return
        stats = self.owner.media_stats
        stats.audio_chunks += 1
        stats.audio_seconds += chunk.duration
        self.last_audio = now
        self.link.healthy = True
        if not self.pin_checked:  # the link really works: services found, audio decoded
            self.pin_checked = True
            found = self.link.found
            self.owner.pinning.confirm(
                found.address, found.name, bonded=self.owner.profile.bonding_required
            )
        self.sink.audio(chunk)

    def _emit_photo(self, photo: Photo, now: float) -> None:
        width, height = jpeg_dimensions(photo.jpeg)
        self.owner.media_stats.photos += 1
        self.owner.last_photo_rotation = photo.rotation_degrees
        self.sink.video(VideoFrame(photo.jpeg, now, width, height))

    # -------------------------------------------------------------- tasks
    async def _watch_link(self) -> None:
        await self.link.lost.wait()
        self._end("link_lost")

    async def _watchdog(self) -> None:
        timeout = self.owner.silence_timeout
        while True:
            idle = time.monotonic() - self.last_audio
            if idle >= timeout:
                self.owner.media_stats.watchdog_disconnects += 1
                log.warning("BLE: no audio for %.1f s; reconnecting", idle)
                self._end("watchdog")
                return
            await asyncio.sleep(timeout - idle)

    def queue_command(self, data: bytes, done: asyncio.Future[None] | None = None) -> None:
        try:
            self.control.put_nowait((data, done))
        except asyncio.QueueFull:
            self.owner.media_stats.control_write_errors += 1
            if done is not None and not done.done():
                done.set_exception(PhotoUnavailable("camera command queue is full"))

    def _stop_control_writer(self) -> None:
        """Tell the writer to stop through its queue too: a cancel that lands inside
        a Bumble GATT request has been seen to vanish, leaving the writer waiting."""
        while True:
            try:
                self.control.put_nowait(None)
                return
            except asyncio.QueueFull:
                item = self.control.get_nowait()
                if item is not None and item[1] is not None and not item[1].done():
                    item[1].set_exception(PhotoUnavailable("disconnected"))

    async def _control_writer(self) -> None:
        while True:
            item = await self.control.get()
            if item is None:
                return
            data, done = item
            char = self.photo_control
            try:
                if char is None:
                    raise PhotoUnavailable("the device has no photo control characteristic")
                async with asyncio.timeout(GATT_TIMEOUT):
                    await self._write(char, data)
            except (BleakError, TimeoutError, PhotoUnavailable) as exc:
                self.owner.media_stats.control_write_errors += 1
                if done is not None and not done.done():
                    done.set_exception(PhotoUnavailable(f"camera command failed: {exc}"))
                reraise_pending_cancel()
                continue
            if done is not None and not done.done():
                done.set_result(None)

    async def _playback_writer(self) -> None:
        """Write queued speaker audio in MTU-sized pieces, at most `lead` ahead of real time."""
        owner, char = self.owner, self.speaker
        assert char is not None
        dl = owner.profile.downlink
        no_response = "write-without-response" in char.properties
        # Exactly chunk_bytes per write when the profile fixes it (setup checked that
        # it fits the MTU), else as much as one write carries; never a long write.
        limit = dl.chunk_bytes or self.link.mtu - 3
        limit = max(SAMPLE_WIDTH, limit - limit % SAMPLE_WIDTH)
        play_clock = 0.0
        remaining = 0  # bytes still owed to the current length-prefixed utterance
        while True:
            if not owner._pb_queue:
                if remaining and dl.kind == "pcm16":  # interrupted mid-utterance: pad silence
                    owner.playback_stats.padding_seconds += pcm_duration(remaining, dl.rate)
                    while remaining:
                        piece = min(limit, remaining)
                        await self._speaker_write(char, bytes(piece), no_response)
                        remaining -= piece
                remaining = 0
                self.wakeup.clear()
                try:
                    async with asyncio.timeout(TAIL_FLUSH_SECONDS):
                        await self.wakeup.wait()
                except TimeoutError:  # the reply paused: play the resampler's tail too
                    if not owner._flush_tail(self):
                        await self.wakeup.wait()
                continue
            if dl.length_prefix == "u32le" and remaining == 0:
                remaining = owner._segment_bytes()
                await self._speaker_write(char, remaining.to_bytes(4, "little"), no_response)
                owner.playback_stats.utterances += 1
            if dl.kind == "opus":
                data, seconds = owner._take_packet(), dl.frame_ms / 1000
            else:
                data = owner._take_pcm(min(limit, remaining) if remaining else limit)
                seconds = pcm_duration(len(data), dl.rate)
            remaining = max(0, remaining - len(data))
            now = time.monotonic()
            ahead = play_clock - now
            if ahead > owner.playback_lead:
                await asyncio.sleep(ahead - owner.playback_lead)
                now = time.monotonic()
            if await self._speaker_write(char, data, no_response):
                owner.playback_stats.written_seconds += seconds
            else:
                owner._drop("write_error", seconds)
            play_clock = max(play_clock, now) + seconds
            owner._play_clock = play_clock

    async def _speaker_write(
        self, char: BleakGATTCharacteristic, data: bytes, no_response: bool
    ) -> bool:
        try:
            async with asyncio.timeout(GATT_TIMEOUT):
                await self.client.write_gatt_char(char, data, response=not no_response)
        except (BleakError, TimeoutError) as exc:
            self.owner.playback_stats.write_errors += 1
            log.debug("BLE speaker write failed: %s", exc)
            reraise_pending_cancel()
            return False
        self.owner.playback_stats.writes += 1
        return True

    # -------------------------------------------------------------- run
    async def run(self) -> str:
        pinning, address = self.owner.pinning, self.link.found.address
        if not pinning.allows(address):  # the central refuses these; never carry their media
            pinning.refuse(address, "device")
            self.active = False
            return "refused"
        try:
            await self._setup()
        except (BleakError, TimeoutError, SetupError) as exc:
            log.warning("BLE session setup failed: %s", exc)
            return "link_lost" if self.link.lost.is_set() else "setup_failed"
        self.last_audio = time.monotonic()
        reason = "link_lost"
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_link())
                tg.create_task(self._watchdog())
                tg.create_task(self._control_writer())
                if self.speaker is not None:
                    tg.create_task(self._playback_writer())
                try:
                    reason = await self.ended
                finally:
                    self._stop_control_writer()
                raise _SessionEnd(reason)
        except* _SessionEnd as group:
            reason = str(group.exceptions[0])
        finally:
            self.active = False
            self._fail_pending()
            if not self.link.lost.is_set():
                await bounded(self._clean_up(), GATT_TIMEOUT + 0.5, "BLE unsubscribe")
        return reason

    def _fail_pending(self) -> None:
        while not self.control.empty():
            item = self.control.get_nowait()
            if item is None:
                continue
            _, done = item
            if done is not None and not done.done():
                done.set_exception(PhotoUnavailable("disconnected"))

    async def _clean_up(self) -> None:
        """Stop the microphone and unsubscribe, bounded (the link may be dying)."""
        p = self.owner.profile
        with contextlib.suppress(Exception):
            async with asyncio.timeout(GATT_TIMEOUT):
                if p.audio.control is not None and self.audio_control is not None:
                    await self._write(self.audio_control, p.audio.control.stop)
                for char in self.subscribed:
                    await self.client.stop_notify(char)


class BlePeripheral(Peripheral):
    """Smart glasses described by a device profile, over bleak (BlueZ or the virtual radio)."""

    kind = "ble"

    def __init__(
        self,
        profile: DeviceProfile,
        backend: str | BleBackend = "bluez",
        *,
        address: str = "",
        silence_timeout: float = 5.0,
        scan_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        max_playback_seconds: float = 60.0,
        playback_lead: float = 0.1,
        opus_bitrate: int = 24_000,
        speaker_fallback: Speaker | None = None,
        rng: random.Random | None = None,
        on_audio_frame: Callable[[int, float], None] | None = None,
        on_native_pcm: Callable[[bytes, int], None] | None = None,
        state: StateStore | None = None,
    ) -> None:
        """`on_audio_frame` is a measurement hook (bench/ble_pipeline.py): called with
        each reassembled omi audio frame's packet id and its notification's receive time
        (`time.monotonic()`), just before the frame is decoded and handed to the sink.
        Unset, it costs one test per notification.

        `on_native_pcm` (tests) sees the decoded audio at the device codec's own rate,
        with that rate, before it is resampled to 16 kHz (see `StreamDecoder`).

        `state` keeps the pinned glasses across restarts (memory only without it), and
        its directory fixes the virtual host's address (never a key is stored there);
        `address` pins explicitly (PinError if it is not a Bluetooth address).
        """
        self.profile = profile
        self.backend = (
            open_backend(backend, state_dir=state.directory if state is not None else None)
            if isinstance(backend, str)
            else backend
        )
        self.silence_timeout = max(0.1, silence_timeout)
        self.max_playback_seconds = max_playback_seconds
        self.playback_lead = max(0.0, playback_lead)
        self.opus_bitrate = opus_bitrate
        self.speaker_fallback = speaker_fallback
        self.on_audio_frame = on_audio_frame
        self.on_native_pcm = on_native_pcm
        self.pinning = Pinning(profile.name, state, configured=address)
        self.central = BleCentral(
            profile,
            self.backend,
            scan_timeout=scan_timeout,
            connect_timeout=connect_timeout,
            backoff_initial=backoff_initial,
            backoff_cap=backoff_cap,
            rng=rng,
            pinning=self.pinning,
        )
        self.media_stats = MediaStats()
        self.playback_stats = PlaybackStats()
        self.battery: int | None = None
        self.photo_interval: float | None = None
        self.camera_enabled = True
        self.last_photo_rotation = 0
        # Framing state lives across connections so its counters are cumulative.
        self.tracker = AudioPacketTracker() if profile.audio.framing == "omi" else None
        self.frame_decoder = (
            FrameMessageDecoder(profile.frame_flags, max_photo_bytes=profile.photo.max_bytes)
            if profile.audio.framing == "frame" or profile.photo.framing == "frame"
            else None
        )
        self.photo_assembler = (
            PhotoAssembler(
                orientation_byte=profile.photo.orientation_byte,
                max_bytes=profile.photo.max_bytes,
                chunk_bytes=profile.photo.chunk_bytes,
            )
            if profile.photo.framing == "omi"
            else None
        )
        self.button_decoder = (
            ButtonDecoder(profile.tap.events) if profile.tap.source == "button" else None
        )
        self._decoders: dict[int, StreamDecoder] = {}
        self._retired_decoder_stats: list[DecoderStats] = []
        self._session: _Session | None = None
        # playback queue (device format)
        self._pb_queue: deque[bytes] = deque()
        self._pb_queued_bytes = 0
        self._pb_queued_seconds = 0.0
        self._play_clock = 0.0
        self._pb_resampler: Resampler | None = None
        self._pb_encoder: OpusEncoder | None = None
        self._pb_carry = b""

    # ------------------------------------------------------------- internals
    def _decoder_for(self, codec_id: int, spec: CodecSpec) -> StreamDecoder:
        decoder = self._decoders.get(codec_id)
        if decoder is None:
            hook = self.on_native_pcm
            on_native = None if hook is None else (lambda pcm: hook(pcm, spec.rate))
            decoder = self._decoders[codec_id] = StreamDecoder(spec, on_native=on_native)
        else:
            decoder.reset()
        return decoder

    def _reset_framing(self, mtu: int) -> None:
        if self.tracker is not None:
            self.tracker.reset()
            self.tracker.fragment_payload_max = max(1, mtu - 6)
        if self.frame_decoder is not None:
            self.frame_decoder.reset()
        if self.photo_assembler is not None:
            self.photo_assembler.reset()

    def _interval_command(self, seconds: float | None) -> bytes:
        control = self.profile.photo.control
        assert control is not None
        return control.stop if seconds is None else control.interval(round(seconds))

    async def _session_for(self, link: Link, sink: MediaSink) -> str:
        session = _Session(self, link, sink)
        self._session = session
        try:
            return await session.run()
        finally:
            self._session = None
            self._drop_queue("not_connected")
            sink.input_paused()

    # --------------------------------------------------------------- capture
    async def run(self, sink: MediaSink) -> None:
        try:
            await self.central.run(lambda link: self._session_for(link, sink))
        finally:
            await bounded(self.backend.aclose(), 5.0, "BLE backend shutdown")
            for decoder in self._decoders.values():
                decoder.close()
                self._retired_decoder_stats.append(decoder.stats)
            self._decoders.clear()
            if self._pb_encoder is not None:
                self._pb_encoder.close()
                self._pb_encoder = None

    # -------------------------------------------------------------- playback
    def _drop(self, reason: str, seconds: float) -> None:
        if seconds > 0:
            dropped = self.playback_stats.dropped_seconds
            dropped[reason] = dropped.get(reason, 0.0) + seconds

    def _drop_queue(self, reason: str) -> float:
        seconds = self._pb_queued_seconds
        self._pb_queue.clear()
        self._pb_queued_bytes = 0
        self._pb_queued_seconds = 0.0
        self._pb_carry = b""
        if self._pb_resampler is not None:
            self._pb_resampler.reset()
        self._drop(reason, seconds)
        return seconds

    def _segment_bytes(self) -> int:
        """Length of the next length-prefixed utterance: what is queued, at most 1 s."""
        dl = self.profile.downlink
        if dl.kind == "opus":
            count = max(1, int(SEGMENT_SECONDS * 1000 / dl.frame_ms))
            return sum(len(p) for _, p in zip(range(count), self._pb_queue, strict=False))
        return min(self._pb_queued_bytes, int(SEGMENT_SECONDS * dl.rate) * SAMPLE_WIDTH)

    def _take_packet(self) -> bytes:
        packet = self._pb_queue.popleft()
        self._pb_queued_bytes -= len(packet)
        self._pb_queued_seconds = (
            max(0.0, self._pb_queued_seconds - self.profile.downlink.frame_ms / 1000)
            if self._pb_queue
            else 0.0  # no float residue: an empty queue holds exactly nothing
        )
        return packet

    def _take_pcm(self, size: int) -> bytes:
        out = bytearray()
        while self._pb_queue and len(out) < size:
            head = self._pb_queue.popleft()
            need = size - len(out)
            if len(head) > need:
                self._pb_queue.appendleft(head[need:])
                head = head[:need]
            out += head
        self._pb_queued_bytes -= len(out)
        self._pb_queued_seconds = (
            max(0.0, self._pb_queued_seconds - pcm_duration(len(out), self.profile.downlink.rate))
            if self._pb_queue
            else 0.0  # no float residue: an empty queue holds exactly nothing
        )
        return bytes(out)

    def play(self, pcm: bytes, rate: int) -> None:
        seconds = pcm_duration(len(pcm), rate)
        dl = self.profile.downlink
        session = self._session
        if session is None or session.speaker is None:  # no device speaker to play it
            if self.speaker_fallback is not None:
                self.speaker_fallback.play(pcm, rate)
                self.playback_stats.fallback_seconds += seconds
            elif session is None and dl.kind != "none":
                self._drop("not_connected", seconds)
            else:
                self._drop("no_speaker", seconds)
            return
        if self._pb_queued_seconds + seconds > self.max_playback_seconds:
            self._drop("overflow", seconds)
            return
        if self._pb_resampler is None or self._pb_resampler.in_rate != rate:
            self._pb_resampler = Resampler(rate, dl.rate)
        self._queue_device_pcm(self._pb_resampler.process(pcm), session)
        self.playback_stats.queued_seconds += seconds
        session.wakeup.set()

    def _queue_device_pcm(self, device_pcm: bytes, session: _Session) -> None:
        dl = self.profile.downlink
        if dl.kind == "opus":
            self._queue_opus(device_pcm, session)
        elif device_pcm:
            self._pb_queue.append(device_pcm)
            self._pb_queued_bytes += len(device_pcm)
            self._pb_queued_seconds += pcm_duration(len(device_pcm), dl.rate)

    def _flush_tail(self, session: _Session) -> bool:
        """Queue what the resampler (and the Opus frame carry) still holds; True if any."""
        tail = self._pb_resampler.flush() if self._pb_resampler is not None else b""
        if self.profile.downlink.kind == "opus" and (tail or self._pb_carry):
            size = self._pb_encoder.frame_bytes if self._pb_encoder is not None else 0
            data = self._pb_carry + tail
            tail = data + bytes(-len(data) % size) if size else data
            self._pb_carry = b""
        self._queue_device_pcm(tail, session)
        return bool(self._pb_queue)

    def _queue_opus(self, pcm: bytes, session: _Session) -> None:
        dl = self.profile.downlink
        if self._pb_encoder is None:
            self._pb_encoder = OpusEncoder(dl.rate, dl.frame_ms, bitrate=self.opus_bitrate)
        encoder = self._pb_encoder
        data = self._pb_carry + pcm
        step = encoder.frame_bytes
        offset = 0
        limit = session.link.mtu - 3
        while len(data) - offset >= step:
            try:
                packet = encoder.encode(data[offset : offset + step])
            except OpusError:
                packet = b""
            offset += step
            if not packet or len(packet) > limit:
                self._drop("oversize", dl.frame_ms / 1000)
                continue
            self._pb_queue.append(packet)
            self._pb_queued_bytes += len(packet)
            self._pb_queued_seconds += dl.frame_ms / 1000
        self._pb_carry = data[offset:]

    def flush_playback(self) -> float:
        """Both outputs are flushed: a reply may have begun on one and gone on on the other."""
        dropped = self._drop_queue("interrupted")
        if self.speaker_fallback is not None:
            dropped += self.speaker_fallback.flush_playback()
        return dropped

    def playback_pending(self) -> float:
        pending = self._pb_queued_seconds + max(0.0, self._play_clock - time.monotonic())
        if self.speaker_fallback is not None:
            pending += self.speaker_fallback.playback_pending()
        return pending

    # ----------------------------------------------------------------- trust
    @property
    def input_trusted(self) -> bool:
        """Only while the link is to the pinned glasses (before the first pin: never)."""
        session = self._session
        return session is not None and self.pinning.trusted(session.link.found.address)

    @property
    def can_tap(self) -> bool:
        return self.profile.tap.source != "none"

    # ---------------------------------------------------------------- camera
    @property
    def has_camera(self) -> bool:
        return self.profile.has_camera

    async def take_photo(self) -> None:
        """Ask the glasses for one photo now; it arrives later through `sink.video()`.

        Raises PhotoUnavailable if not connected, the device has no camera control, the
        camera is switched off, or the command was not written in time.
        """
        control = self.profile.photo.control
        if control is None:
            raise PhotoUnavailable(f"{self.profile.display_name} has no camera control")
        if not self.camera_enabled:
            raise PhotoUnavailable("the camera is switched off")
        session = self._session
        if session is None or session.photo_control is None:
            raise PhotoUnavailable("glasses not connected")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session.queue_command(control.one_shot, done)
        try:
            async with asyncio.timeout(PHOTO_COMMAND_TIMEOUT):
                await done
        except TimeoutError:
            self.media_stats.control_write_errors += 1
            raise PhotoUnavailable("the camera command was not written in time") from None

    def set_photo_interval(self, seconds: float | None) -> None:
        """A photo every `seconds` (clamped to the device's range), None to stop.

        Remembered and re-sent after every reconnect. PhotoUnavailable if no camera.
        """
        if self.profile.photo.control is None:
            raise PhotoUnavailable(f"{self.profile.display_name} has no camera control")
        if seconds is not None and seconds <= 0:
            raise ValueError("photo interval must be positive (or None to stop)")
        self.photo_interval = seconds
        session = self._session
        if self.camera_enabled and session is not None and session.photo_control is not None:
            session.queue_command(self._interval_command(seconds))

    def set_camera_enabled(self, enabled: bool) -> None:
        """The user's camera switch. Off stops interval capture on the device (and
        refuses one-shot photos); on resumes the interval set by `set_photo_interval`.
        Remembered and applied after every reconnect; a device without camera control
        has nothing to switch.
        """
        changed = enabled != self.camera_enabled
        self.camera_enabled = enabled
        session = self._session
        if self.profile.photo.control is None or session is None or not changed:
            return
        if session.photo_control is None:
            return
        if not enabled:
            session.queue_command(self._interval_command(None))
        elif self.photo_interval is not None:
            session.queue_command(self._interval_command(self.photo_interval))

    def close(self) -> None:
        if self.speaker_fallback is not None:
            self.speaker_fallback.close()

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        session, found = self._session, self.central.last_found
        codec = session.codec if session is not None else None
        out: dict[str, Any] = {
            "kind": self.kind,
            "profile": self.profile.name,
            "device": self.profile.display_name,
            "backend": "virtual" if self.backend.virtual else self.backend.name,
            "state": self.central.state,
            "connected": session is not None,
            "name": found.name if found else None,
            "address": found.address if found else None,
            "rssi": found.rssi if found else None,
            "mtu": session.link.mtu if session is not None else None,
            "codec": codec.describe() if codec is not None else None,
            "codec_id": session.codec_id if session is not None else None,
            "photo_rotation_degrees": self.last_photo_rotation,
            "camera_enabled": self.camera_enabled,
        }
        if self.battery is not None:
            out["battery"] = self.battery
        out["link"] = asdict(self.central.stats)
        out["media"] = asdict(self.media_stats)
        out["pin"] = {**self.pinning.status(), "trusted": self.input_trusted}
        if self.tracker is not None:
            out["audio_framing"] = asdict(self.tracker.stats)
        if self.frame_decoder is not None:
            out["frame_framing"] = asdict(self.frame_decoder.stats)
        if self.photo_assembler is not None:
            out["photo_framing"] = asdict(self.photo_assembler.stats)
        if self.button_decoder is not None:
            out["button"] = asdict(self.button_decoder.stats)
        out["decoder"] = _sum_decoder_stats(
            [*self._retired_decoder_stats, *(d.stats for d in self._decoders.values())]
        )
        playback = asdict(self.playback_stats)
        playback["pending_seconds"] = round(self.playback_pending(), 3)
        out["playback"] = playback
        return out

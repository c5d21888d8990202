"""One BLE connection's media session: set up, run its tasks, clean up; dies with the link.

Why per connection: everything here belongs to one link - its characteristics, codec
and subscriptions - and must not leak into the next. The session's tasks live in one
TaskGroup: the link watcher, the silence watchdog (connected but no audio for
`silence_timeout` -> disconnect and reconnect), the control writer (photo commands)
and the speaker writer (`PlaybackQueue.write_out`). Notifications are decoded
synchronously in bleak's callback: framing -> `StreamDecoder` (loss concealment) ->
16 kHz `AudioChunk` -> `sink.audio()` (with push-to-talk, only while talk is on: talk.py);
photos -> `VideoFrame` -> `sink.video()`; taps -> `sink.user_tap()` and talk gestures ->
`kit.talk` from the pinned glasses only. Decoders never raise on bad bytes,
and the callbacks catch anything else, so a malformed packet is a counter, never a crash.

What a session shares with the peripheral that outlives it comes in one `SessionKit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError

from daemon.media.codecs import CodecSpec, StreamDecoder
from daemon.media.level import mean_square
from daemon.media.types import VideoFrame
from daemon.peripherals.base import CameraUnavailable, MediaSink
from daemon.peripherals.ble.central import Link, SetupError, bounded, reraise_pending_cancel
from daemon.peripherals.ble.framing import FrameAudio, FrameEvent, FrameTalk, FrameTap, Photo
from daemon.peripherals.ble.photo_pacing import PhotoPacer
from daemon.peripherals.ble.pinning import Pinning
from daemon.peripherals.ble.playback import PlaybackQueue
from daemon.peripherals.ble.profile import DeviceProfile
from daemon.peripherals.ble.talk import TalkGate
from daemon.peripherals.ble.uplink import UplinkDecoders, jpeg_dimensions

__all__ = [
    "GATT_TIMEOUT",
    "DeviceReadings",
    "LinkSession",
    "MediaStats",
    "PhotoUnavailable",
    "SessionKit",
]

log = logging.getLogger(__name__)

GATT_TIMEOUT: Final = 3.0

ControlItem = tuple[bytes, asyncio.Future[None] | None]


class PhotoUnavailable(CameraUnavailable):
    """No photo can be taken now: not connected, the device has no camera control, the
    camera is switched off, or the command was not written in time."""


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
class DeviceReadings:
    """What the glasses last reported, kept across connections for `status()`."""

    battery: int | None = None
    photo_rotation: int = 0  # degrees, of the last photo


@dataclass(frozen=True, slots=True)
class SessionKit:
    """What every connection's session shares with the peripheral that outlives it."""

    profile: DeviceProfile
    uplink: UplinkDecoders
    playback: PlaybackQueue
    pinning: Pinning
    stats: MediaStats
    readings: DeviceReadings
    silence_timeout: float
    # The command that puts a newly connected camera in the user's chosen state
    # (off, or the interval asked for), None if it needs none; read at setup.
    camera_command: Callable[[], bytes | None]
    # bench/ble_pipeline.py: each reassembled omi frame's packet id and receive time.
    on_audio_frame: Callable[[int, float], None] | None = None
    # A camera's photo requests wait for a pause in the user's speech: it hears each frame.
    pacer: PhotoPacer | None = None
    # Push-to-talk on the glasses (talk.py); `on_talk` hears talk go on (True) and off.
    talk: TalkGate = field(default_factory=TalkGate)
    on_talk: Callable[[bool], None] | None = None


class _SessionEnd(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LinkSession:
    """One connection's media: set up, run its tasks, clean up. Dies with the link."""

    def __init__(self, kit: SessionKit, link: Link, sink: MediaSink) -> None:
        self.kit = kit
        self.stats = kit.stats
        self.uplink = kit.uplink
        self.link = link
        self.client = link.client
        self.sink = sink
        self.active = True
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_audio = time.monotonic()
        self.codec_id = kit.profile.audio.default_codec
        self.codec: CodecSpec | None = None
        self.decoder: StreamDecoder | None = None
        self.subscribed: list[BleakGATTCharacteristic] = []
        self.speaker: BleakGATTCharacteristic | None = None
        self.photo_control: BleakGATTCharacteristic | None = None
        self.audio_control: BleakGATTCharacteristic | None = None
        self.control: asyncio.Queue[ControlItem | None] = asyncio.Queue(maxsize=8)
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
        p = self.kit.profile
        ch = p.characteristics
        audio = self._char(ch.audio_data, ch.service)
        if audio is None:
            raise SetupError("gatt", f"audio characteristic {ch.audio_data} not found")
        await self._choose_codec()
        await self._read_battery()
        await self._subscribe(audio, self._on_audio)
        if p.photo.framing != "none":
            photo = self._char(ch.photo_data, ch.service)
            if photo is None:
                self.stats.missing_characteristics += 1
            elif photo.handle != audio.handle:  # Frame: one characteristic carries both
                await self._subscribe(photo, self._on_photo)
        self._find_outputs()
        if p.tap.source == "button":
            await self._subscribe_button()
        await self._start_device()

    async def _choose_codec(self) -> None:
        """The codec the device reports (the profile's default if it cannot say)."""
        p, ch = self.kit.profile, self.kit.profile.characteristics
        codec_char = self._char(ch.codec_id, ch.service)
        if codec_char is not None:
            try:
                async with asyncio.timeout(GATT_TIMEOUT):
                    raw = await self.client.read_gatt_char(codec_char)
                if raw:
                    self.codec_id = raw[0]
                else:
                    self.stats.codec_read_failures += 1
            except (BleakError, TimeoutError) as exc:
                self.stats.codec_read_failures += 1
                log.warning("BLE: codec id read failed (%s); using %d", exc, self.codec_id)
        spec = p.audio.codec(self.codec_id)
        if spec is None:
            self.stats.unknown_codec += 1
            log.warning("BLE: unknown codec id %d; using %d", self.codec_id, p.audio.default_codec)
            self.codec_id = p.audio.default_codec
            spec = p.audio.codec(self.codec_id)
            assert spec is not None  # the profile loader checks default_codec
        self.codec = spec
        self.decoder = self.uplink.decoder_for(self.codec_id, spec)
        self.uplink.new_link(self.link.mtu)

    async def _read_battery(self) -> None:
        """The optional battery level, and its notifications if it has them."""
        ch = self.kit.profile.characteristics
        battery = self._char(ch.battery_level, ch.battery_service)
        if battery is None:
            return
        try:
            async with asyncio.timeout(GATT_TIMEOUT):
                raw = await self.client.read_gatt_char(battery)
            if raw:
                self.kit.readings.battery = min(100, raw[0])
            if "notify" in battery.properties:
                await self._subscribe(battery, self._on_battery)
        except (BleakError, TimeoutError) as exc:
            self.stats.battery_read_failures += 1
            log.info("BLE: battery level unavailable: %s", exc)

    def _find_outputs(self) -> None:
        """The optional control and speaker characteristics; each missing one counted."""
        p = self.kit.profile
        ch = p.characteristics
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
                self.stats.missing_characteristics += 1
        chunk = p.downlink.chunk_bytes
        if self.speaker is not None and chunk > self.link.mtu - 3:
            # The firmware counts its writes by this size (omi: 400 B each), so smaller
            # or long (prepared) writes would garble the audio: leave the speaker alone.
            self.stats.speaker_mtu_too_small += 1
            log.warning(
                "BLE: MTU %d cannot carry the speaker's %d-byte writes; speaker not used",
                self.link.mtu,
                chunk,
            )
            self.speaker = None

    async def _start_device(self) -> None:
        """Start the microphone, and put the camera in the user's chosen state."""
        control = self.kit.profile.audio.control
        if control is not None and self.audio_control is not None:
            async with asyncio.timeout(GATT_TIMEOUT):
                await self._write(self.audio_control, control.start)
        if self.photo_control is not None:
            command = self.kit.camera_command()
            if command is not None:
                self.queue_command(command)

    async def _subscribe_button(self) -> None:
        """The optional button: absent or refusing notifications costs only the taps."""
        ch = self.kit.profile.characteristics
        button = self._char(ch.button, ch.button_service)
        if button is None:
            self.stats.missing_characteristics += 1
            return
        try:
            await self._subscribe(button, self._on_button)
        except (BleakError, TimeoutError) as exc:
            self.stats.missing_characteristics += 1
            log.info("BLE: button notifications unavailable: %s", exc)

    async def _subscribe(self, char: BleakGATTCharacteristic, callback: Any) -> None:
        async with asyncio.timeout(GATT_TIMEOUT):
            await self.client.start_notify(char, callback)
        self.subscribed.append(char)

    async def _write(self, char: BleakGATTCharacteristic, data: bytes) -> None:
        self.stats.control_writes += 1
        await self.client.write_gatt_char(char, data, response="write" in char.properties)

    # ------------------------------------------------------ notifications
    def _on_audio(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        stats = self.stats
        if not self.active:
            stats.late_notifications += 1
            return
        stats.notifications += 1
        now = time.monotonic()
        uplink = self.uplink
        try:
            if uplink.tracker is not None:
                push = uplink.tracker.push(bytes(data))
                hook = self.kit.on_audio_frame
                for frame in push.frames:
                    if hook is not None:
                        hook(frame.packet_id, now)
                    self._decode(frame.payload, frame.lost_before, frame.discontinuity, now)
            elif uplink.frame_decoder is not None:
                self._frame_event(uplink.frame_decoder.push(bytes(data)), now)
        except Exception:  # a bug, not bad input; keep the stream alive
            stats.callback_errors += 1
            log.exception("BLE audio notification handling failed")

    def _frame_event(self, event: FrameEvent | None, now: float) -> None:
        if isinstance(event, FrameAudio):
            if event.pcm:
                self._decode(event.pcm, 0, False, now)
        elif isinstance(event, Photo):
            self._emit_photo(event, now)
        elif isinstance(event, FrameTap):
            self._tap()
        elif isinstance(event, FrameTalk):
            self._talk()

    def _on_photo(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        stats, uplink = self.stats, self.uplink
        if not self.active:
            stats.late_notifications += 1
            return
        stats.photo_notifications += 1
        try:
            if uplink.photo_assembler is not None:
                photo = uplink.photo_assembler.push(bytes(data))
                if photo is not None:
                    self._emit_photo(photo, time.monotonic())
            elif uplink.frame_decoder is not None:
                self._frame_event(uplink.frame_decoder.push(bytes(data)), time.monotonic())
        except Exception:
            stats.callback_errors += 1
            log.exception("BLE photo notification handling failed")

    def _on_button(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if not self.active:
            self.stats.late_notifications += 1
            return
        try:
            decoder = self.uplink.button_decoder
            event = decoder.push(bytes(data)) if decoder is not None else None
            if event == "tap":
                self._tap()
            elif event == "talk":
                self._talk()
        except Exception:
            self.stats.callback_errors += 1
            log.exception("BLE button notification handling failed")

    @property
    def trusted(self) -> bool:
        """Whether this link is to the pinned glasses (before the first pin: never)."""
        return self.kit.pinning.trusted(self.link.found.address)

    def _tap(self) -> None:
        if not self.trusted:  # not (yet) the pinned glasses: a tap confirms nothing
            self.kit.pinning.stats.untrusted_taps += 1
            return
        self.stats.taps += 1
        self.sink.user_tap()

    def _talk(self) -> None:
        """The talk gesture (never a tap): push-to-talk goes on or off."""
        if not self.trusted:  # another device does not open the pinned user's microphone
            self.kit.pinning.stats.untrusted_talks += 1
            return
        change = self.kit.talk.gesture(time.monotonic())
        if change:  # what was said as the gesture was made goes first
            for chunk in self.kit.talk.take_preroll():
                self.sink.audio(chunk)
        self._talk_changed(change)

    def _talk_changed(self, change: bool | None) -> None:
        if change is None:
            return
        if not change:  # the user has finished: end the audio stream, not the session
            self.sink.speech_ended()
        if self.kit.on_talk is not None:
            self.kit.on_talk(change)

    def _on_battery(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self.active and data:
            self.kit.readings.battery = min(100, data[0])

    def _decode(self, payload: bytes, lost: int, discontinuity: bool, now: float) -> None:
        assert self.decoder is not None
        chunk = self.decoder.decode(
            payload, lost_before=lost, discontinuity=discontinuity, captured_at=now
        )
        if chunk is None:
            return
        stats = self.stats
        stats.audio_chunks += 1
        stats.audio_seconds += chunk.duration
        self.last_audio = now
        self.link.healthy = True
        if not self.pin_checked:  # the link really works: services found, audio decoded
            self.pin_checked = True
            found = self.link.found
            self.kit.pinning.confirm(
                found.address, found.name, bonded=self.kit.profile.bonding_required
            )
        pacer = self.kit.pacer
        if pacer is not None:
            pacer.heard(mean_square(chunk.pcm), now)
        admitted, change = self.kit.talk.admits(chunk, now)
        if change is not None:  # the hold limit let talk go
            self._talk_changed(change)
        if admitted:
            self.sink.audio(chunk)

    def _emit_photo(self, photo: Photo, now: float) -> None:
        width, height = jpeg_dimensions(photo.jpeg)
        self.stats.photos += 1
        self.kit.readings.photo_rotation = photo.rotation_degrees
        self.sink.video(VideoFrame(photo.jpeg, now, width, height))

    # -------------------------------------------------------------- tasks
    async def _watch_link(self) -> None:
        await self.link.lost.wait()
        self._end("link_lost")

    async def _watchdog(self) -> None:
        timeout = self.kit.silence_timeout
        while True:
            idle = time.monotonic() - self.last_audio
            if idle >= timeout:
                self.stats.watchdog_disconnects += 1
                log.warning("BLE: no audio for %.1f s; reconnecting", idle)
                self._end("watchdog")
                return
            await asyncio.sleep(timeout - idle)

    def queue_command(self, data: bytes, done: asyncio.Future[None] | None = None) -> None:
        """Write `data` to the photo control characteristic soon; `done` tells the outcome."""
        try:
            self.control.put_nowait((data, done))
        except asyncio.QueueFull:
            self.stats.control_write_errors += 1
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
                self.stats.control_write_errors += 1
                if done is not None and not done.done():
                    done.set_exception(PhotoUnavailable(f"camera command failed: {exc}"))
                reraise_pending_cancel()
                continue
            if done is not None and not done.done():
                done.set_result(None)

    async def _playback_writer(self, char: BleakGATTCharacteristic) -> None:
        """Hand the playback queue a writer for this link's speaker characteristic."""
        response = "write-without-response" not in char.properties

        async def write(data: bytes) -> bool:
            try:
                async with asyncio.timeout(GATT_TIMEOUT):
                    await self.client.write_gatt_char(char, data, response=response)
            except (BleakError, TimeoutError) as exc:
                log.debug("BLE speaker write failed: %s", exc)
                return False  # counted by the queue, which also re-raises a lost cancel
            return True

        await self.kit.playback.write_out(write, self.link.mtu)

    # -------------------------------------------------------------- run
    async def run(self) -> str:
        """Set up, serve the link until it ends, clean up; returns why it ended."""
        pinning, address = self.kit.pinning, self.link.found.address
        if not pinning.allows(address):  # the central refuses these; never carry their media
            pinning.refuse(address, "device")
            self.active = False
            return "refused"
        try:
            await self._setup()
        except (BleakError, TimeoutError, SetupError) as exc:
            log.warning("BLE session setup failed: %s", exc)
            # What it subscribed to before failing must not deliver while the link is
            # torn down (audio after input_paused, a talk gesture into the next link).
            self.active = False
            self._fail_pending()
            return "link_lost" if self.link.lost.is_set() else "setup_failed"
        self.last_audio = time.monotonic()
        reason = "link_lost"
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_link())
                tg.create_task(self._watchdog())
                tg.create_task(self._control_writer())
                if self.speaker is not None:
                    tg.create_task(self._playback_writer(self.speaker))
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
        control = self.kit.profile.audio.control
        with contextlib.suppress(Exception):
            async with asyncio.timeout(GATT_TIMEOUT):
                if control is not None and self.audio_control is not None:
                    await self._write(self.audio_control, control.stop)
                for char in self.subscribed:
                    await self.client.stop_notify(char)

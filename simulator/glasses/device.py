"""`VirtualGlasses`: one wearable from a device profile, as a Bumble GATT peripheral.

Why: the daemon's BLE path (scan, connect, MTU, bonding, framing, codecs, photos,
speaker, reconnects) must be exercised end to end on a machine with no radio. This
module is the device itself - power, advertising, one central at a time, the writes
it accepts - and hands each connection to its parts: the microphone (microphone.py),
the camera (camera.py), the speaker (speaker.py), all notifying through one
`Notifier` (connection.py) on the services gatt.py builds. A tap (`tap()`, or the
`tap-at` fault) is sent the way the profile's `[tap]` says: a button notification or
a Frame data message.

Like the firmware: a bonded profile serves its characteristics to encrypted links
only (the bond survives a restart with `bond_store`, as in flash), and every
per-connection task ends with the connection. Faults (faults.py) drop, duplicate,
reorder or corrupt audio notifications, drop photo chunks, go silent, disconnect or
vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from bumble import gatt, hci
from bumble.device import Connection, Device
from bumble.keys import JsonKeyStore
from bumble.transport import open_transport
from bumble.transport.common import Transport

from daemon.peripherals.ble.button import omi_button_notification
from daemon.peripherals.ble.framing import (
    FrameFlags,
    frame_talk_message,
    frame_tap_message,
)
from daemon.peripherals.ble.profile import DeviceProfile, load_profile
from simulator.glasses.camera import GlassesCamera
from simulator.glasses.connection import CentralLink, LinkGone, Notifier
from simulator.glasses.faults import FaultClock, Faults
from simulator.glasses.gatt import BATTERY_KEY, advertising_data, build_services, default_address
from simulator.glasses.jpeg import synthetic_jpeg
from simulator.glasses.microphone import GlassesMicrophone, resample
from simulator.glasses.report import EventCallback, GlassesStats, Report
from simulator.glasses.speaker import GlassesSpeaker

__all__ = ["ADV_INTERVAL_MS", "VirtualGlasses"]

log = logging.getLogger(__name__)

ADV_INTERVAL_MS: Final = 100.0  # FACTS: connection time is about one advertising interval


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
        on_event: EventCallback | None = None,
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
        self.has_speaker = speaker and p.downlink.kind != "none"
        self.battery = battery
        self.faults = faults or Faults()
        self.advertising_interval_ms = advertising_interval_ms
        self.bond_store = bond_store
        self.report = Report(on_event)
        self.stats: GlassesStats = self.report.stats
        self.ready = asyncio.Event()  # advertising
        self.radio_lost = False
        self.notifier = Notifier(self.stats, on_audio_notify)
        self.clock = FaultClock(self.faults, self.report)
        self.microphone = GlassesMicrophone(
            p,
            spec,
            resample(pcm, pcm_rate, spec.rate),
            loop=loop,
            rewind_on_connect=rewind_on_connect,
            faults=self.faults,
            packet_id_start=packet_id_start,
            notifier=self.notifier,
            clock=self.clock,
            report=self.report,
        )
        self.camera = GlassesCamera(
            p,
            jpeg if jpeg is not None else synthetic_jpeg(160, 120, seed=1, detail=0.5),
            drop_chunks_at=self.faults.photo_drop_at,
            notifier=self.notifier,
            report=self.report,
        )
        self.speaker = GlassesSpeaker(
            p.downlink, self.report, record_speaker if self.has_speaker else None
        )
        self._stop = asyncio.Event()
        self._vanished = False  # no HCI left to talk to (vanished, or the radio is gone)
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._link: CentralLink | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- state
    @property
    def connected(self) -> bool:
        """Whether a central is connected."""
        return self._link is not None

    @property
    def mtu(self) -> int:
        """The connection's ATT MTU (0 when not connected)."""
        return int(self._link.conn.att_mtu) if self._link is not None else 0

    @property
    def speaker_pcm(self) -> bytearray:
        """Everything the speaker played (16-bit PCM at the downlink rate)."""
        return self.speaker.pcm

    @property
    def jpeg(self) -> bytes:
        """The photo the camera sends."""
        return self.camera.jpeg

    # --------------------------------------------------------------- control
    def stop(self) -> None:
        """End `run()` cleanly (disconnect, power off)."""
        self._stop.set()

    async def vanish(self) -> None:
        """The device dies: the HCI socket closes, the hub times out its links."""
        self._vanished = True
        self.report.emit("vanished")
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()
        self._stop.set()

    def _on_radio_lost(self, _done: object) -> None:
        if not self._vanished and self._device is not None:  # not our own shutdown
            log.warning("virtual radio gone; glasses stop")
            self.radio_lost = self._vanished = True
            self.report.emit("radio_lost")
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
        self.microphone.go_silent(seconds)

    async def set_battery(self, level: int) -> None:
        """A new battery level, notified to a subscribed central."""
        self.battery = max(0, min(100, level))
        char = self.notifier.chars.get(BATTERY_KEY)
        link = self._link
        if char is not None and link is not None:
            await self.notifier.notify(link, char, bytes([self.battery]))

    async def send_malformed(self) -> None:
        """One audio notification no decoder can use."""
        link = self._link
        if link is not None:
            await self.microphone.send_malformed(link)

    async def tap(self) -> bool:
        """The wearer taps the glasses; False if the profile has no tap or nobody listens."""
        return await self._gesture("tap")

    async def talk(self) -> bool:
        """The wearer makes the talk gesture (omi: a double tap), as `tap`."""
        return await self._gesture("talk")

    async def _gesture(self, kind: Literal["tap", "talk"]) -> bool:
        p, link = self.profile, self._link
        if p.tap.source == "none" or (kind == "talk" and not p.can_talk):
            raise ValueError(f"profile {p.name!r} has no {kind} gesture")
        chars = self.notifier.chars
        flags = p.frame_flags or FrameFlags()
        if p.tap.source == "button":
            char = chars.get(p.characteristics.button or "")
            events = p.tap.events if kind == "tap" else p.tap.talk_events
            value = omi_button_notification(events[0])
        else:
            char = chars.get(p.characteristics.audio_data)
            value = frame_tap_message(flags) if kind == "tap" else frame_talk_message(flags)
        if link is None or char is None or char.handle not in link.subscribed or not link.secure:
            self.stats.taps_skipped += 1
            self.report.emit(kind, sent=False)
            return False
        await self.notifier.notify(link, char, value)
        self.stats.taps += 1
        self.report.emit(kind, sent=True)
        return True

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
        self.speaker.open()
        try:
            self._transport = await open_transport(self.transport_spec)
            device = self._power_up(self._transport)
            await device.power_on()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self.clock.run(self))
                await self._advertise()
                self.ready.set()
                self.report.emit(
                    "advertising",
                    name=self.name,
                    address=self.address,
                    profile=self.profile.name,
                    codec_id=self.codec_id,
                )
                await self._stop.wait()
                raise LinkGone  # unwind every connection task
        except* LinkGone:
            pass
        finally:
            self._tg = None
            await self._shutdown()

    def _power_up(self, transport: Transport) -> Device:
        """The Bumble device on `transport`: address, keys, services, handlers."""
        p = self.profile
        device = Device.with_hci(
            self.name,
            hci.Address(self.address, hci.Address.RANDOM_DEVICE_ADDRESS),
            transport.source,
            transport.sink,
        )
        self._device = self.notifier.device = device
        # Like the firmware: the identity handed out when bonding is the static random
        # address the glasses advertise, not the virtual controller's public one.
        device.config.identity_address_type = hci.Address.RANDOM_DEVICE_ADDRESS
        if self.bond_store is not None:
            device.keystore = JsonKeyStore(self.address, str(self.bond_store))
        device.gatt_server.max_mtu = p.max_mtu or 517
        device.advertising_data = advertising_data(
            self.name, p.discovery.service_uuids[0] if p.discovery.service_uuids else None
        )
        chars = build_services(
            device,
            p,
            codec_id=self.codec_id,
            speaker=self.has_speaker,
            battery=(lambda: self.battery or 0) if self.battery is not None else None,
            on_write=self._on_write,
        )
        self.notifier.chars = chars
        self.notifier.audio = chars.get(p.characteristics.audio_data)
        transport.source.terminated.add_done_callback(self._on_radio_lost)
        device.on(device.EVENT_CONNECTION, self._on_connection)
        device.on("characteristic_subscription", self._on_subscription)
        return device

    async def _shutdown(self) -> None:
        device, transport = self._device, self._transport
        self._device = self._transport = self.notifier.device = None
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
        self.speaker.close()
        self.report.emit("stopped", stats=asdict(self.stats))

    async def _advertise(self) -> None:
        device = self._device
        if device is None or self._stop.is_set():
            return
        await device.start_advertising(
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )

    # ----------------------------------------------------------- connections
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
        link = CentralLink(
            conn,
            needs_start=self.profile.audio.control is not None,
            needs_encryption=self.profile.bonding_required,
        )
        self._link = link
        self.stats.connections += 1
        conn.on(conn.EVENT_DISCONNECTION, lambda reason: link.gone.set())
        self.report.emit("connected", peer=conn.peer_address.to_string(False))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.microphone.stream(link))
                tg.create_task(self.camera.serve(link))
                await link.gone.wait()
                raise LinkGone
        except* LinkGone:
            pass
        finally:
            self._link = None
            self.stats.disconnections += 1
            self.microphone.link_ended()
            self.report.emit("disconnected")
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
        self.report.emit("subscription", uuid=str(characteristic.uuid), on=bool(notify or indicate))
        self._update_stream_gate(link)

    def _update_stream_gate(self, link: CentralLink) -> None:
        audio = self.notifier.audio
        assert audio is not None
        link.update_stream_gate(audio.handle)

    # ---------------------------------------------------------------- writes
    def _on_write(self, uuid: str, conn: Connection, value: bytes) -> None:
        link = self._link
        if link is None or link.conn is not conn:
            return
        ch, p = self.profile.characteristics, self.profile
        value = bytes(value)
        if uuid == ch.speaker:
            self.speaker.on_write(link, value)
            return
        handled = False
        if uuid == ch.audio_control and p.audio.control is not None:
            handled = self._on_audio_command(link, value)
        if not handled and uuid == ch.photo_control and p.photo.control is not None:
            handled = self.camera.command(link, value)
        if not handled:
            self.stats.unknown_commands += 1
            self.report.emit("unknown_command", data=value.hex())

    def _on_audio_command(self, link: CentralLink, value: bytes) -> bool:
        control = self.profile.audio.control
        assert control is not None
        if value == control.start:
            link.mic_on = True
        elif value == control.stop:
            link.mic_on = False
        else:
            return False
        self.report.command("mic_start" if link.mic_on else "mic_stop")
        self._update_stream_gate(link)
        return True

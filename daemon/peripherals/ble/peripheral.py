"""Glasses over BLE as a `Peripheral`: media up from notifications, model audio down.

Why this shape: `BleCentral` keeps a link up (scan, connect, MTU, bond, backoff); a
`LinkSession` (session.py) turns one link into media and dies with it; what outlives a
link - the decoders and their counters (uplink.py), the speaker queue (playback.py),
the pin, the camera switch, the last readings - lives here and is handed to each
session in one `SessionKit`.

Downlink: the model's 24 kHz PCM goes to the `PlaybackQueue` (resampled to the
device's rate, Opus-encoded if the profile says so, bounded, every drop counted by
reason) whenever a connected device speaker can play it. When none can - the profile
has none, the connected device lacks the characteristic (a production omi), its MTU
cannot carry the profile's write size, or no glasses are connected - playback goes to
the optional local fallback (e.g. a kiosk speaker), else it is counted as dropped
("no_speaker" / "not_connected").

Taps: a button characteristic (omi family) or a Frame data message, as the profile's
`[tap]` says, becomes `sink.user_tap()` (counted in `media.taps`) - only while the link
is to the pinned glasses (`input_trusted`); any other tap is dropped and counted in
`pin.untrusted_taps`. The talk gesture (a gesture apart from the tap) turns
push-to-talk on and off (talk.py), from the pinned glasses only. The pin
(`pinning.Pinning`) is taken at the first audio decoded on a link, kept in the state
directory, and from then on decides which device the central may connect to at all.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Final, Protocol

from daemon.media.earcon import EARCON_RATE, LISTEN_START, LISTEN_STOP, earcon
from daemon.media.types import pcm_duration
from daemon.ops.state import StateStore
from daemon.peripherals.base import MediaSink, Peripheral
from daemon.peripherals.ble.backends import BleBackend, open_backend
from daemon.peripherals.ble.central import BleCentral, Link, bounded
from daemon.peripherals.ble.photo_pacing import MAX_WAIT_SECONDS, QUIET_SECONDS, PhotoPacer
from daemon.peripherals.ble.pinning import Pinning, clean_name
from daemon.peripherals.ble.playback import PlaybackQueue, PlaybackStats
from daemon.peripherals.ble.profile import DeviceProfile
from daemon.peripherals.ble.session import (
    GATT_TIMEOUT,
    DeviceReadings,
    LinkSession,
    MediaStats,
    PhotoUnavailable,
    SessionKit,
)
from daemon.peripherals.ble.talk import GlassesListen, TalkGate
from daemon.peripherals.ble.uplink import UplinkDecoders, jpeg_dimensions

__all__ = [
    "BlePeripheral",
    "FallbackSpeaker",
    "MediaStats",
    "PhotoUnavailable",
    "PlaybackStats",
    "jpeg_dimensions",
]

PHOTO_COMMAND_TIMEOUT: Final = 2 * GATT_TIMEOUT  # queued behind others, then written


class FallbackSpeaker(Protocol):
    """Where audio goes when the glasses have no speaker (e.g. a kiosk or file output)."""

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue model audio at `rate`; never blocks."""

    def flush_playback(self) -> float:
        """Drop queued audio; returns the seconds dropped."""

    def playback_pending(self) -> float:
        """Seconds queued and not yet played."""

    def close(self) -> None:
        """Release the output; safe to call twice."""


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
        speaker_fallback: FallbackSpeaker | None = None,
        rng: random.Random | None = None,
        on_audio_frame: Callable[[int, float], None] | None = None,
        on_native_pcm: Callable[[bytes, int], None] | None = None,
        state: StateStore | None = None,
        photo_quiet: float = QUIET_SECONDS,
        photo_max_wait: float = MAX_WAIT_SECONDS,
        listen: GlassesListen = "always",
        push_to_talk_max_hold: float = 60.0,
        push_to_talk_preroll: float = 0.5,
        earcons: bool = True,
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

        `take_photo` waits for the user to be quiet `photo_quiet` seconds, at most
        `photo_max_wait` (see photo_pacing; `photo_quiet=0` asks at once).

        `listen = "push_to_talk"` sends audio only between two talk gestures (talk.py);
        a profile without a talk gesture cannot (ValueError); `push_to_talk_preroll` s
        before the opening gesture go first. `earcons`: a tone when talk goes on or off.
        """
        if listen == "push_to_talk" and not profile.can_talk:
            raise ValueError(f"profile {profile.name!r} names no talk gesture ([tap] "
                             "talk_events or frame_protocol.talk): push_to_talk needs one")
        self.profile = profile
        self.backend = (
            open_backend(backend, state_dir=state.directory if state is not None else None)
            if isinstance(backend, str)
            else backend
        )
        self.speaker_fallback = speaker_fallback
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
        self.readings = DeviceReadings()
        self.photo_interval: float | None = None
        self.camera_enabled = True
        # Decoders and the speaker queue live across connections: their counters add up.
        self.uplink = UplinkDecoders(profile, on_native_pcm)
        self.playback = PlaybackQueue(
            profile.downlink,
            max_seconds=max_playback_seconds,
            lead=playback_lead,
            opus_bitrate=opus_bitrate,
        )
        self.pacer = (
            PhotoPacer(quiet=photo_quiet, max_wait=photo_max_wait)
            if profile.photo.control is not None
            else None
        )
        self.talk = TalkGate(listen, push_to_talk_max_hold, push_to_talk_preroll)
        self._earcons = earcons
        self._kit = SessionKit(
            profile=profile,
            uplink=self.uplink,
            playback=self.playback,
            pinning=self.pinning,
            stats=self.media_stats,
            readings=self.readings,
            silence_timeout=max(0.1, silence_timeout),
            camera_command=self._camera_state_command,
            on_audio_frame=on_audio_frame,
            pacer=self.pacer,
            talk=self.talk,
            on_talk=self._talk_earcon,
        )
        self._session: LinkSession | None = None

    # ------------------------------------------------------------- internals
    def _interval_command(self, seconds: float | None) -> bytes:
        control = self.profile.photo.control
        assert control is not None
        return control.stop if seconds is None else control.interval(round(seconds))

    def _camera_state_command(self) -> bytes | None:
        """What a newly connected camera is told: off, or the interval asked for."""
        if not self.camera_enabled:
            return self._interval_command(None)
        if self.photo_interval is not None:
            return self._interval_command(self.photo_interval)
        return None

    async def _session_for(self, link: Link, sink: MediaSink) -> str:
        session = LinkSession(self._kit, link, sink)
        self._session = session
        try:
            return await session.run()
        finally:
            self._session = None
            if self.pacer is not None:
                self.pacer.abandon()
            self.playback.clear("not_connected")
            if self.talk.link_ended(time.monotonic()) is False:
                self._talk_earcon(False)  # heard only on a local fallback speaker
            sink.input_paused()

    def _talk_earcon(self, talking: bool) -> None:
        """A tone where one can be heard; glasses without a speaker (and no fallback)
        get none, rather than a playback drop counted at every gesture."""
        audible = self._speaking_session() is not None or self.speaker_fallback is not None
        if self._earcons and audible:
            self.play(earcon(LISTEN_START if talking else LISTEN_STOP), EARCON_RATE)

    # --------------------------------------------------------------- capture
    async def run(self, sink: MediaSink) -> None:
        """Keep the glasses connected and their media flowing until cancelled."""
        try:
            await self.central.run(lambda link: self._session_for(link, sink))
        finally:
            await bounded(self.backend.aclose(), 5.0, "BLE backend shutdown")
            self.uplink.close()
            self.playback.close()

    # -------------------------------------------------------------- playback
    def play(self, pcm: bytes, rate: int) -> None:
        """To the glasses' speaker if the connected device has a usable one, else the
        local fallback, else counted as dropped."""
        speaking = self._speaking_session()
        if speaking is not None:
            self.playback.push(pcm, rate, speaking.link.mtu)
            return
        seconds = pcm_duration(len(pcm), rate)
        if self.speaker_fallback is not None:
            self.speaker_fallback.play(pcm, rate)
            self.playback.stats.fallback_seconds += seconds
        elif self._session is None and self.profile.downlink.kind != "none":
            self.playback.drop("not_connected", seconds)
        else:
            self.playback.drop("no_speaker", seconds)

    def _speaking_session(self) -> LinkSession | None:
        """The connected session, if its device has a usable speaker."""
        session = self._session
        return session if session is not None and session.speaker is not None else None

    def flush_playback(self) -> float:
        """Both outputs are flushed: a reply may have begun on one and gone on on the other."""
        dropped = self.playback.clear("interrupted")
        if self.speaker_fallback is not None:
            dropped += self.speaker_fallback.flush_playback()
        return dropped

    def playback_pending(self) -> float:
        """Seconds still to play on the glasses and on the local fallback."""
        pending = self.playback.pending_seconds()
        if self.speaker_fallback is not None:
            pending += self.speaker_fallback.playback_pending()
        return pending

    # ----------------------------------------------------------------- trust
    @property
    def input_trusted(self) -> bool:
        """Only while the link is to the pinned glasses (before the first pin: never)."""
        session = self._session
        return session is not None and session.trusted

    @property
    def can_tap(self) -> bool:
        """Whether the profile names a tap source (a button or Frame tap messages)."""
        return self.profile.tap.source != "none"

    # ---------------------------------------------------------------- camera
    @property
    def has_camera(self) -> bool:
        """Whether the profile has camera commands."""
        return self.profile.has_camera

    def _photo_session(self) -> tuple[LinkSession, bytes]:
        """The session a photo can be asked on and the one-shot command, or why not."""
        control = self.profile.photo.control
        if control is None:
            raise PhotoUnavailable(f"{self.profile.display_name} has no camera control")
        if not self.camera_enabled:
            raise PhotoUnavailable("the camera is switched off")
        session = self._session
        if session is None or session.photo_control is None:
            raise PhotoUnavailable("glasses not connected")
        return session, control.one_shot

    async def take_photo(self) -> None:
        """Ask the glasses for one photo at the user's next pause (at most `photo_max_wait`
        from now); it arrives later through `sink.video()`.

        Raises PhotoUnavailable if not connected, the device has no camera control, the
        camera is switched off, or the command was not written in time.
        """
        self._photo_session()
        if self.pacer is not None:
            await self.pacer.wait_for_pause()
        session, one_shot = self._photo_session()  # again: the link may have ended meanwhile
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session.queue_command(one_shot, done)
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
        if not enabled and self.pacer is not None:
            self.pacer.abandon()  # a photo waiting for a pause is not taken
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
        """Close the local fallback speaker, if any."""
        if self.speaker_fallback is not None:
            self.speaker_fallback.close()

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Link, device, media, pin, framing, decoder and playback state for /healthz."""
        session, found = self._session, self.central.last_found
        codec = session.codec if session is not None else None
        out: dict[str, Any] = {
            "kind": self.kind,
            "profile": self.profile.name,
            "device": self.profile.display_name,
            "backend": "virtual" if self.backend.virtual else self.backend.name,
            "state": self.central.state,
            "connected": session is not None,
            "name": clean_name(found.name) if found else None,  # the radio's text: cleaned
            "address": found.address if found else None,
            "rssi": found.rssi if found else None,
            "mtu": session.link.mtu if session is not None else None,
            "codec": codec.describe() if codec is not None else None,
            "codec_id": session.codec_id if session is not None else None,
            "photo_rotation_degrees": self.readings.photo_rotation,
            "camera_enabled": self.camera_enabled,
        }
        if self.readings.battery is not None:
            out["battery"] = self.readings.battery
        out["link"] = asdict(self.central.stats)
        out["media"] = asdict(self.media_stats)
        if self.pacer is not None:
            out["photo_pacing"] = asdict(self.pacer.stats)
        out["pin"] = {**self.pinning.status(), "trusted": self.input_trusted}
        out["talk"] = self.talk.status()
        out["push_to_talk"] = self.talk.talking
        out.update(self.uplink.status())
        playback = asdict(self.playback.stats)
        playback["pending_seconds"] = round(self.playback_pending(), 3)
        out["playback"] = playback
        return out

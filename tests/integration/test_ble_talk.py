"""Push-to-talk on the glasses over the virtual radio (peripheral.ble.listen =
"push_to_talk"): omi's double tap opens and closes the microphone; the single tap
still only confirms and never opens it; the talk gesture is never a confirmation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.ops.state import StateStore
from daemon.peripherals.ble.peripheral import BlePeripheral
from simulator import glasses as sim_glasses
from simulator import radio as sim_radio
from tests.support.ble import FakeSpeaker, Sink, make_ble, running, tone
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)

A = "C0:00:00:00:00:0A"
SAID = tone(1.0, 16_000)


async def gated_more(ble: BlePeripheral, chunks: int = 5) -> None:
    """Wait until `chunks` more chunks were held back: the glasses kept talking."""
    start = ble.talk.stats.gated_chunks
    await eventually(lambda: ble.talk.stats.gated_chunks >= start + chunks)


async def test_the_double_tap_talks_and_the_single_tap_only_confirms(tmp_path: Path) -> None:
    async with sim_radio.VirtualRadio(2, supervision_timeout=0.5) as hub:
        ble = make_ble("omi", hub.transport(1), state=StateStore(tmp_path),
                       listen="push_to_talk")
        sink = Sink()
        async with running(ble, sink), sim_glasses.VirtualGlasses(
            "omi", hub.transport(0), address=A, pcm=SAID, loop=True
        ) as glasses:
            # the glasses stream and are pinned, but nothing goes upstream yet
            await eventually(lambda: ble.input_trusted and ble.talk.stats.gated_chunks >= 10)
            assert sink.seconds == 0
            # a single tap is a confirmation, and only that
            async with asyncio.timeout(5):
                while not await glasses.tap():
                    await asyncio.sleep(0.05)
            await sink.until(lambda: sink.taps == 1)
            await gated_more(ble, 30)  # more than the pre-roll said before the gesture
            assert sink.seconds == 0 and not ble.talk.talking
            # the double tap opens the microphone, with a rising tone on the glasses
            written = ble.playback.stats.queued_seconds
            assert await glasses.talk()
            await eventually(lambda: ble.talk.talking, 5)
            # at once: the half second said as the gesture was made (the pre-roll)
            assert ble.talk.stats.preroll_chunks == 25  # 0.5 s of 20 ms chunks
            assert 0.5 <= sink.seconds <= 0.62, sink.seconds
            await sink.until(lambda: sink.seconds >= 1.0)
            assert ble.talk.talking and sink.taps == 1  # not a confirmation
            assert ble.playback.stats.queued_seconds > written  # the earcon
            # the second double tap closes it: the utterance ends, audio is held back
            assert await glasses.talk()
            await sink.until(lambda: sink.ended == 1)
            heard = sink.seconds
            await gated_more(ble)
            assert sink.seconds == heard and sink.ended == 1 and sink.taps == 1
            status = ble.status()
            assert status["push_to_talk"] is False
            assert status["talk"]["gestures"] == 2 and status["button"]["talks"] == 2
            assert status["button"]["taps"] == 1


async def test_talk_is_let_go_when_the_link_ends(tmp_path: Path) -> None:
    async with sim_radio.VirtualRadio(2, supervision_timeout=0.5) as hub:
        speaker = FakeSpeaker()  # a local fallback: where a tone can still be heard
        ble = make_ble("omi", hub.transport(1), state=StateStore(tmp_path),
                       listen="push_to_talk", speaker_fallback=speaker)
        sink = Sink()
        async with running(ble, sink):
            async with sim_glasses.VirtualGlasses(
                "omi", hub.transport(0), address=A, pcm=SAID, loop=True
            ) as glasses:
                await eventually(lambda: ble.input_trusted)
                async with asyncio.timeout(5):
                    while not await glasses.talk():
                        await asyncio.sleep(0.05)
                await sink.until(lambda: sink.seconds >= 0.3)
            await eventually(lambda: not ble.status()["connected"])
            assert not ble.talk.talking and ble.talk.stats.link_ends == 1
            assert len(speaker.played) == 1  # the falling tone (the rising one: the glasses)
            heard = sink.seconds
            async with sim_glasses.VirtualGlasses(  # back: the microphone starts closed
                "omi", hub.transport(0), address=A, pcm=SAID, loop=True
            ):
                await gated_more(ble)
            assert sink.seconds == heard


def test_push_to_talk_needs_a_profile_with_a_talk_gesture() -> None:
    with pytest.raises(ValueError, match="names no talk gesture"):
        make_ble("omiglass", "tcp-client:127.0.0.1:9", listen="push_to_talk")


def test_no_tone_and_no_drop_where_none_can_be_heard() -> None:
    """Not connected and no local fallback: a talk change plays nothing and counts no
    playback drop; with a fallback speaker the tone plays there."""
    ble = make_ble("omi", "tcp-client:127.0.0.1:9", listen="push_to_talk")
    ble._talk_earcon(True)  # noqa: SLF001 - the hook the session calls on a talk change
    assert ble.playback.stats.dropped_seconds == {}
    speaker = FakeSpeaker()
    ble.speaker_fallback = speaker
    ble._talk_earcon(False)  # noqa: SLF001
    assert len(speaker.played) == 1 and ble.playback.stats.fallback_seconds > 0

"""The review's attacks on the confirmation (round 5), end to end: nothing opens.

The real Agent follows the conversation and the real home service acts on a virtual
home over a private mosquitto; only the Live link is a stand-in (the harness of
test_home_safety). The broker is the judge: what reached a command topic. Each
scenario opened the garage door or the lock before its fix in daemon.home.consent
(or daemon.agent, for the fresh session).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from daemon.live.events import LinkStatus
from daemon.media.types import AudioChunk
from simulator.home import default_devices
from tests.integration.test_home_safety import (
    ANSWER_DELAY,
    GARAGE,
    UNLOCK,
    VOICE,
    Talk,
    nothing_reached,
    rig_parts,
)
from tests.support.home import Rig, home_rig

pytestmark = pytest.mark.timeout(90)

PIN = "7391"


async def still_unconfirmed(talk: Talk, rig: Rig, mark: int, asked: dict[str, Any]) -> None:
    """The model's second call with the token asks again, and nothing reached the home."""
    again = await talk.control({**GARAGE, "confirmation_token": asked["confirmation_token"]})
    assert again["status"] == "needs_confirmation", again
    await nothing_reached(rig, mark)


async def test_a_bang_then_a_yes_to_another_question_opens_nothing() -> None:
    """A wordless sound starts an answer; the model moves on; the yes is for that."""
    agent, link, glasses = rig_parts()
    async with home_rig(default_devices(), agent=agent, tools={"confirm_ttl": 20.0}) as rig:
        talk = Talk(agent, link, glasses)
        mark = rig.watcher.mark()
        asked = await talk.control(GARAGE)
        await talk.model("Shall I open the garage door?")
        await asyncio.sleep(ANSWER_DELAY)
        assert glasses.sink is not None
        glasses.sink.audio(AudioChunk(VOICE, 16_000, time.monotonic()))  # a bang, no words
        await asyncio.sleep(0.1)
        await talk.model("By the way, do you want the kitchen light on?")
        await asyncio.sleep(1.8)  # more than the answer's grace after the model spoke
        await talk.user("Yes.")
        await still_unconfirmed(talk, rig, mark, asked)
        assert rig.service.consent is not None
        assert rig.service.consent.stats.lapsed == 1


async def test_the_models_own_words_after_a_knock_open_nothing() -> None:
    """The model's "Open the garage door, okay" heard by the glasses as it plays (begun
    before the window), a knock in the window, then the echo's transcript."""
    agent, link, glasses = rig_parts()
    async with home_rig(default_devices(), agent=agent, tools={"confirm_ttl": 20.0}) as rig:
        talk = Talk(agent, link, glasses)
        mark = rig.watcher.mark()
        asked = await talk.control(GARAGE)
        await talk.model("Open the garage door, okay")
        assert glasses.sink is not None
        glasses.sink.audio(AudioChunk(VOICE, 16_000, time.monotonic()))  # the echo, early
        await asyncio.sleep(ANSWER_DELAY)
        glasses.sink.audio(AudioChunk(VOICE, 16_000, time.monotonic()))  # a knock
        await asyncio.sleep(0.05)
        await talk.late_words(" Open the garage door, okay")  # the echo's transcript
        await still_unconfirmed(talk, rig, mark, asked)


async def test_a_question_back_is_not_a_yes() -> None:
    agent, link, glasses = rig_parts()
    async with home_rig(default_devices(), agent=agent, tools={"confirm_ttl": 20.0}) as rig:
        talk = Talk(agent, link, glasses)
        mark = rig.watcher.mark()
        asked = await talk.control(GARAGE)
        await talk.model("Shall I open the garage door?")
        await talk.user("Is that right? Okay?")
        await still_unconfirmed(talk, rig, mark, asked)


async def test_pin_guesses_after_taps_lock_out_and_the_right_one_opens_nothing() -> None:
    """A tap confirms, spoken digits follow before the call: each wrong one counts, and
    after three the right one is not even judged (no oracle for the PIN)."""
    agent, link, glasses = rig_parts()
    tools = {"confirm_ttl": 20.0, "confirm_pin": PIN}
    async with home_rig(default_devices(), agent=agent, tools=tools) as rig:
        talk = Talk(agent, link, glasses)
        mark = rig.watcher.mark()
        for guess in ("0 0 0 0", "1 1 1 1", "2 2 2 2", " ".join(PIN)):
            asked = await talk.control(UNLOCK)
            await talk.model("Tap your glasses to unlock the front door.")
            await talk.tap()
            await talk.user(guess, wait=0.1)
            out = await talk.control({**UNLOCK,
                                      "confirmation_token": asked["confirmation_token"]})
            assert out["status"] == "failed", (guess, out)
        await nothing_reached(rig, mark)
        assert rig.service.consent is not None
        stats = rig.service.consent.stats
        assert stats.declined_wrong_pin == 3 and stats.pin_locked == 1


async def test_a_no_beside_the_right_pin_opens_nothing() -> None:
    agent, link, glasses = rig_parts()
    tools = {"confirm_ttl": 20.0, "confirm_pin": PIN}
    async with home_rig(default_devices(), agent=agent, tools=tools) as rig:
        talk = Talk(agent, link, glasses)
        mark = rig.watcher.mark()
        asked = await talk.control(UNLOCK)
        await talk.model("Say your PIN to unlock the front door.")
        await talk.user("No, don't, 7 3 9 1 is not for that")
        out = await talk.control({**UNLOCK, "confirmation_token": asked["confirmation_token"]})
        assert out["status"] == "failed" and "said no" in out["message"], out
        await nothing_reached(rig, mark)


async def test_a_fresh_session_lapses_the_open_question() -> None:
    """The Live session was not resumed: the model lost the question, so a later yes
    answers nothing it asked."""
    agent, link, glasses = rig_parts()
    async with home_rig(default_devices(), agent=agent, tools={"confirm_ttl": 20.0}) as rig:
        talk = Talk(agent, link, glasses)
        mark = rig.watcher.mark()
        asked = await talk.control(GARAGE)
        await talk.model("Shall I open the garage door?")
        await link.events.put(LinkStatus("reconnecting", "socket closed"))
        await link.events.put(LinkStatus("connected", resumed=False))
        await asyncio.sleep(0.05)
        await talk.user("Yes.")
        await still_unconfirmed(talk, rig, mark, asked)

"""The fallback road end to end (issue 8): the real daemon (`edge-agent run`, file
peripheral) while the fake Live server refuses every session setup (1011, quota),
the real google-genai SDK against the fake Interactions service on the same TLS port.

After `fallback_after` the daemon takes the fallback road: the user's utterance,
cut by energy, goes as WAV audio to the fallback model; the model calls a tool
(agent_status), which runs locally and is answered in a follow-up interaction
continuing the first; the text answer is spoken by the TTS model and written to
the output WAV after the earcon. Then Live comes back: the daemon returns to
live mode and hands the Live session the model's summary of what was said.

The pure parts: tests/unit/test_fallback.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

from simulator.broker import free_port
from simulator.interactions import FakeInteractions, ModelTurn
from simulator.interactions.turns import audio_blocks
from simulator.live_server import FakeLiveServer
from simulator.live_server.faults import Fault
from simulator.scenario import ReplyAudio, Scenario, Turn
from tests.support.live import KEY
from tests.support.tasks import Daemon, Fakes

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def _get_status(port: int, path: str) -> tuple[int, str]:
    """A page of the health endpoint and its status (its body also when it answers 503)."""
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return int(r.status), str(r.read().decode())
        except urllib.error.HTTPError as exc:
            return int(exc.code), str(exc.read().decode())
    return await asyncio.to_thread(fetch)


async def _get(port: int, path: str) -> str:
    return (await _get_status(port, path))[1]


def _client_texts(live: FakeLiveServer) -> list[str]:
    return [json.dumps(m.message) for c in live.connections for m in c.messages
            if m.kind == "client_content"]


async def test_live_refused_then_a_fallback_turn_with_a_tool_then_live_with_the_summary(
    tmp_path: Path
) -> None:
    tasks = FakeInteractions(api_key=KEY)
    tasks.queue_turns(ModelTurn(reply="All is well: {result}",
                                tool_calls=(("agent_status", {}),), audio_ms=500))
    scenario = Scenario(turns=tuple(
        Turn(user="", reply=f"welcome back {i}", audio=ReplyAudio(duration_ms=200))
        for i in range(5)))
    async with FakeLiveServer(api_key=KEY, scenario=scenario, http_router=tasks) as live:
        await live.inject(Fault.REJECT_SETUP, code=1011,
                          reason="RESOURCE_EXHAUSTED: quota exceeded", count=100_000)
        # Silence while the link fails for fallback_after, then one utterance.
        schedule = [(False, 4.0), (True, 1.0), (False, 6.0)]
        daemon = Daemon(Fakes(live, tasks), tmp_path, schedule, "fb",
                        EDGE_AGENT_INTERACTIONS__ENABLED="false",
                        EDGE_AGENT_INTERACTIONS__FALLBACK="true",
                        EDGE_AGENT_INTERACTIONS__FALLBACK_AFTER="1.0",
                        EDGE_AGENT_INTERACTIONS__FALLBACK_RETURN_AFTER="0.5",
                        EDGE_AGENT_LIVE__BACKOFF_INITIAL="0.2",
                        EDGE_AGENT_LIVE__BACKOFF_MAX="0.5",
                        EDGE_AGENT_OPS__HEALTH_PORT=str(port := free_port()))
        async with daemon:
            # The spoken turn, its tool results, the TTS: three interactions.
            await tasks.wait_until(lambda: len(tasks.interactions) >= 3, within=60)
            assert _client_texts(live) == []
            code, page = await _get_status(port, "/healthz")
            assert '"road": "fallback"' in page
            assert code == 200, page  # the user is served: healthy though Live is down
            metrics = ""
            async with asyncio.timeout(30):  # the turn is counted once its answer is played
                while 'edge_fallback_turns_total{outcome="ok"}' not in metrics:
                    metrics = await _get(port, "/metrics")
            assert 'edge_fallback_switches_total{to="fallback"} 1.0' in metrics
            assert 'edge_fallback_tool_calls_total{outcome="ok"} 1.0' in metrics
            assert 'edge_fallback_turns_total{outcome="ok"} 1.0' in metrics
            live.disarm_all()  # Live is back
            await live.wait_until(lambda: len(_client_texts(live)) >= 1, timeout=60)
            assert '"road": "live"' in await _get(port, "/healthz")
        assert not live.internal_errors
    items = list(tasks.interactions.values())
    spoken, results, tts = items[0], items[1], items[2]
    assert spoken.body["model"] == "gemini-2.5-flash"
    (audio,) = audio_blocks(spoken.body["input"])  # the SDK wraps it in a user_input step
    assert audio["mime_type"] == "audio/wav"
    assert spoken.turn is not None and spoken.turn.heard_ms >= 500  # it heard the utterance
    assert spoken.status == "requires_action"
    assert any(t["name"] == "agent_status" for t in spoken.body["tools"])
    (result,) = results.body["input"]
    assert result["type"] == "function_result" and result["call_id"] == "call_1"
    assert results.previous_interaction_id == spoken.id
    assert "live_link" in result["result"]  # agent_status ran here, in the daemon
    assert tts.body["model"] == "gemini-2.5-flash-preview-tts"
    assert tts.body["input"].startswith("All is well:")
    summary = items[3]
    assert summary.previous_interaction_id == results.id
    (text,) = _client_texts(live)
    assert "fallback" in text and "All is well" in text  # the model's summary, handed over
    with wave.open(str(tmp_path / "fb-reply.wav")) as wf:
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), "<i2").astype(np.float64)
        rate = wf.getframerate()
    frames = pcm[: len(pcm) // 480 * 480].reshape(-1, 480)
    loud_s = float((np.sqrt((frames ** 2).mean(axis=1)) > 1000).sum()) * 480 / rate
    assert loud_s >= 0.5 + 0.3  # the TTS answer and the earcons were played


FALLBACK_ENV = dict(EDGE_AGENT_INTERACTIONS__ENABLED="false",
                    EDGE_AGENT_INTERACTIONS__FALLBACK="true",
                    EDGE_AGENT_INTERACTIONS__FALLBACK_AFTER="1.0",
                    EDGE_AGENT_LIVE__BACKOFF_INITIAL="0.2",
                    EDGE_AGENT_LIVE__BACKOFF_MAX="0.5")


async def _refused(live: FakeLiveServer) -> None:
    """Live stays down for the whole test: every setup refused (quota)."""
    await live.inject(Fault.REJECT_SETUP, code=1011,
                      reason="RESOURCE_EXHAUSTED: quota exceeded", count=100_000)


async def _ok_turns(port: int, count: int) -> str:
    """/metrics once `count` fallback turns were answered and played."""
    want = f'edge_fallback_turns_total{{outcome="ok"}} {float(count)}'
    metrics = ""
    async with asyncio.timeout(60):
        while want not in metrics:
            await asyncio.sleep(0.2)
            with contextlib.suppress(urllib.error.URLError):  # not listening yet
                metrics = await _get(port, "/metrics")
    return metrics


def _loud_seconds(path: Path, above: float = 1000.0) -> float:
    with wave.open(str(path)) as wf:
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), "<i2").astype(np.float64)
        rate = wf.getframerate()
    frames = pcm[: len(pcm) // 480 * 480].reshape(-1, 480)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > above).sum() * 480 / rate)


async def test_with_fallback_audio_out_the_model_speaks_itself_and_no_tts_is_asked(
    tmp_path: Path
) -> None:
    tasks = FakeInteractions(api_key=KEY)
    tasks.queue_turns(ModelTurn(reply="I am on the fallback road.", audio_ms=900))
    async with FakeLiveServer(api_key=KEY, http_router=tasks) as live:
        await _refused(live)
        daemon = Daemon(Fakes(live, tasks), tmp_path, [(False, 4.0), (True, 1.0), (False, 6.0)],
                        "ao", **FALLBACK_ENV, EDGE_AGENT_INTERACTIONS__FALLBACK_AUDIO_OUT="true",
                        EDGE_AGENT_OPS__HEALTH_PORT=str(port := free_port()))
        async with daemon:
            metrics = await _ok_turns(port, 1)
        assert not live.internal_errors
    assert 'edge_fallback_switches_total{to="fallback"} 1.0' in metrics
    (turn,) = tasks.interactions.values()  # one spoken turn, and no TTS interaction
    assert turn.body["model"] == "gemini-2.5-flash"
    assert [m.lower() for m in turn.body["response_modalities"]] == ["audio"]
    assert turn.turn is not None and turn.turn.heard_ms >= 500
    assert tasks.count("POST") == 1
    assert _loud_seconds(tmp_path / "ao-reply.wav") >= 0.9  # its own voice was played


async def test_a_device_command_on_the_fallback_road_changes_the_device_once(
    tmp_path: Path
) -> None:
    from simulator.broker import PrivateBroker
    from simulator.home import VirtualHome

    tasks = FakeInteractions(api_key=KEY)
    tasks.queue_turns(ModelTurn(
        reply="Done: {result}",
        tool_calls=(("control_device", {"device_id": "sim-kitchen_light", "action": "turn_on"}),)))
    async with (PrivateBroker() as broker, VirtualHome(broker.host, broker.port) as home,
                FakeLiveServer(api_key=KEY, http_router=tasks) as live):
        await _refused(live)
        light = home.devices["kitchen_light"]
        assert light.state["state"] == "OFF"
        daemon = Daemon(Fakes(live, tasks), tmp_path, [(False, 4.0), (True, 1.0), (False, 6.0)],
                        "dev", **FALLBACK_ENV, EDGE_AGENT_MQTT__HOST=broker.host,
                        EDGE_AGENT_MQTT__PORT=str(broker.port),
                        EDGE_AGENT_OPS__HEALTH_PORT=str(port := free_port()))
        async with daemon:
            metrics = await _ok_turns(port, 1)
            commands = [p for t, p in light.received if t.endswith("/set")]
        assert not live.internal_errors
    assert commands == ["ON"]  # published once, on the fallback road
    assert light.state["state"] == "ON"
    assert 'edge_fallback_tool_calls_total{outcome="ok"} 1.0' in metrics
    spoken, results, _tts = list(tasks.interactions.values())[:3]
    assert spoken.status == "requires_action"
    (result,) = results.body["input"]
    assert result["type"] == "function_result" and results.previous_interaction_id == spoken.id
    assert "done" in json.dumps(result["result"])  # control_device ran here, on the home

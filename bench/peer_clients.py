"""Peers of the daemon's Live uplink, each streaming the same stamped audio in real time.

Standalone on purpose (standard library plus the one library each client is
about): they run both in the project's venv (websockets) and in the benchmark's
own peers venv (picows, pipecat), which has none of the project's packages.

    python bench/peer_clients.py KIND BASE_URL CA_FILE SECONDS OUT CHUNK_MS VIDEO

KIND: ws (websockets, the floor), ws-now (the same, written as the link's fast
path writes: no coroutine per message), picows (picows over aiofastnet's TLS when it
is installed), picows-stdtls (picows over asyncio's own TLS), pipecat (a pipecat
pipeline with its GeminiLiveLLMService). Each prints "streaming" on stdout when
its first chunk is due, and writes the times it handed chunks over to OUT.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import struct
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

KEY = "bench-key-0123456789"
MODEL = "models/gemini-3.8-live"
WS_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
MARK = 11  # simulator.probe's stamp, rebuilt here without numpy


def stamped(seq: int, samples: int) -> bytes:
    """Silence carrying `seq` the way simulator.probe.stamped_chunk stamps it."""
    head = struct.pack("<5h", MARK, *((seq >> (4 * i)) & 0xF for i in range(4)))
    return head + bytes(2 * samples - len(head))


def realtime(kind: str, mime: str, data: bytes) -> bytes:
    """One realtime_input message, as the SDK would send it."""
    b64 = base64.b64encode(data).decode("ascii")
    return f'{{"realtime_input":{{"{kind}":{{"data":"{b64}","mime_type":"{mime}"}}}}}}'.encode()


def jpeg() -> bytes:
    """A 30 KB stand-in JPEG, as bench/live_uplink.py sends once a second."""
    return b"\xff\xd8\xff\xe0" + os.urandom(30_000) + b"\xff\xd9"


async def paced(seconds: float, chunk_ms: int, video: bool,
                send: Callable[[int, float], Awaitable[None]]) -> list[float]:
    """Call send(i, now) for each chunk on its real-time schedule; the handed times."""
    step = chunk_ms / 1000
    n = int(seconds / step) + 1
    handed: list[float] = []
    print("streaming", flush=True)
    start = time.monotonic()
    per_second = round(1 / step)
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
        now = time.monotonic()
        handed.append(now)
        await send(i if not video or i % per_second else -1 - i, now)
    return handed


async def ws_client(base_url: str, ctx: ssl.SSLContext, seconds: float, chunk_ms: int,
                    video: bool, now: bool = False) -> list[float]:
    """The floor: websockets, messages prebuilt (no JSON or base64 in the loop).

    `now`: each frame written as the link's fast path writes it (websockets' Sans-I/O
    protocol, then the transport), without `send`'s coroutine and context manager.
    """
    import websockets

    url = base_url.replace("https://", "wss://") + WS_PATH
    msgs = [realtime("audio", "audio/pcm;rate=16000", stamped(i, 16 * chunk_ms))
            for i in range(int(seconds * 1000 / chunk_ms) + 1)]
    frame = realtime("video", "image/jpeg", jpeg()).decode()
    async with websockets.connect(url, ssl=ctx, additional_headers={"x-goog-api-key": KEY},
                                  compression=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        await ws.recv()

        async def send(i: int, _now: float) -> None:
            if i < 0:
                await ws.send(frame)
                i = -1 - i
            await ws.send(msgs[i], text=True)

        async def send_now(i: int, _now: float) -> None:
            if i < 0:
                await ws.send(frame)
                i = -1 - i
            ws.protocol.send_text(msgs[i])
            ws.send_data()

        return await paced(seconds, chunk_ms, video, send_now if now else send)


async def picows_client(base_url: str, ctx: ssl.SSLContext, seconds: float, chunk_ms: int,
                        video: bool, fastnet: bool) -> list[float]:
    """The same floor over picows (its send is a plain call: no coroutine per message)."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    setup_done = asyncio.get_running_loop().create_future()

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if not setup_done.done():
                setup_done.set_result(None)

    url = base_url.replace("https://", "wss://") + WS_PATH
    msgs = [realtime("audio", "audio/pcm;rate=16000", stamped(i, 16 * chunk_ms))
            for i in range(int(seconds * 1000 / chunk_ms) + 1)]
    frame = realtime("video", "image/jpeg", jpeg())
    transport, _ = await ws_connect(Listener, url, ssl_context=ctx, use_aiofastnet=fastnet,
                                    extra_headers={"x-goog-api-key": KEY})
    transport.send(WSMsgType.TEXT, json.dumps({"setup": {"model": MODEL}}).encode())
    await setup_done

    async def send(i: int, _now: float) -> None:
        if i < 0:
            transport.send(WSMsgType.TEXT, frame)
            i = -1 - i
        transport.send(WSMsgType.TEXT, msgs[i])

    handed = await paced(seconds, chunk_ms, video, send)
    transport.send_close()
    transport.disconnect()
    await transport.wait_disconnected()
    return handed


async def pipecat_client(base_url: str, ctx: ssl.SSLContext, seconds: float, chunk_ms: int,
                         video: bool) -> list[float]:
    """A pipecat pipeline around its GeminiLiveLLMService, fed frame by frame."""
    from google.genai.types import HttpOptions
    from loguru import logger
    from pipecat.frames.frames import EndFrame, InputAudioRawFrame, LLMContextFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService

    logger.remove()  # its debug log per frame would be part of the figure
    warnings.simplefilter("ignore", DeprecationWarning)
    llm = GeminiLiveLLMService(
        api_key=KEY, model=MODEL,
        http_options=HttpOptions(base_url=base_url, async_client_args={"ssl": ctx}),
    )
    worker = PipelineWorker(Pipeline([llm]), params=PipelineParams(audio_in_sample_rate=16_000))
    runner = PipelineRunner(handle_sigint=False)
    run = asyncio.create_task(runner.run(worker))
    await worker.queue_frame(LLMContextFrame(LLMContext()))
    while not getattr(llm, "_ready_for_realtime_input", False):  # it drops audio before
        await asyncio.sleep(0.01)
    chunks = [stamped(i, 16 * chunk_ms) for i in range(int(seconds * 1000 / chunk_ms) + 1)]

    async def send(i: int, _now: float) -> None:
        await worker.queue_frame(InputAudioRawFrame(audio=chunks[i],
                                                    sample_rate=16_000, num_channels=1))

    handed = await paced(seconds, chunk_ms, False, send)  # audio only: its video path differs
    await asyncio.sleep(0.3)
    await worker.queue_frame(EndFrame())
    await asyncio.wait_for(run, 10)
    return handed


def main() -> int:
    kind, base_url, ca_file, seconds, out, chunk_ms, video = sys.argv[1:8]
    ctx = ssl.create_default_context(cafile=ca_file)
    args: tuple[Any, ...] = (base_url, ctx, float(seconds), int(chunk_ms), video == "1")
    runs = {
        "ws": lambda: ws_client(*args),
        "ws-now": lambda: ws_client(*args, now=True),
        "picows": lambda: picows_client(*args, fastnet=True),
        "picows-stdtls": lambda: picows_client(*args, fastnet=False),
        "pipecat": lambda: pipecat_client(*args),
    }
    handed = asyncio.run(runs[kind]())
    Path(out).write_text(json.dumps({"handed": handed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

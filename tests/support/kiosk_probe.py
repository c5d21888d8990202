"""Run in a subprocess whose HOME holds an .asoundrc with ALSA file devices:
streams the microphone to a sink for a while, plays a tone, reports as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

from daemon.media.types import AudioChunk, VideoFrame
from daemon.peripherals.kiosk import KioskPeripheral


class Sink:
    def __init__(self) -> None:
        self.pcm = bytearray()
        self.chunks = 0

    def audio(self, chunk: AudioChunk) -> None:
        self.pcm += chunk.pcm
        self.chunks += 1

    def video(self, frame: VideoFrame) -> None:
        pass

    def input_paused(self) -> None:
        pass

    def backlog_seconds(self) -> float:
        return 0.0


async def main(out_path: str) -> None:
    kiosk = KioskPeripheral("edgecap", "edgeplay", block_ms=40)
    sink = Sink()
    task = asyncio.create_task(kiosk.run(sink))
    await asyncio.sleep(0.5)
    tone = (np.sin(2 * np.pi * 440 * np.arange(12_000) / 24_000) * 5000).astype("<i2").tobytes()
    kiosk.play(tone, 24_000)
    await asyncio.sleep(1.0)
    pending_after = kiosk.playback_pending()
    kiosk.play(tone, 24_000)
    dropped = kiosk.flush_playback()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    Path(out_path).write_bytes(bytes(sink.pcm))
    print(json.dumps({"chunks": sink.chunks, "pending_after": pending_after,
                      "dropped": dropped, "status": kiosk.status()}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

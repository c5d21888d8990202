"""Files the configuration tests write: an edge-agent.toml, a short WAV."""

from __future__ import annotations

from pathlib import Path


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge-agent.toml"
    p.write_text(text)
    return p


def wav(path: Path, seconds: float = 0.1) -> Path:
    import wave

    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16_000)
        wf.writeframes(bytes(int(32_000 * seconds)))
    return path

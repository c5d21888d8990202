"""edge-agent: smart glasses or a kiosk, talking to Gemini Live, acting on the home."""

__version__ = "0.1.0"

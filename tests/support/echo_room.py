"""The room on arrays (echo path and talker): `simulator.soundcard.room`, for the tests."""

from simulator.soundcard.room import RATE, EchoRoom, active_level_db, impulse_response, place

__all__ = ["RATE", "EchoRoom", "active_level_db", "impulse_response", "place"]

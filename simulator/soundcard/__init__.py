"""A sound card and a room for the kiosk, with no hardware.

- `pulse`: a user-level PulseAudio with null sinks that real PyAudio plays to and
  records from (Debian pulseaudio, pulseaudio-utils, libasound2-plugins), and the
  room that closes the loop in its own process (`room_process`)
- `room`: the loudspeaker-to-microphone echo path and a talker, on arrays
- `speech`: real speech from libespeak-ng (Debian espeak-ng), in-process

Used by `edge-agent demo --kiosk` (simulator.kiosk_demo), the tests and the benchmarks.
"""

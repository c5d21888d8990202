"""Glasses over Bluetooth LE, described by a device profile (device_profiles/).

- peripheral.py      `BlePeripheral`: the `Peripheral` the Agent sees; what outlives a link
- session.py         `LinkSession`: one connection's media, set up and torn down with it
- uplink.py          framing and codec decoders, kept across connections
- playback.py        the speaker queue: resampled, encoded, paced out in MTU-sized writes
- central.py         `BleCentral`: scan, connect, MTU, bond, backoff
- pinning.py         which glasses are the user's (kept in the state directory)
- framing.py         wire formats: omi packets and photo chunks, Frame messages, buttons
- profile.py         `load_profile`: find and read a profile (types: profile_types.py,
                     checks: profile_schema.py)
- photo_pacing.py    `PhotoPacer`: a photo is asked for in a pause of the user's speech
- backends.py        BlueZ or the simulator's radio (bumble_backend.py; its notifications
                     skip Bumble's host through bumble_notify.py)
"""

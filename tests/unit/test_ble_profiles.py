"""Device profiles: the shipped files load, and every kind of mistake fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.media.codecs import CodecSpec
from daemon.peripherals.ble.framing import FrameFlags
from daemon.peripherals.ble.profile import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    AudioControl,
    AudioSpec,
    Characteristics,
    DeviceProfile,
    Discovery,
    DownlinkSpec,
    PhotoControl,
    PhotoSpec,
    ProfileError,
    TapSpec,
    default_profile_dir,
    list_profiles,
    load_all,
    load_profile,
    normalize_uuid,
)

pytestmark = pytest.mark.timeout(30)

OMI_SERVICE = "19b10000-e8f2-537e-4f6c-d104768a1214"
OMI_AUDIO = "19b10001-e8f2-537e-4f6c-d104768a1214"
FRAME_RX = "7a230003-5475-a6a4-654c-8431f6ad49c4"
FRAME_TX = "7a230002-5475-a6a4-654c-8431f6ad49c4"

BASE = """\
display_name = "Test glasses"
min_mtu = 100

[discovery]
name_prefixes = ["Test"]

[characteristics]
audio_data = "19B10001-E8F2-537E-4F6C-D104768A1214"
codec_id = "19B10002-E8F2-537E-4F6C-D104768A1214"
photo_data = "19B10005-E8F2-537E-4F6C-D104768A1214"
photo_control = "19B10006-E8F2-537E-4F6C-D104768A1214"

[audio]
framing = "omi"
default_codec = 20

[audio.codecs]
1 = { codec = "pcm16", rate = 8000 }
20 = { codec = "opus", rate = 16000, frame_ms = 20 }

[photo]
framing = "omi"
orientation_byte = true

[photo.control]
one_shot = [0xFF]
stop = [0x00]
interval_encoding = "i8"
interval_min_s = 5
interval_max_s = 127
"""
FRAMED = BASE.replace('framing = "omi"\ndefault', 'framing = "frame"\ndefault')  # Frame audio
PROTOCOL = ("\n[frame_protocol]\ndata_prefix = 1\naudio = 5\naudio_final = 6\n"
            "photo = 7\nphoto_final = 8\n")  # the flags with neither tap nor talk
BUTTON = BASE.replace(  # BASE with omi's button characteristic
    'photo_control = "19B10006-E8F2-537E-4F6C-D104768A1214"\n',
    'photo_control = "19B10006-E8F2-537E-4F6C-D104768A1214"\nbutton = "2A6E"\n',
)


def write(tmp_path: Path, text: str, name: str = "test") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- shipped files
OMI_FAMILY_SERVICE = "19b10000-e8f2-537e-4f6c-d104768a1214"
OMI_FAMILY_CODEC_ID = "19b10002-e8f2-537e-4f6c-d104768a1214"
OMI_FAMILY_PHOTO = "19b10005-e8f2-537e-4f6c-d104768a1214"
OMI_FAMILY_PHOTO_CONTROL = "19b10006-e8f2-537e-4f6c-d104768a1214"
FRAME_SERVICE = "7a230001-5475-a6a4-654c-8431f6ad49c4"
OMI_GLASS_CAMERA = PhotoControl(
    one_shot=b"\xff",
    stop=b"\x00",
    interval_prefix=b"",
    interval_encoding="i8",
    interval_min_s=5,
    interval_max_s=127,
)


def shipped(name: str) -> Path:
    return default_profile_dir() / f"{name}.toml"


# Every value of every shipped profile, written out: a change to the loader that
# changes what a profile means fails here, whatever the files say.
SHIPPED = {
    "omi": DeviceProfile(
        name="omi",
        display_name="Omi",
        source=shipped("omi"),
        discovery=Discovery(("Omi", "Friend"), (OMI_FAMILY_SERVICE,)),
        characteristics=Characteristics(
            audio_data=OMI_AUDIO,
            service=OMI_FAMILY_SERVICE,
            codec_id=OMI_FAMILY_CODEC_ID,
            audio_control=None,
            photo_data=None,
            photo_control=None,
            speaker="19b10003-e8f2-537e-4f6c-d104768a1214",
            button_service="23ba7924-0000-1000-7450-346eac492e92",
            button="23ba7925-0000-1000-7450-346eac492e92",
            battery_service="0000180f-0000-1000-8000-00805f9b34fb",
            battery_level="00002a19-0000-1000-8000-00805f9b34fb",
        ),
        audio=AudioSpec(
            framing="omi",
            default_codec=20,
            codecs=(
                (0, CodecSpec("pcm16", 16000, 20)),
                (1, CodecSpec("pcm16", 8000, 20)),
                (10, CodecSpec("mulaw", 16000, 20)),
                (11, CodecSpec("mulaw", 8000, 20)),
                (20, CodecSpec("opus", 16000, 20)),
                (21, CodecSpec("opus", 16000, 20)),
            ),
            control=None,
        ),
        photo=PhotoSpec(
            framing="none", orientation_byte=False, max_bytes=524288, control=None, chunk_bytes=200
        ),
        downlink=DownlinkSpec(
            kind="pcm16", rate=8000, frame_ms=20, chunk_bytes=400, length_prefix="u32le"
        ),
        min_mtu=100,
        max_mtu=None,
        bonding_required=False,
        frame_flags=None,
        tap=TapSpec(source="button", events=(1,), talk_events=(2,)),
    ),
    "omiglass": DeviceProfile(
        name="omiglass",
        display_name="omiGlass",
        source=shipped("omiglass"),
        discovery=Discovery(("OMI Glass", "Omi Glass", "omiGlass"), (OMI_FAMILY_SERVICE,)),
        characteristics=Characteristics(
            audio_data=OMI_AUDIO,
            service=OMI_FAMILY_SERVICE,
            codec_id=OMI_FAMILY_CODEC_ID,
            audio_control=None,
            photo_data=OMI_FAMILY_PHOTO,
            photo_control=OMI_FAMILY_PHOTO_CONTROL,
            speaker=None,
            button_service=None,
            button=None,
            battery_service="0000180f-0000-1000-8000-00805f9b34fb",
            battery_level="00002a19-0000-1000-8000-00805f9b34fb",
        ),
        audio=AudioSpec(
            framing="omi",
            default_codec=21,
            codecs=(
                (1, CodecSpec("pcm16", 8000, 20)),
                (11, CodecSpec("mulaw", 8000, 20)),
                (20, CodecSpec("opus", 16000, 20)),
                (21, CodecSpec("opus", 16000, 20)),
            ),
            control=None,
        ),
        photo=PhotoSpec(
            framing="omi",
            orientation_byte=True,
            max_bytes=524288,
            control=OMI_GLASS_CAMERA,
            chunk_bytes=200,
        ),
        downlink=DownlinkSpec(
            kind="none", rate=0, frame_ms=20, chunk_bytes=0, length_prefix="none"
        ),
        min_mtu=205,
        max_mtu=None,
        bonding_required=False,
        frame_flags=None,
        tap=TapSpec(source="none", events=()),
    ),
    "openglass": DeviceProfile(
        name="openglass",
        display_name="OpenGlass",
        source=shipped("openglass"),
        discovery=Discovery(("OpenGlass",), (OMI_FAMILY_SERVICE,)),
        characteristics=Characteristics(
            audio_data=OMI_AUDIO,
            service=OMI_FAMILY_SERVICE,
            codec_id=OMI_FAMILY_CODEC_ID,
            audio_control=None,
            photo_data=OMI_FAMILY_PHOTO,
            photo_control=OMI_FAMILY_PHOTO_CONTROL,
            speaker=None,
            button_service=None,
            button=None,
            battery_service="0000180f-0000-1000-8000-00805f9b34fb",
            battery_level="00002a19-0000-1000-8000-00805f9b34fb",
        ),
        audio=AudioSpec(
            framing="omi",
            default_codec=1,
            codecs=(
                (1, CodecSpec("pcm16", 8000, 20)),
                (11, CodecSpec("mulaw", 8000, 20)),
                (20, CodecSpec("opus", 16000, 20)),
            ),
            control=None,
        ),
        photo=PhotoSpec(
            framing="omi",
            orientation_byte=False,
            max_bytes=524288,
            control=OMI_GLASS_CAMERA,
            chunk_bytes=200,
        ),
        downlink=DownlinkSpec(
            kind="none", rate=0, frame_ms=20, chunk_bytes=0, length_prefix="none"
        ),
        min_mtu=205,
        max_mtu=None,
        bonding_required=False,
        frame_flags=None,
        tap=TapSpec(source="none", events=()),
    ),
    "frame": DeviceProfile(
        name="frame",
        display_name="Brilliant Labs Frame",
        source=shipped("frame"),
        discovery=Discovery(("Frame",), (FRAME_SERVICE,)),
        characteristics=Characteristics(
            audio_data=FRAME_RX,
            service=FRAME_SERVICE,
            codec_id=None,
            audio_control=FRAME_TX,
            photo_data=FRAME_RX,
            photo_control=FRAME_TX,
            speaker=None,
            button_service=None,
            button=None,
            battery_service="0000180f-0000-1000-8000-00805f9b34fb",
            battery_level="00002a19-0000-1000-8000-00805f9b34fb",
        ),
        audio=AudioSpec(
            framing="frame",
            default_codec=0,
            codecs=((0, CodecSpec("pcm16", 8000, 20)), (1, CodecSpec("pcm8", 8000, 20))),
            control=AudioControl(start=b"\x01\x30\x01", stop=b"\x01\x30\x00"),
        ),
        photo=PhotoSpec(
            framing="frame",
            orientation_byte=False,
            max_bytes=524288,
            control=PhotoControl(
                one_shot=b"\x01\x0d",
                stop=b"\x01\x0f",
                interval_prefix=b"\x01\x0e",
                interval_encoding="u8",
                interval_min_s=1,
                interval_max_s=255,
            ),
            chunk_bytes=200,
        ),
        downlink=DownlinkSpec(
            kind="none", rate=0, frame_ms=20, chunk_bytes=0, length_prefix="none"
        ),
        min_mtu=64,
        max_mtu=256,
        bonding_required=True,
        frame_flags=FrameFlags(
            data_prefix=0x01, audio=0x05, audio_final=0x06, photo=0x07, photo_final=0x08, tap=0x09,
            talk=0x0A,
        ),
        tap=TapSpec(source="frame", events=()),
    ),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profile_values_are_pinned(name: str) -> None:
    assert load_profile(name) == SHIPPED[name]


def test_every_shipped_profile_is_pinned() -> None:
    assert set(list_profiles()) == set(SHIPPED)


def test_shipped_profiles_are_listed_and_load() -> None:
    names = list_profiles()
    assert {"omi", "omiglass", "openglass", "frame"} <= set(names)
    profiles = load_all()
    assert set(profiles) == set(names)
    for name, profile in profiles.items():
        assert profile.name == name
        assert profile.display_name
        assert profile.source.parent == default_profile_dir()
        assert profile.audio.codec(profile.audio.default_codec) is not None
        assert profile.characteristics.battery_service == BATTERY_SERVICE_UUID
        assert profile.characteristics.battery_level == BATTERY_LEVEL_UUID


def test_omi_profile_facts() -> None:
    p = load_profile("omi")
    assert p.min_mtu == 100
    assert not p.bonding_required
    assert p.discovery.service_uuids == (OMI_SERVICE,)
    assert p.characteristics.audio_data == OMI_AUDIO
    assert p.characteristics.speaker == "19b10003-e8f2-537e-4f6c-d104768a1214"
    assert p.audio.framing == "omi"
    assert p.audio.codec_map == {
        0: CodecSpec("pcm16", 16000),
        1: CodecSpec("pcm16", 8000),
        10: CodecSpec("mulaw", 16000),
        11: CodecSpec("mulaw", 8000),
        20: CodecSpec("opus", 16000, 20),
        21: CodecSpec("opus", 16000, 20),
    }
    assert p.audio.codec(99) is None
    assert p.photo.framing == "none"
    assert p.downlink.kind == "pcm16"
    assert p.downlink.rate == 8000
    assert p.downlink.length_prefix == "u32le"
    assert p.downlink.chunk_bytes == 400
    assert p.frame_flags is None
    assert p.tap == TapSpec("button", (1,), (2,)) and p.can_talk  # double tap: talk
    assert p.characteristics.button == "23ba7925-0000-1000-7450-346eac492e92"
    assert p.characteristics.button_service == "23ba7924-0000-1000-7450-346eac492e92"


def test_omiglass_photo_settings_and_commands() -> None:
    p = load_profile("omiglass")
    assert p.photo.framing == "omi"
    assert p.photo.orientation_byte
    assert p.photo.max_bytes == 512 * 1024
    assert p.photo.chunk_bytes == 200
    assert p.characteristics.photo_data == "19b10005-e8f2-537e-4f6c-d104768a1214"
    assert p.characteristics.photo_control == "19b10006-e8f2-537e-4f6c-d104768a1214"
    control = p.photo.control
    assert control is not None
    assert control.one_shot == b"\xff"
    assert control.stop == b"\x00"
    assert control.interval(30) == b"\x1e"
    assert control.interval(1) == b"\x05"  # clamped to the minimum
    assert control.interval(1000) == b"\x7f"  # clamped to what an int8 holds
    assert p.downlink.kind == "none"
    assert p.characteristics.speaker is None


def test_openglass_has_no_orientation_byte() -> None:
    p = load_profile("openglass")
    assert p.photo.framing == "omi"
    assert not p.photo.orientation_byte
    assert p.audio.default_codec == 1


def test_frame_profile_uses_message_layer_and_bonding() -> None:
    p = load_profile("frame")
    assert p.bonding_required
    assert p.max_mtu == 256
    assert p.audio.framing == "frame"
    assert p.photo.framing == "frame"
    assert p.characteristics.audio_data == FRAME_RX
    assert p.characteristics.photo_data == FRAME_RX
    assert p.characteristics.audio_control == FRAME_TX
    assert p.characteristics.codec_id is None
    assert p.frame_flags == FrameFlags(0x01, 0x05, 0x06, 0x07, 0x08, tap=0x09, talk=0x0A)
    assert p.tap == TapSpec("frame")
    assert p.audio.control is not None
    assert p.audio.control.start.startswith(b"\x01")
    assert p.photo.control is not None
    assert p.photo.control.interval(10) == b"\x01\x0e\x0a"


def test_discovery_needs_the_name_and_the_service_uuid() -> None:
    omi = load_profile("omi")
    assert omi.matches_advertisement("Omi", [OMI_SERVICE.upper()])
    assert omi.matches_advertisement("Friend 2", ["not-a-uuid", OMI_SERVICE])
    # the omi family shares its service UUID: the name tells them apart
    assert not omi.matches_advertisement("OMI Glass", [OMI_SERVICE])
    assert not omi.matches_advertisement("OpenGlass", [OMI_SERVICE])
    assert not omi.matches_advertisement(None, [OMI_SERVICE])
    assert not omi.matches_advertisement("Omi", [])
    assert not omi.matches_advertisement("Omi", ["not-a-uuid", "180F"])
    assert load_profile("omiglass").matches_advertisement("OMI Glass", [OMI_SERVICE])
    frame = load_profile("frame")
    assert frame.matches_advertisement("Frame 4F", ["7A230001-5475-A6A4-654C-8431F6AD49C4"])
    assert not frame.matches_advertisement("Omi", ["7A230001-5475-A6A4-654C-8431F6AD49C4"])


def test_discovery_by_one_list_alone() -> None:
    by_name = Discovery(name_prefixes=("Test",))
    assert by_name.matches("Test 1") and not by_name.matches("Other", [OMI_SERVICE])
    by_uuid = Discovery(service_uuids=(OMI_SERVICE,))
    assert by_uuid.matches(None, [OMI_SERVICE]) and not by_uuid.matches("Test", [])


def test_button_tap_source_with_its_own_events(tmp_path: Path) -> None:
    text = BUTTON
    p = load_profile(write(tmp_path, text + '\n[tap]\nsource = "button"\nevents = [2, 6]\n'))
    assert p.tap == TapSpec("button", (2, 6)) and not p.can_talk
    talk = load_profile(write(tmp_path, text + '\n[tap]\nsource = "button"\nevents = [6]\n'
                              'talk_events = [2, 3]\n', "t"))
    assert talk.tap == TapSpec("button", (6,), (2, 3)) and talk.can_talk
    assert p.characteristics.button == normalize_uuid("2A6E")
    assert p.characteristics.button_service is None  # looked up in any service
    default = load_profile(write(tmp_path, text + '\n[tap]\nsource = "button"\n', "d"))
    assert default.tap.events == (1,)  # omi's single tap
    assert load_profile(write(tmp_path, BASE, "none")).tap == TapSpec()


# ------------------------------------------------------------------------ UUIDs
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("180F", "0000180f-0000-1000-8000-00805f9b34fb"),
        ("0x2a19", "00002a19-0000-1000-8000-00805f9b34fb"),
        ("0000180F", "0000180f-0000-1000-8000-00805f9b34fb"),
        ("19B10000-E8F2-537E-4F6C-D104768A1214", OMI_SERVICE),
        ("19B10000E8F2537E4F6CD104768A1214", OMI_SERVICE),
        ("  19b10000-e8f2-537e-4f6c-d104768a1214 ", OMI_SERVICE),
    ],
)
def test_normalize_uuid(text: str, expected: str) -> None:
    assert normalize_uuid(text) == expected


@pytest.mark.parametrize("text", ["", "18F", "xyz1", "19B10000-E8F2-537E-4F6C", "0x", "180F0"])
def test_normalize_uuid_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        normalize_uuid(text)


# ---------------------------------------------------------------------- loading
def test_load_by_path_and_by_name_in_directory(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, "mine")
    by_path = load_profile(path)
    by_name = load_profile("mine", tmp_path)
    assert by_path == by_name
    assert by_path.name == "mine"
    assert by_path.characteristics.audio_data == OMI_AUDIO
    assert list_profiles(tmp_path) == ["mine"]
    assert load_profile(str(path)).name == "mine"


def test_defaults_when_optional_tables_absent(tmp_path: Path) -> None:
    text = BASE.split("[photo]")[0]
    p = load_profile(write(tmp_path, text))
    assert p.photo.framing == "none"
    assert p.photo.control is None
    assert p.downlink.kind == "none"
    assert p.bonding_required is False
    assert p.max_mtu is None


def test_list_profiles_of_missing_directory(tmp_path: Path) -> None:
    assert list_profiles(tmp_path / "nope") == []


def test_unknown_profile_name_lists_available(tmp_path: Path) -> None:
    write(tmp_path, BASE, "alpha")
    with pytest.raises(ProfileError, match=r"unknown device profile 'beta' .*available: alpha"):
        load_profile("beta", tmp_path)


def test_bad_profile_name_is_rejected() -> None:
    with pytest.raises(ProfileError, match="bad device profile name"):
        load_profile("..")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")


def _replace(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


BAD_CASES = [
    pytest.param(BASE + "\ncolour = 1\n", "photo.control.colour: unknown key", id="unknown-key"),
    pytest.param(
        _replace('display_name = "Test glasses"', 'display_name = "T"\nvendor = "x"'),
        "vendor: unknown key",
        id="unknown-top-key",
    ),
    pytest.param(
        _replace("[discovery]\n", '[discovery]\nnames = ["x"]\n'),
        "discovery.names: unknown key",
        id="unknown-discovery-key",
    ),
    pytest.param(
        _replace('"19B10001-E8F2-537E-4F6C-D104768A1214"', '"19B10001-E8F2"'),
        "characteristics.audio_data: bad UUID",
        id="bad-uuid",
    ),
    pytest.param(
        _replace('name_prefixes = ["Test"]', 'service_uuids = ["zz"]'),
        r"discovery.service_uuids\[0\]: bad UUID",
        id="bad-service-uuid",
    ),
    pytest.param(
        _replace('codec = "opus"', 'codec = "opuss"'),
        "audio.codecs.20.codec: unknown value 'opuss'",
        id="unknown-codec",
    ),
    pytest.param(
        _replace('framing = "omi"\ndefault', 'framing = "ble"\ndefault'),
        "audio.framing: unknown value 'ble'",
        id="unknown-audio-framing",
    ),
    pytest.param(
        _replace('[photo]\nframing = "omi"', '[photo]\nframing = "jpeg"'),
        "photo.framing: unknown value 'jpeg'",
        id="unknown-photo-framing",
    ),
    pytest.param(
        _replace('audio_data = "19B10001-E8F2-537E-4F6C-D104768A1214"\n', ""),
        "characteristics.audio_data: missing required key",
        id="missing-audio-char",
    ),
    pytest.param(
        _replace('photo_data = "19B10005-E8F2-537E-4F6C-D104768A1214"\n', ""),
        "characteristics.photo_data: required by photo.framing",
        id="missing-photo-char",
    ),
    pytest.param(
        _replace('photo_control = "19B10006-E8F2-537E-4F6C-D104768A1214"\n', ""),
        "characteristics.photo_control: required by photo.control",
        id="missing-photo-control-char",
    ),
    pytest.param(
        BASE + '\n[downlink]\nkind = "opus"\nrate = 16000\n',
        "characteristics.speaker: required by downlink.kind",
        id="missing-speaker",
    ),
    pytest.param(
        FRAMED,
        "frame_protocol: missing required table",
        id="frame-without-flags",
    ),
    pytest.param(
        _replace("default_codec = 20", "default_codec = 7"),
        "audio.default_codec: codec id 7 is not in audio.codecs",
        id="default-codec-unknown",
    ),
    pytest.param(
        _replace("1 = { codec", "x1 = { codec"),
        "audio.codecs.x1: codec ids are integers",
        id="codec-id-not-int",
    ),
    pytest.param(
        _replace("rate = 16000, frame_ms = 20", "rate = 44100, frame_ms = 20"),
        "audio.codecs.20.rate: opus rate 44100",
        id="opus-bad-rate",
    ),
    pytest.param(
        _replace(
            '{ codec = "pcm16", rate = 8000 }', '{ codec = "pcm16", rate = 8000, frame_ms = 5 }'
        ),
        "audio.codecs.1.frame_ms: only opus",
        id="pcm-frame-ms",
    ),
    pytest.param(
        _replace("min_mtu = 100", "min_mtu = 10"),
        "min_mtu: 10 out of range 23..517",
        id="mtu-range",
    ),
    pytest.param(
        _replace("min_mtu = 100", 'min_mtu = "big"'),
        "min_mtu: expected an integer, got str",
        id="mtu-type",
    ),
    pytest.param(
        _replace("one_shot = [0xFF]", "one_shot = [256]"),
        "photo.control.one_shot: expected a list of byte values",
        id="bad-bytes",
    ),
    pytest.param(
        _replace("interval_max_s = 127", "interval_max_s = 300"),
        "photo.control.interval_max_s: 300 out of range -128..127",
        id="interval-too-big-for-i8",
    ),
    pytest.param(
        _replace('[photo]\nframing = "omi"', '[photo]\nframing = "frame"\nchunk_bytes = 100')
        .replace("orientation_byte = true\n", "")
        .replace('framing = "omi"\ndefault', 'framing = "frame"\ndefault')
        + PROTOCOL,
        "photo.chunk_bytes: only omi photo framing",
        id="chunk-bytes-not-omi",
    ),
    pytest.param(
        _replace('[photo]\nframing = "omi"', '[photo]\nframing = "frame"'),
        "photo.orientation_byte: only omi photo framing",
        id="orientation-not-omi",
    ),
    pytest.param(
        _replace("orientation_byte = true", "orientation_byte = 1"),
        "photo.orientation_byte: expected true or false",
        id="bool-type",
    ),
    pytest.param(
        _replace('display_name = "Test glasses"', 'display_name = "Test glasses'),
        r"invalid TOML: .*line 1",
        id="invalid-toml",
    ),
    pytest.param(
        BASE + PROTOCOL,
        "frame_protocol: only used with framing",
        id="flags-without-frame",
    ),
    pytest.param(
        FRAMED + "\n[frame_protocol]\ndata_prefix = 1\naudio = 5\naudio_final = 5\n"
        "photo = 7\nphoto_final = 8\n",
        "frame_protocol.audio: frame audio/photo/tap/talk flags must be distinct",
        id="flags-not-distinct",
    ),
    pytest.param(
        BASE + '\n[tap]\nsource = "button"\n',
        'characteristics.button: required by tap.source = "button"',
        id="tap-button-without-characteristic",
    ),
    pytest.param(
        BASE + '\n[tap]\nsource = "knock"\n',
        "tap.source: unknown value 'knock'",
        id="tap-unknown-source",
    ),
    pytest.param(
        BASE + '\n[tap]\nsource = "frame"\n',
        'tap.source: a "frame" tap needs audio.framing = "frame"',
        id="tap-frame-without-frame-framing",
    ),
    pytest.param(
        BASE + '\n[tap]\nsource = "none"\nevents = [1]\n',
        'tap.events: only tap.source = "button" has event codes',
        id="tap-events-without-button",
    ),
    pytest.param(
        FRAMED + '\n[tap]\nsource = "frame"\n'
        + PROTOCOL,
        'frame_protocol.tap: required by tap.source = "frame"',
        id="tap-frame-without-flag",
    ),
    pytest.param(
        FRAMED + PROTOCOL + "tap = 7\n",
        "frame_protocol.audio: frame audio/photo/tap/talk flags must be distinct",
        id="tap-flag-not-distinct",
    ),
    pytest.param(
        FRAMED + PROTOCOL + "tap = 9\n",
        'frame_protocol.tap: only used with tap.source = "frame"',
        id="tap-flag-without-tap",
    ),
    pytest.param(  # one gesture both confirming and talking could talk an unlock through
        BUTTON + '\n[tap]\nsource = "button"\nevents = [1, 2]\ntalk_events = [2]\n',
        "tap.talk_events: 2 also in events; the talk gesture must differ from the tap",
        id="talk-event-is-a-tap",
    ),
    pytest.param(
        BUTTON + '\n[tap]\nsource = "button"\ntalk_events = [1]\n',  # 1: the default tap
        "tap.talk_events: 1 also in events; the talk gesture must differ from the tap",
        id="talk-event-is-the-default-tap",
    ),
    pytest.param(
        BASE + '\n[tap]\nsource = "none"\ntalk_events = [2]\n',
        'tap.talk_events: only tap.source = "button" has event codes',
        id="talk-events-without-button",
    ),
    pytest.param(
        FRAMED + PROTOCOL + "talk = 10\n",
        'frame_protocol.talk: only used with tap.source = "frame"',
        id="talk-flag-without-tap",
    ),
    pytest.param(
        FRAMED + '\n[tap]\nsource = "frame"\n'
        + PROTOCOL + "tap = 9\ntalk = 9\n",
        "frame_protocol.audio: frame audio/photo/tap/talk flags must be distinct",
        id="talk-flag-is-the-tap",
    ),
    pytest.param(
        BASE.replace("[audio]", 'speaker = "19B10003-E8F2-537E-4F6C-D104768A1214"\n\n[audio]')
        + '\n[downlink]\nkind = "pcm16"\nrate = 8000\nchunk_bytes = 515\n',
        "downlink.chunk_bytes: 515 is not a whole number of samples",
        id="chunk-odd",
    ),
    pytest.param(
        BASE.replace("min_mtu = 100", "min_mtu = 100\nmax_mtu = 256").replace(
            "[audio]", 'speaker = "19B10003-E8F2-537E-4F6C-D104768A1214"\n\n[audio]'
        )
        + '\n[downlink]\nkind = "pcm16"\nrate = 8000\nchunk_bytes = 400\n',
        "downlink.chunk_bytes: 400 does not fit one write at the largest MTU 256 "
        r"\(at most 253 bytes\)",
        id="chunk-above-max-mtu",
    ),
    pytest.param(
        BASE.replace("[audio]", 'speaker = "19B10003-E8F2-537E-4F6C-D104768A1214"\n\n[audio]')
        + '\n[downlink]\nkind = "pcm16"\nrate = 8000\nchunk_bytes = 516\n',
        "downlink.chunk_bytes: 516 does not fit one write at the largest MTU 517",
        id="chunk-above-att-limit",
    ),
    pytest.param(
        BASE.replace("[audio]", 'speaker = "19B10003-E8F2-537E-4F6C-D104768A1214"\n\n[audio]')
        + '\n[downlink]\nkind = "opus"\nrate = 16000\nchunk_bytes = 100\n',
        "downlink.chunk_bytes: only pcm16 downlinks are written in chunks",
        id="chunk-opus",
    ),
    pytest.param(
        _replace('display_name = "Test glasses"', 'display_name = "  "'),
        "display_name: must not be empty",
        id="empty-name",
    ),
    pytest.param(
        _replace('name_prefixes = ["Test"]', ""),
        "discovery.name_prefixes: give name_prefixes and/or service_uuids",
        id="no-discovery",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CASES)
def test_invalid_profiles_fail_with_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    text_of_error = str(info.value)
    assert "\n" not in text_of_error
    assert text_of_error.startswith(str(path))


def test_profile_error_is_a_value_error() -> None:
    assert issubclass(ProfileError, ValueError)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(path)

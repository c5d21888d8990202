"""Typed settings from a TOML file, the environment and command-line flags.

Precedence, lowest first: defaults, the TOML file, `EDGE_AGENT_<SECTION>__<KEY>`
environment variables, flags. Any problem raises `ConfigError` whose message is
one line naming the key and the reason; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from daemon.errors import EdgeAgentError

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/edge-agent.toml")
ENV_PREFIX = "EDGE_AGENT_"


class ConfigError(EdgeAgentError, ValueError):
    """A bad configuration file or value; `str()` is one line naming the key."""


def _blank_is_none(value: Any) -> Any:
    """An empty path (`ca_file = ""`, `EDGE_AGENT_LIVE__CA_FILE=`) means "not set",
    not the current directory."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _ca_bundle(path: Path | None) -> Path | None:
    """A CA file is checked at start: a typo must not surface as a TLS error later."""
    if path is None:
        return None
    try:
        # a bare context: the default one would load the system's CAs too (10-45 ms)
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except FileNotFoundError:
        raise ValueError(f"cannot read {path} (no such file)") from None
    except IsADirectoryError:
        raise ValueError(f"cannot read {path} (a directory, not a file)") from None
    except PermissionError:
        raise ValueError(f"cannot read {path} (permission denied)") from None
    except ssl.SSLError:  # before OSError: it is one
        raise ValueError(f"{path} holds no PEM certificate") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or exc})") from None
    return path


OptionalPath = Annotated[Path | None, BeforeValidator(_blank_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]  # "" = not set
CaFile = Annotated[Path | None, BeforeValidator(_blank_is_none), AfterValidator(_ca_bundle)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class LiveSettings(_Section):
    """`[live]`: the Gemini Live endpoint, the model and the link's timing."""

    model: str = Field("gemini-3.8-live", min_length=1)
    base_url: str = ""
    ca_file: CaFile = None
    api_version: str = Field("v1beta", min_length=1)
    voice: str = ""
    language: str = ""
    system_instruction: str = (
        "You are a helpful voice assistant running on the user's smart glasses or a "
        "wall kiosk. Keep answers short and spoken. Use the tools to act on the home."
    )
    video_fps: float = Field(1.0, gt=0, le=1.0)
    uplink_chunk_ms: int = Field(20, ge=10, le=200)
    replay_seconds: float = Field(10.0, ge=0, le=120)
    connect_timeout: float = Field(10.0, gt=0, le=120)
    stall_timeout: float = Field(45.0, gt=0, le=600)
    ping_interval: float = Field(10.0, gt=0, le=300)
    confirm_interval: float = Field(0.5, gt=0, le=10)
    backoff_initial: float = Field(0.5, gt=0, le=60)
    backoff_max: float = Field(30.0, gt=0, le=600)
    stable_after: float = Field(60.0, gt=0, le=3600)
    # After the API refused a connection (HTTP 401/403/404, a rejected key or setup)
    # later in the daemon's life: wait this long (doubling, jittered down to half)
    # before trying again. Refused on the first connection after start: exit 2.
    refused_backoff_initial: float = Field(300.0, gt=0, le=3600)
    refused_backoff_max: float = Field(1800.0, gt=0, le=86400)
    goaway_margin: float = Field(5.0, ge=0, le=60)
    # The session's newest resumption handle is kept in the state directory; a
    # restarted daemon resumes with it while it is younger than this (s since its
    # issue; the service keeps a handle 2 h after its session ends). 0 = never.
    resume_max_age: float = Field(7200.0, ge=0, le=86400)
    resume_save_interval: float = Field(1.0, ge=0, le=60)  # at most one write per interval
    compression_trigger_tokens: int = Field(25600, ge=1000)
    compression_target_tokens: int = Field(12800, ge=500)

    @model_validator(mode="after")
    def _check(self) -> LiveSettings:
        if self.base_url and "://" not in self.base_url:
            raise ValueError("base_url: must be a URL such as https://host:port")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max: must not be below backoff_initial")
        if self.refused_backoff_max < self.refused_backoff_initial:
            raise ValueError("refused_backoff_max: must not be below refused_backoff_initial")
        if self.compression_target_tokens >= self.compression_trigger_tokens:
            raise ValueError(
                "compression_target_tokens: must be below compression_trigger_tokens"
            )
        return self


class FilePeripheralSettings(_Section):
    """`[peripheral.file]`: a WAV streamed as the microphone, the model's audio to a WAV."""

    input: OptionalPath = None
    output: OptionalPath = None
    realtime: bool = True
    chunk_ms: int = Field(40, ge=10, le=200)
    tail_silence: float = Field(2.0, ge=0, le=60)


class BlePeripheralSettings(_Section):
    """`[peripheral.ble]`: the glasses' device profile, radio backend and link timing."""

    profile: str = "omi"
    backend: str = "bluez"
    address: str = ""
    silence_timeout: float = Field(5.0, gt=0, le=600)
    scan_timeout: float = Field(5.0, gt=0, le=120)
    connect_timeout: float = Field(10.0, gt=0, le=120)
    backoff_initial: float = Field(0.5, gt=0, le=60)
    backoff_max: float = Field(30.0, gt=0, le=600)
    photo_interval: float = Field(0.0, ge=0, le=3600)
    local_output: str = ""
    # push_to_talk: audio goes upstream only between two talk gestures (omi: a double
    # tap; never the single tap that confirms a sensitive action)
    listen: Literal["always", "push_to_talk"] = "always"
    push_to_talk_max_hold: float = Field(60.0, gt=0, le=3600)  # a lost second gesture
    # held-back audio sent first when talk opens: words said as the gesture was made
    push_to_talk_preroll_ms: int = Field(500, ge=0, le=2000)
    earcons: bool = True  # a tone on the speaker when talk goes on or off

    @model_validator(mode="after")
    def _check(self) -> BlePeripheralSettings:
        if self.backend != "bluez" and not self.backend.startswith("virtual:"):
            raise ValueError("backend: must be 'bluez' or 'virtual:<bumble transport>'")
        return self


class KioskPeripheralSettings(_Section):
    """`[peripheral.kiosk]`: PortAudio devices, matched by part of their name, and the
    audio front end (daemon.audio): echo mode, voice detector, uplink gate, barge-in."""

    input_device: str = ""
    output_device: str = ""
    echo: Literal["auto", "webrtc", "speex", "half_duplex", "off"] = "auto"
    noise_suppression: bool = True
    # the VAD listens through a second canceller (libspeexdsp) once it has converged:
    # it keeps a user talking over the model that WebRTC's suppressor chops ("off"
    # saves ~4 % of a core while the model speaks)
    double_talk: Literal["speex", "off"] = "speex"
    vad: Literal["silero", "webrtc", "off"] = "silero"
    vad_gate: bool = True  # send speech (with pre-roll), not silence
    preroll_ms: int = Field(300, ge=0, le=2000)
    hangover_ms: int = Field(600, ge=100, le=5000)
    barge_in: bool = True
    duck_db: float = Field(20.0, ge=0, le=60)
    resume_after: float = Field(1.5, ge=0.2, le=30)
    echo_tail_ms: int = Field(300, ge=0, le=3000)
    block_ms: int = Field(20, ge=10, le=100, multiple_of=10)
    listen: Literal["always", "wake_word", "push_to_talk"] = "always"
    wake_word: str = "hey_jarvis"  # a model inside pyopen-wakeword, or a .tflite path
    wake_threshold: float = Field(0.5, gt=0, lt=1)
    wake_refractory: float = Field(2.0, ge=0, le=60)
    listen_window: float = Field(6.0, gt=0, le=60)  # after the wake word
    follow_up: float = Field(6.0, ge=0, le=60)  # after an answer, no wake word needed; 0 = off
    stop_word: str = ""  # a model like wake_word; "" = none
    earcons: bool = True
    # Push-to-talk sources (listen = "push_to_talk"; daemon.peripherals.ptt_sources):
    # "terminal" (the space bar on the daemon's terminal toggles), or an evdev keyboard
    # "/dev/input/eventN[:KEY_NAME]" (held; default KEY_SPACE; needs python-evdev)
    push_to_talk_key: str = ""
    # a button on a GPIO line, "gpiochipN:LINE[:active_high]" (libgpiod's python gpiod)
    push_to_talk_gpio: str = Field("", pattern=r"^$|^[^:]+:\d+(:active_(high|low))?$")
    # Home Assistant's "Push to talk" switch on edge-agent/<client_id>/push_to_talk/set
    push_to_talk_mqtt: bool = False
    push_to_talk_max_hold: float = Field(60.0, gt=0, le=3600)  # a lost release lets go


class PeripheralSettings(_Section):
    """`[peripheral]`: which kind is used, and the settings of each."""

    kind: Literal["file", "ble", "kiosk"] = "file"
    file: FilePeripheralSettings = FilePeripheralSettings()
    ble: BlePeripheralSettings = BlePeripheralSettings()
    kiosk: KioskPeripheralSettings = KioskPeripheralSettings()


_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})  # pydantic's spellings of true


def default_client_id(hostname: str | None = None) -> str:
    """`edge-agent-<host name>`: stable across restarts of one host, different between
    hosts (two daemons with one id and persistent sessions take each other's place)."""
    host = socket.gethostname() if hostname is None else hostname
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", host.split(".")[0]).strip("-_")
    return f"edge-agent-{host}"[:64].rstrip("-_") if host else "edge-agent"


class MqttSettings(_Section):
    """`[mqtt]`: the broker, the daemon's identity on it, and limits on what it takes."""

    host: str = ""
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: SecretStr | None = None
    tls: bool = False
    ca_file: CaFile = None
    # Also the daemon's Home Assistant node id and its topic base `edge-agent/<client_id>/`.
    # Default `edge-agent-<host name>`: each host its own (one id shared by two daemons
    # makes the broker throw one out whenever the other connects).
    client_id: str = Field(default_factory=default_client_id, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    discovery_prefix: str = Field("homeassistant", min_length=1)
    # Devices declared here (`[[mqtt.devices]]`), same keys as a discovery config plus
    # `component`, `name`, optional `id` and `area`; for devices that do not announce.
    # Checked when the daemon starts (daemon.home.declared): config stays below home.
    devices: tuple[dict[str, Any], ...] = ()
    announce: bool = True  # publish the daemon itself as a Home Assistant device
    # Topics device commands may go to; empty = the first levels of the devices' own
    # state topics. Never the daemon's own (edge-agent/...) or the discovery prefix.
    command_prefixes: tuple[str, ...] = ()
    # What the user says, published to Home Assistant (a sensor). Off: speech stays here.
    publish_transcript: bool = False
    # Home Assistant may always mute the microphone and turn the camera off; turning
    # them back on over MQTT only with this on (and a broker ACL on those topics).
    remote_unmute: bool = False
    state_interval: float = Field(30.0, gt=0, le=3600)  # re-publish its states this often
    refresh_debounce: float = Field(0.5, ge=0, le=10)  # quiet time before tools are rebuilt
    max_described_devices: int = Field(50, ge=0, le=10_000)  # listed in the tool description
    # Largest payload taken from the broker, for a discovery config and for anything
    # else (states, availability); larger ones are dropped unread and counted. Over
    # MQTT 5 the broker is told the largest packet we take (the larger cap + 4 KiB for
    # the topic), so it does not even send bigger ones (mosquitto logs the drop).
    max_discovery_bytes: int = Field(65536, ge=1024, le=16 << 20)
    max_state_bytes: int = Field(16384, ge=256, le=16 << 20)

    @model_validator(mode="before")
    @classmethod
    def _tls_port(cls, data: Any) -> Any:
        """MQTT over TLS listens on 8883 by convention: the default follows `tls`.

        An empty client id means the default one (`edge-agent-<host name>`).
        """
        if isinstance(data, dict) and isinstance(data.get("client_id"), str) and not (
            data["client_id"].strip()
        ):
            data = {k: v for k, v in data.items() if k != "client_id"}
        if isinstance(data, dict) and "port" not in data:
            tls = data.get("tls")
            if tls is True or (isinstance(tls, str) and tls.strip().lower() in _TRUE):
                return {**data, "port": 8883}
        return data

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        prefix = self.discovery_prefix
        if any(c in prefix for c in "+#\x00") or prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("discovery_prefix: must be a topic without wildcards or edge '/'")
        return self


ConfirmMethod = Literal["yes", "tap", "pin"]
ConfirmMethods = Annotated[tuple[ConfirmMethod, ...], Field(min_length=1)]


class ConfirmWithSettings(_Section):
    """How the user may confirm each category of sensitive action (daemon.home.sensitivity):
    `yes` a spoken yes, `tap` a tap on the pinned glasses, `pin` the spoken PIN."""

    lock: ConfirmMethods = ("tap", "pin")
    alarm: ConfirmMethods = ("tap", "pin")
    gate: ConfirmMethods = ("tap", "pin")
    garage: ConfirmMethods = ("yes", "tap", "pin")
    door: ConfirmMethods = ("yes", "tap", "pin")
    other: ConfirmMethods = ("yes", "tap", "pin")


class ToolsSettings(_Section):
    """`[tools]`: deadlines, and what sensitive actions need before they run."""

    deadline: float = Field(5.0, gt=0, le=120)
    confirm_ttl: float = Field(30.0, gt=0, le=600)
    confirm_deadline: float = Field(3.0, gt=0, le=60)
    confirm_wait: float = Field(1.5, ge=0, le=10)  # a confirming call waits for the user's yes
    sensitive: tuple[str, ...] = ("lock", "garage", "gate", "door", "alarm_control_panel")
    confirm_with: ConfirmWithSettings = ConfirmWithSettings()
    # The spoken confirmation PIN (4-12 digits); better as the credential `confirm_pin`.
    confirm_pin: SecretStr | None = None
    # A sensitive device announced while the daemon was not looking waits this long
    # (announced in the log and to Home Assistant) before it can be controlled.
    new_device_hold: float = Field(60.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _check_pin(self) -> ToolsSettings:
        if self.confirm_pin is not None:
            pin = self.confirm_pin.get_secret_value().strip()
            if not (pin.isdigit() and pin.isascii() and 4 <= len(pin) <= 12):
                raise ValueError("confirm_pin: must be 4 to 12 digits")
        return self


class OpsSettings(_Section):
    """`[ops]`: health port, logging, and where state survives a restart."""

    health_port: int = Field(0, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # Where state that must survive a restart lives when systemd's $STATE_DIRECTORY
    # is not set (the pinned glasses, the microphone and camera switches, ...).
    state_dir: OptionalPath = None


class InteractionsSettings(_Section):
    """`[interactions]`: background tasks through the Interactions API (see daemon.tasks).

    The endpoint (`base_url`, `ca_file`, `api_version`) defaults to the Live link's,
    so one private endpoint serves both, as the real one does.
    """

    enabled: bool = False  # opt-in: a research agent costs money per task
    agent: str = "deep-research-pro-preview-12-2025"  # a managed agent; "" = use `model`
    model: str = ""  # a model instead of an agent (used when `agent` is "")
    base_url: OptionalText = None  # None or "" = live.base_url
    ca_file: CaFile = None  # None or "" = live.ca_file
    api_version: OptionalText = None  # None or "" = live.api_version
    poll_initial: float = Field(2.0, gt=0, le=60)  # first poll after a start, in seconds
    poll_max: float = Field(60.0, gt=0, le=600)  # polls back off up to this
    max_task_seconds: float = Field(1800.0, gt=0, le=86400)  # then the task is given up
    max_concurrent: int = Field(3, ge=1, le=20)
    request_timeout: float = Field(30.0, gt=0, le=300)  # one REST call
    deliver_quiet: float = Field(1.5, ge=0, le=60)  # silence before a result is spoken
    keep_finished: int = Field(50, ge=1, le=10_000)  # finished tasks kept in the database
    # Delete a task's interaction on the service once its result was delivered (the
    # service keeps them otherwise); a completed one only after `follow_up_window`,
    # since a follow-up continues it there (0 = at once, and no follow-ups).
    delete_delivered: bool = True
    follow_up_window: float = Field(900.0, ge=0, le=7 * 86400)
    # The fallback road (daemon.tasks.fallback): turn-based through this API while the
    # Live link is down. Opt-in (each turn is a paid request); off, nothing of it exists.
    fallback: bool = False
    fallback_after: float = Field(15.0, ge=0, le=3600)  # Live down this long: switch
    fallback_return_after: float = Field(2.0, ge=0, le=600)  # Live up this long: back
    fallback_model: str = "gemini-2.5-flash"  # hears the utterance's audio, calls tools
    fallback_audio_out: bool = False  # the model answers in audio itself (else TTS)
    tts_model: str = "gemini-2.5-flash-preview-tts"  # speaks a text answer
    fallback_turn_timeout: float = Field(30.0, gt=0, le=300)  # one whole turn, tools included

    @model_validator(mode="after")
    def _check_target(self) -> InteractionsSettings:
        if not self.agent and not self.model:
            raise ValueError("agent: set an agent or a model")
        if self.poll_max < self.poll_initial:
            raise ValueError("poll_max: must be at least poll_initial")
        return self


class Settings(_Section):
    """The whole configuration: file, then environment, then flags (see `load_settings`)."""

    live: LiveSettings = LiveSettings()
    peripheral: PeripheralSettings = PeripheralSettings()
    mqtt: MqttSettings = MqttSettings()
    tools: ToolsSettings = ToolsSettings()
    ops: OpsSettings = OpsSettings()
    interactions: InteractionsSettings = InteractionsSettings()


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: {part} is a value, not a section")
        node = child
    node[path[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect `EDGE_AGENT_<SECTION>__<KEY>` variables as a nested dict of strings."""
    tree: dict[str, Any] = {}
    sections = set(Settings.model_fields)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if any(not p for p in path):
            raise ConfigError(f"{name}: malformed variable name")
        if path[0] not in sections:  # a typo must not be ignored, as in a file
            raise ConfigError(f"{name}: unknown section {path[0]!r} (sections: "
                              f"{', '.join(sorted(sections))})")
        _set_path(tree, path, _coerce_env(value, _wants_list(path)))
    return tree


def _wants_list(path: list[str]) -> bool:
    """Whether the key at `path` holds a list (or tuple): only then is `[...]` one."""
    model: Any = Settings
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    origin = typing.get_origin(model)
    return origin in (list, tuple) or model in (list, tuple)


def _coerce_env(value: str, wants_list: bool) -> Any:
    """Environment values are strings; for a list key, a TOML-looking list is parsed as
    one (a password that starts with "[" stays a string)."""
    stripped = value.strip()
    if wants_list and stripped.startswith("["):
        try:
            return tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def describe_error(err: ValidationError) -> str:
    """The first error as one line, `key: reason` (device profiles word theirs so too)."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        inner = msg[len("Value error, ") :]
        sub, sep, rest = inner.partition(": ")
        if sep and " " not in sub:
            key = f"{key}.{sub}" if key else sub
            msg = rest
        else:
            msg = inner
    return f"{key or 'config'}: {msg}"


def resolve_config_path(flag: str | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The file to read, and whether the user named it (then it must exist)."""
    if flag:
        return Path(flag), True
    if environ.get("EDGE_AGENT_CONFIG"):
        return Path(environ["EDGE_AGENT_CONFIG"]), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(
    path: Path | None = None,
    *,
    required: bool = False,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from file, environment and flag overrides (dotted keys)."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            if required:
                raise ConfigError(f"config: file {path} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config: {path} is a directory, not a file") from None
        except PermissionError:
            raise ConfigError(f"config: cannot read {path} (permission denied)") from None
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path} ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config: {path} is not UTF-8 text (at byte {exc.start})") \
                from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML ({exc})") from None
    data = _merge(data, _env_overrides(environ))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, dotted.split("."), value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None


def read_secret(env_name: str, credential: str, environ: Mapping[str, str] | None = None) -> (
    SecretStr | None
):
    """A secret from the environment, else from a systemd credential file."""
    environ = os.environ if environ is None else environ
    value = environ.get(env_name, "").strip()
    if not value and environ.get("CREDENTIALS_DIRECTORY"):
        cred = Path(environ["CREDENTIALS_DIRECTORY"]) / credential
        try:
            value = cred.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            value = ""
        except OSError as exc:
            raise ConfigError(f"{credential}: cannot read credential ({exc.strerror})") from None
        except UnicodeDecodeError:  # nothing of it in the message: it is a secret
            raise ConfigError(f"{credential}: the credential is not UTF-8 text") from None
    return SecretStr(value) if value else None

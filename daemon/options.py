"""What every command reads the same way: the common flags, the configuration with its
overrides and credentials, the API key, and logging with the secrets scrubbed."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from pydantic import SecretStr, ValidationError

from daemon.config import (
    ConfigError,
    Settings,
    ToolsSettings,
    load_settings,
    read_secret,
    resolve_config_path,
)

__all__ = ["add_common_options", "api_key", "known_secrets", "settings_from_args",
           "setup_logging"]


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The flags that override the common configuration keys."""
    parser.add_argument("--config", help="TOML file (default /etc/edge-agent/edge-agent.toml)")
    parser.add_argument("--model", help="live.model")
    parser.add_argument("--base-url", help="live.base_url")
    parser.add_argument("--ca-file", help="live.ca_file")
    parser.add_argument("--health-port", type=int, help="ops.health_port")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--peripheral", choices=["file", "ble", "kiosk"],
                        help="peripheral.kind")
    parser.add_argument("--input", help="peripheral.file.input (WAV)")
    parser.add_argument("--output", help="peripheral.file.output (WAV)")


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    get = a.__dict__.get
    return {
        "live.model": get("model"),
        "live.base_url": get("base_url"),
        "live.ca_file": get("ca_file"),
        "ops.health_port": get("health_port"),
        "ops.log_level": get("log_level"),
        "peripheral.kind": get("peripheral"),
        "peripheral.file.input": get("input"),
        "peripheral.file.output": get("output"),
        "peripheral.ble.profile": get("profile"),
    }


def settings_from_args(a: argparse.Namespace, *, demo: bool = False) -> Settings:
    """File, environment, flags and credentials; the MQTT password is registered for scrubbing."""
    from daemon.ops.logsetup import add_secret

    path, required = resolve_config_path(a.config, os.environ)
    overrides = _overrides(a)
    if demo and overrides["ops.log_level"] is None:
        overrides["ops.log_level"] = "warning"  # the transcript is the demo's output
    if demo and overrides["peripheral.kind"] is None and "EDGE_AGENT_PERIPHERAL__KIND" not in (
        os.environ
    ):
        overrides["peripheral.kind"] = "ble"  # virtual glasses unless asked otherwise
    settings = load_settings(path, required=required, overrides=overrides)
    if settings.mqtt.devices:  # the home's parsers cost 40-60 ms of start: only when used
        from daemon.home.declared import check_declared_devices

        check_declared_devices(settings.mqtt.devices)
    settings = _with_credentials(settings)
    if settings.mqtt.password is not None:  # also one from the file, for every command
        add_secret(settings.mqtt.password.get_secret_value())
    # Not the confirmation PIN: a few digits scrubbed from every line would mangle
    # unrelated numbers (a counter at 14821 with PIN 4821) and mark where the PIN sits
    # in text an attacker chose (probe topics 4800..4829): an oracle. The one way a
    # PIN reaches output, the user's words, goes through `redact_digits` instead.
    return settings


def _with_credentials(settings: Settings) -> Settings:
    """The MQTT password and the confirmation PIN from the environment or credentials."""
    if settings.mqtt.password is None:
        password = read_secret("EDGE_AGENT_MQTT__PASSWORD", "mqtt_password")
        if password is not None:
            mqtt = settings.mqtt.model_copy(update={"password": password})
            settings = settings.model_copy(update={"mqtt": mqtt})
    if settings.tools.confirm_pin is None:
        pin = read_secret("EDGE_AGENT_TOOLS__CONFIRM_PIN", "confirm_pin")
        if pin is not None:
            try:
                tools = ToolsSettings.model_validate(
                    {**settings.tools.model_dump(), "confirm_pin": pin}
                )
            except ValidationError:
                raise ConfigError("confirm_pin: the credential must be 4 to 12 digits") from None
            settings = settings.model_copy(update={"tools": tools})
    return settings


def api_key() -> SecretStr | None:
    """The Gemini API key: `GEMINI_API_KEY`, else the credential `gemini_api_key`."""
    return read_secret("GEMINI_API_KEY", "gemini_api_key")


def setup_logging(settings: Settings, secrets: list[str]) -> None:
    """Logging as configured, every secret scrubbed (the MQTT password was registered
    by `settings_from_args`)."""
    from daemon.ops.logsetup import install_excepthook
    from daemon.ops.logsetup import setup_logging as configure

    install_excepthook(secrets)
    configure(settings.ops.log_level, settings.ops.log_format, secrets)


def known_secrets() -> list[str]:
    """The secrets readable before any configuration: environment and credentials."""
    found: list[str] = []
    for env_name, credential in (
        ("GEMINI_API_KEY", "gemini_api_key"),
        ("EDGE_AGENT_MQTT__PASSWORD", "mqtt_password"),
    ):
        with contextlib.suppress(ConfigError):  # an unreadable credential: the command says so
            value = read_secret(env_name, credential)
            if value is not None:
                found.append(value.get_secret_value())
    return found

"""Home Assistant MQTT discovery, parsed into plain values (no I/O).

Devices announce themselves with retained JSON configs at
`<prefix>/<component>/[<node_id>/]<object_id>/config`. This module turns one such
message (or one `[[mqtt.devices]]` table from the config file, which uses the same
keys) into an `EntityConfig`: who the device is, where it lives, which topics it
listens and reports on, and which actions it supports with their ranges. Bad input
becomes a `DiscoveryError` value; no exception escapes `parse_discovery` or
`parse_entity`, because a single broken device must never stop the others.

Every string a device announces is data, never text for the model to obey: names,
areas, device classes, units and the device block are stripped of control and
line-breaking characters and cut to `MAX_TEXT_CHARS` (`clean_text`); choices that
are also payloads (preset modes, climate modes) cannot be altered, so an unclean
one is left out. A `unique_id` that is not a valid device id (`ID_RE`, the rule for
declared ids too) is not used: the id then comes from the discovery topic. Nothing
of the raw config is kept once it is parsed.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

COMPONENTS: tuple[str, ...] = (
    "light",
    "switch",
    "fan",
    "cover",
    "lock",
    "climate",
    "scene",
    "button",
    "sensor",
    "binary_sensor",
    "alarm_control_panel",
)

# Home Assistant's abbreviations for the keys the supported components use (and the
# common entity keys). Unknown keys are kept as they are and otherwise ignored.
ABBREVIATIONS: Mapping[str, str] = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "bri_cmd_t": "brightness_command_topic",
    "bri_cmd_tpl": "brightness_command_template",
    "bri_scl": "brightness_scale",
    "bri_stat_t": "brightness_state_topic",
    "bri_val_tpl": "brightness_value_template",
    "clr_temp_cmd_t": "color_temp_command_topic",
    "clr_temp_cmd_tpl": "color_temp_command_template",
    "clr_temp_k": "color_temp_kelvin",
    "clr_temp_stat_t": "color_temp_state_topic",
    "clr_temp_val_tpl": "color_temp_value_template",
    "clrm": "color_mode",
    "clrm_stat_t": "color_mode_state_topic",
    "clrm_val_tpl": "color_mode_value_template",
    "cod_arm_req": "code_arm_required",
    "cod_dis_req": "code_disarm_required",
    "cod_trig_req": "code_trigger_required",
    "cmd_off_tpl": "command_off_template",
    "cmd_on_tpl": "command_on_template",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cod_form": "code_format",
    "curr_temp_t": "current_temperature_topic",
    "curr_temp_tpl": "current_temperature_template",
    "dev": "device",
    "dev_cla": "device_class",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "exp_aft": "expire_after",
    "fx_cmd_t": "effect_command_topic",
    "fx_list": "effect_list",
    "fx_stat_t": "effect_state_topic",
    "hs_cmd_t": "hs_command_topic",
    "hs_stat_t": "hs_state_topic",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "max_k": "max_kelvin",
    "max_mirs": "max_mireds",
    "max_temp": "max_temp",
    "min_k": "min_kelvin",
    "min_mirs": "min_mireds",
    "min_temp": "min_temp",
    "mode_cmd_t": "mode_command_topic",
    "mode_cmd_tpl": "mode_command_template",
    "mode_stat_t": "mode_state_topic",
    "mode_stat_tpl": "mode_state_template",
    "modes": "modes",
    "name": "name",
    "o": "origin",
    "obj_id": "object_id",
    "on_cmd_type": "on_command_type",
    "opt": "optimistic",
    "osc_cmd_t": "oscillation_command_topic",
    "osc_cmd_tpl": "oscillation_command_template",
    "osc_stat_t": "oscillation_state_topic",
    "osc_val_tpl": "oscillation_value_template",
    "p": "platform",
    "pct_cmd_t": "percentage_command_topic",
    "pct_cmd_tpl": "percentage_command_template",
    "pct_stat_t": "percentage_state_topic",
    "pct_val_tpl": "percentage_value_template",
    "pl": "payload",
    "pl_arm_away": "payload_arm_away",
    "pl_arm_custom_b": "payload_arm_custom_bypass",
    "pl_arm_home": "payload_arm_home",
    "pl_arm_nite": "payload_arm_night",
    "pl_arm_vacation": "payload_arm_vacation",
    "pl_avail": "payload_available",
    "pl_cls": "payload_close",
    "pl_disarm": "payload_disarm",
    "pl_lock": "payload_lock",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_open": "payload_open",
    "pl_osc_off": "payload_oscillation_off",
    "pl_osc_on": "payload_oscillation_on",
    "pl_prs": "payload_press",
    "pl_stop": "payload_stop",
    "pl_trig": "payload_trigger",
    "pl_unlk": "payload_unlock",
    "pos": "reports_position",
    "pos_clsd": "position_closed",
    "pos_open": "position_open",
    "pos_t": "position_topic",
    "pos_tpl": "position_template",
    "pow_cmd_t": "power_command_topic",
    "pr_mode_cmd_t": "preset_mode_command_topic",
    "pr_mode_cmd_tpl": "preset_mode_command_template",
    "pr_mode_stat_t": "preset_mode_state_topic",
    "pr_mode_val_tpl": "preset_mode_value_template",
    "pr_modes": "preset_modes",
    "qos": "qos",
    "ret": "retain",
    "rgb_cmd_t": "rgb_command_topic",
    "rgb_cmd_tpl": "rgb_command_template",
    "rgb_stat_t": "rgb_state_topic",
    "rgb_val_tpl": "rgb_value_template",
    "set_pos_t": "set_position_topic",
    "set_pos_tpl": "set_position_template",
    "spd_rng_max": "speed_range_max",
    "spd_rng_min": "speed_range_min",
    "stat_cla": "state_class",
    "stat_closing": "state_closing",
    "stat_clsd": "state_closed",
    "stat_jam": "state_jammed",
    "stat_locked": "state_locked",
    "stat_locking": "state_locking",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_open": "state_open",
    "stat_opening": "state_opening",
    "stat_stopped": "state_stopped",
    "stat_t": "state_topic",
    "stat_tpl": "state_template",
    "stat_unlocked": "state_unlocked",
    "stat_unlocking": "state_unlocking",
    "stat_val_tpl": "state_value_template",
    "sug_dsp_prc": "suggested_display_precision",
    "sup_feat": "supported_features",
    "sup_clrm": "supported_color_modes",
    "t": "topic",
    "temp_cmd_t": "temperature_command_topic",
    "temp_cmd_tpl": "temperature_command_template",
    "temp_stat_t": "temperature_state_topic",
    "temp_stat_tpl": "temperature_state_template",
    "temp_unit": "temperature_unit",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
    "xy_cmd_t": "xy_command_topic",
    "xy_stat_t": "xy_state_topic",
}

DEVICE_ABBREVIATIONS: Mapping[str, str] = {
    "cns": "connections",
    "cu": "configuration_url",
    "hw": "hw_version",
    "ids": "identifiers",
    "mdl": "model",
    "mdl_id": "model_id",
    "mf": "manufacturer",
    "name": "name",
    "sa": "suggested_area",
    "sn": "serial_number",
    "sw": "sw_version",
}

TOPIC_BASE = "~"
_ID_PART = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_MAX_TOPIC_BYTES = 1024  # real topics are far shorter; the config is kept in memory
# A device id, discovered (`unique_id`) or declared (`id`): safe in an enum, a log line
# and a sentence, whatever the device announced.
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_TEXT_CHARS = 64  # a name, area, device class, unit, choice: what the model reads
MAX_STATE_CHARS = 255  # a reported text state (Home Assistant's own limit)
MAX_CHOICES = 32  # preset modes, climate modes, colour modes: more are left out
MAX_VALUE_CHARS = 4096  # any other config string (payloads, templates)
# MQTT says topics SHOULD NOT hold these; a command topic with one is refused.
_TOPIC_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _unprintable(ch: str) -> bool:
    """Control, format (bidi overrides, zero-width), surrogate, private or line/paragraph
    separators: anything that could hide text or start a new line in a description."""
    cat = unicodedata.category(ch)
    return cat[0] == "C" or cat in ("Zl", "Zp")


def clean_text(value: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Device text as one plain line: unprintables become spaces, runs of white space
    one space, and at most `limit` characters (an ellipsis marks a cut)."""
    head = value[: limit * 4 + 8]  # enough to fill `limit` after cleaning; never the rest
    if not head.isprintable():
        head = "".join(" " if _unprintable(ch) else ch for ch in head)
    text = " ".join(head.split())
    if len(text) > limit or len(value) > len(head):
        text = text[: limit - 1].rstrip() + "…"
    return text


def is_clean(value: str, limit: int = MAX_TEXT_CHARS) -> bool:
    """True when `clean_text` would leave the string as it is (a usable choice)."""
    return len(value) <= limit and value.isprintable() and " ".join(value.split()) == value


def shown(value: Any) -> str:
    """A config value quoted for an error message or a note: short and one line."""
    return repr(clean_text(value if isinstance(value, str) else str(value), MAX_TEXT_CHARS))


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class DiscoveryError:
    """Why a config was rejected; `where` is the discovery topic or config key."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class DiscoveryTopic:
    """The parts of `<prefix>/<component>/[<node_id>/]<object_id>/config`."""

    topic: str
    component: str
    node_id: str | None
    object_id: str


@dataclass(frozen=True)
class Removal:
    """An empty retained payload: the entity announced on `topic` is gone."""

    topic: DiscoveryTopic


_TPL_EXPR = re.compile(r"^\{\{-?\s*(.*?)\s*-?\}\}$", re.DOTALL)
_TPL_PATH = re.compile(
    r"^(value_json|value)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)$"
)
_TPL_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_TPL_FILTER = re.compile(r"^(float|int|lower|upper|string|trim|round(?:\(\s*(\d+)\s*\))?)$")


@dataclass(frozen=True)
class ValueTemplate:
    """A state value template we understand, or a marker that it is used raw.

    Only the common shapes are evaluated: `{{ value }}`, `{{ value_json.a.b }}`,
    `{{ value_json['a'][0] }}`, optionally piped through float/int/round/lower/
    upper/string/trim. Anything else (`raw=True`) passes the payload through as is,
    so a clever template never makes us guess.
    """

    source: str
    path: tuple[str | int, ...] = ()
    use_json: bool = False
    filters: tuple[str, ...] = ()
    raw: bool = False

    def render(self, payload: str) -> str | None:
        """The value as the template would print it; None when it has no value."""
        if self.raw:
            return payload
        value: Any = payload
        if self.use_json:
            try:
                value = json.loads(payload)
            except (ValueError, RecursionError):
                return None
            for step in self.path:
                if isinstance(step, int):
                    if isinstance(value, list) and -len(value) <= step < len(value):
                        value = value[step]
                    else:
                        return None
                elif isinstance(value, dict) and step in value:
                    value = value[step]
                else:
                    return None
        for flt in self.filters:
            value = _apply_filter(flt, value)
            if value is None:
                return None
        return _jinja_str(value)


def _apply_filter(flt: str, value: Any) -> Any:
    name, _, arg = flt.partition(":")
    if name in ("float", "int", "round"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        if name == "float":
            return number
        if name == "int":
            return int(number)
        return round(number, int(arg or 0))
    text = _jinja_str(value)
    if name == "lower":
        return text.lower()
    if name == "upper":
        return text.upper()
    if name == "trim":
        return text.strip()
    return text


def _jinja_str(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def parse_value_template(source: str) -> ValueTemplate:
    """Understand a simple value template; anything else is marked raw."""
    match = _TPL_EXPR.match(source.strip())
    if match is None:
        return ValueTemplate(source, raw=True)
    parts = [p.strip() for p in match.group(1).split("|")]
    head = _TPL_PATH.match(parts[0])
    if head is None:
        return ValueTemplate(source, raw=True)
    path: list[str | int] = []
    for step in _TPL_STEP.finditer(head.group(2)):
        attr, sq, dq, idx = step.groups()
        if idx is not None:
            path.append(int(idx))
        else:
            path.append(attr if attr is not None else (sq if sq is not None else dq))
    use_json = head.group(1) == "value_json"
    if not use_json and path:
        return ValueTemplate(source, raw=True)
    filters: list[str] = []
    for raw_filter in parts[1:]:
        flt = _TPL_FILTER.match(raw_filter)
        if flt is None:
            return ValueTemplate(source, raw=True)
        if raw_filter.startswith("round"):
            filters.append(f"round:{flt.group(2) or 0}")
        else:
            filters.append(raw_filter)
    return ValueTemplate(source, tuple(path), use_json, tuple(filters))


_CMD_EXPR = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")


@dataclass(frozen=True)
class CommandTemplate:
    """A command template that only substitutes one variable, e.g. `{"pos": {{ value }}}`.

    Anything with logic in it is refused at parse time (the capability is then not
    offered), so the payload we publish is always predictable from the config.
    """

    source: str
    variable: str

    def render(self, value: str) -> str:
        return _CMD_EXPR.sub(lambda _m: value, self.source)


def parse_command_template(
    source: str, variables: Sequence[str] = ("value",)
) -> CommandTemplate | None:
    """A substitution-only template, or None when it does more than substitute."""
    if "{%" in source or "{#" in source:
        return None
    names = set(_CMD_EXPR.findall(source))
    leftover = _CMD_EXPR.sub("", source)
    if "{{" in leftover or "}}" in leftover or len(names) != 1:
        return None
    (name,) = names
    if name not in variables:
        return None
    return CommandTemplate(source, name)


@dataclass(frozen=True)
class AvailabilityTopic:
    """One availability topic and the payloads that mean online / offline."""

    topic: str
    payload_available: str = "online"
    payload_not_available: str = "offline"
    template: ValueTemplate | None = None


@dataclass(frozen=True)
class Availability:
    """How to tell whether the device is reachable; no topics means always available."""

    topics: tuple[AvailabilityTopic, ...] = ()
    mode: Literal["latest", "any", "all"] = "latest"


@dataclass(frozen=True)
class DeviceInfo:
    """The physical device an entity belongs to (several entities may share one)."""

    identifiers: tuple[str, ...] = ()
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    suggested_area: str | None = None


# ------------------------------------------------------------------ component specs


@dataclass(frozen=True)
class LightSpec:
    """A light in the default or JSON schema; colour temperature is kept in kelvin."""

    schema: Literal["default", "json"]
    command_topic: str
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    brightness: bool = False
    brightness_scale: int = 255
    brightness_command_topic: str | None = None
    brightness_command_template: CommandTemplate | None = None
    brightness_state_topic: str | None = None
    brightness_template: ValueTemplate | None = None
    color_temp: bool = False
    color_temp_kelvin: bool = False  # payloads carry kelvin instead of mireds
    min_kelvin: int = 2000
    max_kelvin: int = 6535
    color_temp_command_topic: str | None = None
    color_temp_command_template: CommandTemplate | None = None
    color_temp_state_topic: str | None = None
    color_temp_template: ValueTemplate | None = None
    color: Literal["rgb", "hs", "xy", ""] = ""
    rgb_command_topic: str | None = None
    rgb_command_template: CommandTemplate | None = None
    rgb_state_topic: str | None = None
    rgb_template: ValueTemplate | None = None
    # Default schema without an RGB topic: colour as "hue,saturation" or "x,y" text.
    hs_command_topic: str | None = None
    xy_command_topic: str | None = None
    # Default schema: "brightness" lights are turned on by a brightness command, not ON.
    # ("first"/"last" order ON against attribute commands; one action is one publish.)
    on_command_type: Literal["last", "first", "brightness"] = "last"


@dataclass(frozen=True)
class SwitchSpec:
    command_topic: str
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    state_on: str = "ON"
    state_off: str = "OFF"


@dataclass(frozen=True)
class FanSpec:
    command_topic: str
    command_template: CommandTemplate | None = None
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    percentage_command_topic: str | None = None
    percentage_command_template: CommandTemplate | None = None
    percentage_state_topic: str | None = None
    percentage_template: ValueTemplate | None = None
    speed_range_min: int = 1
    speed_range_max: int = 100
    preset_mode_command_topic: str | None = None
    preset_mode_command_template: CommandTemplate | None = None
    preset_mode_state_topic: str | None = None
    preset_mode_template: ValueTemplate | None = None
    preset_modes: tuple[str, ...] = ()
    oscillation_command_topic: str | None = None
    oscillation_command_template: CommandTemplate | None = None
    oscillation_state_topic: str | None = None
    oscillation_template: ValueTemplate | None = None
    payload_oscillation_on: str = "oscillate_on"
    payload_oscillation_off: str = "oscillate_off"


@dataclass(frozen=True)
class CoverSpec:
    command_topic: str | None = None
    payload_open: str | None = "OPEN"
    payload_close: str | None = "CLOSE"
    payload_stop: str | None = "STOP"
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    state_open: str = "open"
    state_opening: str = "opening"
    state_closed: str = "closed"
    state_closing: str = "closing"
    state_stopped: str = "stopped"
    set_position_topic: str | None = None
    set_position_template: CommandTemplate | None = None
    position_topic: str | None = None
    position_template: ValueTemplate | None = None
    position_open: int = 100
    position_closed: int = 0


@dataclass(frozen=True)
class LockSpec:
    command_topic: str
    command_template: CommandTemplate | None = None
    state_topic: str | None = None
    state_template: ValueTemplate | None = None
    payload_lock: str = "LOCK"
    payload_unlock: str = "UNLOCK"
    payload_open: str | None = None
    state_locked: str = "LOCKED"
    state_unlocked: str = "UNLOCKED"
    state_locking: str = "LOCKING"
    state_unlocking: str = "UNLOCKING"
    state_jammed: str = "JAMMED"
    state_open: str = "OPEN"
    state_opening: str = "OPENING"


@dataclass(frozen=True)
class ClimateSpec:
    mode_command_topic: str | None = None
    mode_command_template: CommandTemplate | None = None
    mode_state_topic: str | None = None
    mode_template: ValueTemplate | None = None
    modes: tuple[str, ...] = ("auto", "off", "cool", "heat", "dry", "fan_only")
    temperature_command_topic: str | None = None
    temperature_command_template: CommandTemplate | None = None
    temperature_state_topic: str | None = None
    temperature_template: ValueTemplate | None = None
    current_temperature_topic: str | None = None
    current_temperature_template: ValueTemplate | None = None
    min_temp: float = 7.0
    max_temp: float = 35.0
    temp_step: float = 1.0
    temperature_unit: str = "C"
    power_command_topic: str | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"


@dataclass(frozen=True)
class SceneSpec:
    command_topic: str
    payload_on: str = "ON"


@dataclass(frozen=True)
class ButtonSpec:
    command_topic: str
    payload_press: str = "PRESS"


@dataclass(frozen=True)
class SensorSpec:
    state_topic: str
    state_template: ValueTemplate | None = None
    unit_of_measurement: str | None = None
    state_class: str | None = None


@dataclass(frozen=True)
class BinarySensorSpec:
    state_topic: str
    state_template: ValueTemplate | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"


ALARM_ARM_ACTIONS: tuple[str, ...] = ("arm_home", "arm_away", "arm_night", "arm_vacation")
ALARM_STATES: tuple[str, ...] = (
    "disarmed",
    "armed_home",
    "armed_away",
    "armed_night",
    "armed_vacation",
    "armed_custom_bypass",
    "pending",
    "arming",
    "disarming",
    "triggered",
)
# Home Assistant's special `code` values: the user's code is checked by the panel.
ALARM_REMOTE_CODES = frozenset({"REMOTE_CODE", "REMOTE_CODE_TEXT"})


@dataclass(frozen=True)
class AlarmPanelSpec:
    """An alarm panel; `actions` are those offered (supported, and needing no user code).

    Payloads are those of Home Assistant (`payload_arm_home` ...), through a
    substitution-only `command_template` whose one variable is `action`.
    """

    command_topic: str
    state_topic: str
    state_template: ValueTemplate | None = None
    command_template: CommandTemplate | None = None
    payloads: tuple[tuple[str, str], ...] = ()  # (action, payload) for each offered action

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(a for a, _p in self.payloads)

    def payload(self, action: str) -> str:
        return dict(self.payloads)[action]


ComponentSpec = (
    LightSpec
    | SwitchSpec
    | FanSpec
    | CoverSpec
    | LockSpec
    | ClimateSpec
    | SceneSpec
    | ButtonSpec
    | SensorSpec
    | BinarySensorSpec
    | AlarmPanelSpec
)


@dataclass(frozen=True)
class ArgSpec:
    """One argument of an action: its kind and the range or choices the device allows."""

    name: str
    kind: Literal["int", "number", "choice", "rgb"]
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    description: str = ""

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name}: one of {', '.join(self.choices)}"
        if self.kind == "rgb":
            return f"{self.name}: [red, green, blue], each 0..255"
        rng = f"{_num(self.minimum)}..{_num(self.maximum)}"
        step = f" in steps of {_num(self.step)}" if self.step else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name}: {rng}{unit}{step}"


@dataclass(frozen=True)
class ActionSpec:
    """An action the device supports; every argument listed is required."""

    name: str
    args: tuple[ArgSpec, ...] = ()
    description: str = ""


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class EntityConfig:
    """One parsed entity: identity, placement, availability and component spec.

    `unique_id` is None when the config had none or an invalid one (`bad_unique_id`);
    `qos` is the config's own (None: not given); `origin` the announcing software's
    name; `notes` are for the log; `caveat` tells the model what is not offered and why.
    """

    component: str
    name: str
    object_id: str
    spec: ComponentSpec
    unique_id: str | None = None
    node_id: str | None = None
    device: DeviceInfo | None = None
    area: str | None = None
    device_class: str | None = None
    availability: Availability = Availability()
    notes: tuple[str, ...] = ()
    qos: int | None = None
    origin: str | None = None
    bad_unique_id: bool = False
    caveat: str = ""

    @property
    def actions(self) -> tuple[ActionSpec, ...]:
        return capabilities(self.spec)

    @property
    def command_topics(self) -> frozenset[str]:
        return command_topics(self.spec)

    @property
    def state_topics(self) -> frozenset[str]:
        return state_topics(self.spec)


@dataclass(frozen=True)
class Discovered:
    """A successfully parsed discovery config."""

    topic: DiscoveryTopic
    entity: EntityConfig


DiscoveryResult = Discovered | Removal | DiscoveryError


# ------------------------------------------------------------------------ parsing


def parse_topic(topic: str, prefix: str = "homeassistant") -> DiscoveryTopic | None:
    """Split a discovery topic; None when the topic is not a discovery config topic."""
    parts = topic.split("/")
    pre = prefix.split("/")
    if parts[: len(pre)] != pre:
        return None
    rest = parts[len(pre) :]
    if len(rest) not in (3, 4) or rest[-1] != "config":
        return None
    if not all(_ID_PART.match(p) for p in rest[:-1]):
        return None
    if len(rest) == 3:
        return DiscoveryTopic(topic, rest[0], None, rest[1])
    return DiscoveryTopic(topic, rest[0], rest[1], rest[2])


def expand_abbreviations(config: Mapping[str, Any]) -> dict[str, Any]:
    """Full key names for abbreviated ones, in the entity, its device and availability."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        full = ABBREVIATIONS.get(key, key)
        if full == "device" and isinstance(value, Mapping):
            value = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in value.items()}
        elif full == "availability" and isinstance(value, list):
            value = [
                {ABBREVIATIONS.get(k, k): v for k, v in item.items()}
                if isinstance(item, Mapping)
                else item
                for item in value
            ]
        if full == key or full not in config:  # an explicit full key wins
            out[full] = value
    return out


def apply_base_topic(config: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a leading or trailing `~` in topic values with the `~` base topic."""
    out = dict(config)
    base = out.pop(TOPIC_BASE, None)
    if not isinstance(base, str):
        return out

    def sub(value: Any) -> Any:
        if isinstance(value, str) and value:
            if value.startswith(TOPIC_BASE):
                return base + value[1:]
            if value.endswith(TOPIC_BASE):
                return value[:-1] + base
        return value

    for key, value in list(out.items()):
        if key.endswith("_topic") or key == "topic":
            out[key] = sub(value)
        elif key == "availability" and isinstance(value, list):
            out[key] = [
                {**item, "topic": sub(item.get("topic"))} if isinstance(item, Mapping) else item
                for item in value
            ]
    return out


def parse_discovery(
    topic: str, payload: bytes | str, prefix: str = "homeassistant"
) -> DiscoveryResult | None:
    """One discovery message → config, removal or error; None if not a config topic."""
    where = parse_topic(topic, prefix)
    if where is None:
        return None
    if isinstance(payload, bytes):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return DiscoveryError(topic, "payload is not UTF-8")
    else:
        text = payload
    if not text.strip():
        return Removal(where)
    if where.component not in COMPONENTS:
        return DiscoveryError(topic, f"component {where.component!r} is not supported")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return DiscoveryError(topic, f"payload is not valid JSON ({exc.msg})")
    except (ValueError, RecursionError):  # huge numbers, absurd nesting
        return DiscoveryError(topic, "payload is not valid JSON")
    if not isinstance(data, dict):
        return DiscoveryError(topic, "payload must be a JSON object")
    entity = parse_entity(
        where.component, data, object_id=where.object_id, node_id=where.node_id, where=topic
    )
    if isinstance(entity, DiscoveryError):
        return entity
    return Discovered(where, entity)


class _Invalid(Exception):
    """Internal: a config value is wrong (turned into a DiscoveryError)."""


class _Reader:
    """Typed access to an expanded config with messages that name the key."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.notes: list[str] = []
        self.caveat = ""  # for the model: what is not offered and why

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def topic(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise _Invalid(f"{key} is required")
            return None
        return check_topic(value, key)

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Invalid(f"{key} must be a string")
        return str(value)

    def text(self, key: str, default: str | None = None) -> str | None:
        """A payload, template or id: used as it is, so refused when absurdly long."""
        text = self.string(key, default)
        if text is not None and len(text) > MAX_VALUE_CHARS:
            raise _Invalid(f"{key} is longer than {MAX_VALUE_CHARS} characters")
        return text

    def label(self, key: str) -> str | None:
        """Text the model reads (a name, a device class, a unit): cut to one clean line."""
        text = self.string(key)
        if text is None:
            return None
        return clean_text(text) or None

    def payload(self, key: str, default: str) -> str:
        value = self.text(key, default)
        return default if value is None else value

    def optional_payload(self, key: str, default: str | None) -> str | None:
        if key in self.data and self.data[key] is None:
            return None
        return self.text(key, default)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"{key} must be an integer")
        if isinstance(value, float) and not value.is_integer():
            raise _Invalid(f"{key} must be an integer")
        number = int(value)
        if not lo <= number <= hi:
            raise _Invalid(f"{key} must be in {lo}..{hi}, got {number}")
        return number

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"{key} must be a number")
        if not math.isfinite(value):
            raise _Invalid(f"{key} must be a finite number")
        return float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise _Invalid(f"{key} must be true or false")
        return value

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        """Choices the model names and the device receives as they are: an unclean or
        overlong one cannot be cleaned without changing the payload, so it is left out."""
        value = self.data.get(key)
        if value is None:
            return tuple(default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Invalid(f"{key} must be a list of strings")
        usable = [v for v in dict.fromkeys(value) if v and is_clean(v)]
        if len(usable) < len(set(value)):
            self.notes.append(f"{key}: entries with control characters, empty or longer "
                              f"than {MAX_TEXT_CHARS} characters are left out")
        if len(usable) > MAX_CHOICES:
            self.notes.append(f"{key}: only the first {MAX_CHOICES} are offered")
        return tuple(usable[:MAX_CHOICES])

    def value_template(self, key: str) -> ValueTemplate | None:
        src = self.text(key)
        if src is None:
            return None
        tpl = parse_value_template(src)
        if tpl.raw:
            self.notes.append(f"{key} {shown(src)} is not understood; the raw payload is used")
        return tpl

    def command_template(
        self, key: str, variables: Sequence[str] = ("value",)
    ) -> tuple[bool, CommandTemplate | None]:
        """(usable, template): unusable when a template exists that we cannot render."""
        src = self.text(key)
        if src is None:
            return True, None
        tpl = parse_command_template(src, variables)
        if tpl is None:
            self.notes.append(f"{key} {shown(src)} is not supported; that feature is not offered")
            return False, None
        return True, tpl


def check_topic(value: Any, key: str = "topic") -> str:
    """A topic we may publish to or subscribe to exactly: no wildcards, no control
    characters, at most 1024 bytes."""
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{key} must be a non-empty string")
    if "+" in value or "#" in value:
        raise _Invalid(f"{key} must not contain MQTT wildcards, got {shown(value)}")
    if _TOPIC_CONTROL.search(value) or len(value.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise _Invalid(f"{key} is not a valid MQTT topic (control characters or too long)")
    if value.startswith(TOPIC_BASE) or value.endswith(TOPIC_BASE):
        raise _Invalid(f"{key} uses '~' but the config has no '~' base topic")
    return value


def parse_entity(
    component: str,
    config: Mapping[str, Any],
    *,
    object_id: str,
    node_id: str | None = None,
    where: str | None = None,
) -> EntityConfig | DiscoveryError:
    """Parse one entity config (full or abbreviated keys) for `component`."""
    where = where or f"{component}.{object_id}"
    if component not in COMPONENTS:
        return DiscoveryError(where, f"component {shown(component)} is not supported")
    try:
        data = apply_base_topic(expand_abbreviations(config))
        return _parse(component, data, object_id, node_id)
    except _Invalid as exc:
        return DiscoveryError(where, f"{component}: {exc}")
    except (TypeError, ValueError, AttributeError) as exc:  # defensive: never escape
        return DiscoveryError(where, f"{component}: malformed config ({exc})")


def _parse(
    component: str, data: Mapping[str, Any], object_id: str, node_id: str | None
) -> EntityConfig:
    rd = _Reader(data)
    device = _parse_device(data.get("device"))
    unique_id = rd.string("unique_id")
    bad_uid = unique_id is not None and unique_id != "" and not ID_RE.match(unique_id)
    if bad_uid:
        assert unique_id is not None
        rd.notes.append(
            f"unique_id {shown(unique_id)} is not a valid id (1-128 of A-Z a-z 0-9 _ . : -); "
            "the id comes from the discovery topic"
        )
        unique_id = None
    entity_name = rd.label("name")
    name = _display_name(entity_name, device, component, object_id)
    device_class = rd.label("device_class")
    area = rd.label("suggested_area") or (device.suggested_area if device else None)
    availability = _parse_availability(rd)
    qos = _parse_qos(data.get("qos"))
    origin = data.get("origin")
    origin_name = origin.get("name") if isinstance(origin, Mapping) else None
    spec = _SPEC_PARSERS[component](rd)
    return EntityConfig(
        component=component,
        name=name,
        object_id=object_id,
        spec=spec,
        unique_id=unique_id or None,
        node_id=node_id,
        device=device,
        area=area or None,
        device_class=device_class,
        availability=availability,
        notes=tuple(rd.notes),
        qos=qos,
        origin=clean_text(origin_name) if isinstance(origin_name, str) else None,
        bad_unique_id=bad_uid,
        caveat=rd.caveat,
    )


def _display_name(
    entity_name: str | None,
    device: DeviceInfo | None,
    component: str,
    object_id: str,
) -> str:
    """Home Assistant's naming: the entity name, prefixed by the device name (one line,
    at most MAX_TEXT_CHARS)."""
    dev_name = device.name if device else None
    if entity_name:
        if dev_name and not entity_name.casefold().startswith(dev_name.casefold()):
            return clean_text(f"{dev_name} {entity_name}")
        return entity_name
    if dev_name:
        return dev_name
    # No name (or an explicit null) and no device name: the object id names it.
    return clean_text(object_id.replace("_", " ")) or f"MQTT {component}"


def _parse_qos(value: Any) -> int | None:
    """0, 1 or 2 (Home Assistant also takes "1"); None when the config does not say."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    raise _Invalid("qos must be 0, 1 or 2")


_MAX_IDENTIFIERS = 8


def _parse_device(value: Any) -> DeviceInfo | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Invalid("device must be an object")
    dev = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in value.items()}
    ids = dev.get("identifiers")
    if isinstance(ids, str):
        raw_ids: list[Any] = [ids]
    elif isinstance(ids, list):
        raw_ids = ids[:_MAX_IDENTIFIERS]
    elif ids is None:
        raw_ids = []
    else:
        raise _Invalid("device.identifiers must be a string or a list")
    identifiers = tuple(clean_text(str(i)) for i in raw_ids)

    def opt(key: str) -> str | None:
        v = dev.get(key)
        if v is None:
            return None
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise _Invalid(f"device.{key} must be a string")
        return clean_text(str(v)) or None

    return DeviceInfo(
        identifiers=identifiers,
        name=opt("name"),
        manufacturer=opt("manufacturer"),
        model=opt("model"),
        suggested_area=opt("suggested_area"),
    )


def _parse_availability(rd: _Reader) -> Availability:
    data = rd.data
    single = data.get("availability_topic")
    many = data.get("availability")
    if single is not None and many is not None:
        raise _Invalid("availability and availability_topic must not be used together")
    pl_on = rd.payload("payload_available", "online")
    pl_off = rd.payload("payload_not_available", "offline")
    topics: list[AvailabilityTopic] = []
    if single is not None:
        topics.append(
            AvailabilityTopic(
                check_topic(single, "availability_topic"),
                pl_on,
                pl_off,
                rd.value_template("availability_template"),
            )
        )
    elif many is not None:
        if not isinstance(many, list):
            raise _Invalid("availability must be a list")
        for i, item in enumerate(many):
            if not isinstance(item, Mapping):
                raise _Invalid(f"availability[{i}] must be an object")
            sub = _Reader({ABBREVIATIONS.get(k, k): v for k, v in item.items()})
            tpl = sub.value_template("value_template")
            rd.notes.extend(f"availability[{i}].{n}" for n in sub.notes)
            topics.append(
                AvailabilityTopic(
                    check_topic(sub.data.get("topic"), f"availability[{i}].topic"),
                    sub.payload("payload_available", "online"),
                    sub.payload("payload_not_available", "offline"),
                    tpl,
                )
            )
    mode = data.get("availability_mode", "latest")
    if mode not in ("latest", "any", "all"):
        raise _Invalid("availability_mode must be one of latest, any, all")
    return Availability(tuple(topics), mode)


_ON_COMMAND_TYPES: dict[str, Literal["last", "first", "brightness"]] = {
    "last": "last",
    "first": "first",
    "brightness": "brightness",
}


def _parse_light(rd: _Reader) -> LightSpec:
    schema = rd.data.get("schema", "default")
    if schema == "basic":
        schema = "default"
    if schema not in ("default", "json"):
        raise _Invalid(f"light schema {shown(schema)} is not supported (default or json)")
    command_topic = rd.topic("command_topic", required=True)
    assert command_topic is not None
    scale = rd.integer("brightness_scale", 255, 1, 1_000_000)
    kelvin = rd.flag("color_temp_kelvin")
    if kelvin:
        lo_k = rd.integer("min_kelvin", 2000, 500, 100_000)
        hi_k = rd.integer("max_kelvin", 6535, 500, 100_000)
    else:
        lo_m = rd.integer("min_mireds", 153, 1, 100_000)
        hi_m = rd.integer("max_mireds", 500, 1, 100_000)
        if lo_m > hi_m:
            raise _Invalid("min_mireds must not exceed max_mireds")
        lo_k, hi_k = math.ceil(1e6 / hi_m), math.floor(1e6 / lo_m)
    if lo_k > hi_k:
        raise _Invalid("the colour temperature range is empty")
    if schema == "json":
        return _parse_json_light(rd, command_topic, scale, kelvin, lo_k, hi_k)
    ok_bri, bri_tpl = rd.command_template("brightness_command_template")
    ok_ct, ct_tpl = rd.command_template("color_temp_command_template")
    ok_rgb, rgb_tpl = rd.command_template("rgb_command_template", ("value", "red", "rgb"))
    if rgb_tpl is not None and rgb_tpl.variable != "value":
        rd.notes.append("rgb_command_template uses per-channel variables; colour is not offered")
        ok_rgb, rgb_tpl = False, None
    if rd.has("command_template"):
        rd.notes.append("command_template is ignored by the default light schema")
    bri_topic = rd.topic("brightness_command_topic")
    ct_topic = rd.topic("color_temp_command_topic")
    rgb_topic = rd.topic("rgb_command_topic")
    color: Literal["rgb", "hs", "xy", ""] = "rgb" if rgb_topic is not None and ok_rgb else ""
    hs_topic = xy_topic = None
    if not color:  # HA's hue/sat and x/y templates take two variables: not offered
        for mode in ("hs", "xy"):
            topic = rd.topic(f"{mode}_command_topic")
            if topic is None:
                continue
            if rd.has(f"{mode}_command_template"):
                rd.notes.append(f"{mode}_command_template is not supported; {mode} not offered")
                continue
            if mode == "hs":
                color, hs_topic = "hs", topic
            else:
                color, xy_topic = "xy", topic
            break
    on_type = _ON_COMMAND_TYPES.get(str(rd.text("on_command_type", "last")))
    if on_type is None:
        raise _Invalid("on_command_type must be one of last, first, brightness")
    if on_type == "brightness" and not (bri_topic is not None and ok_bri):
        rd.notes.append("on_command_type brightness without a brightness command: ON is sent")
        on_type = "last"
    return LightSpec(
        schema="default",
        command_topic=command_topic,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("state_value_template"),
        payload_on=rd.payload("payload_on", "ON"),
        payload_off=rd.payload("payload_off", "OFF"),
        brightness=bri_topic is not None and ok_bri,
        brightness_scale=scale,
        brightness_command_topic=bri_topic if ok_bri else None,
        brightness_command_template=bri_tpl,
        brightness_state_topic=rd.topic("brightness_state_topic"),
        brightness_template=rd.value_template("brightness_value_template"),
        color_temp=ct_topic is not None and ok_ct,
        color_temp_kelvin=kelvin,
        min_kelvin=lo_k,
        max_kelvin=hi_k,
        color_temp_command_topic=ct_topic if ok_ct else None,
        color_temp_command_template=ct_tpl,
        color_temp_state_topic=rd.topic("color_temp_state_topic"),
        color_temp_template=rd.value_template("color_temp_value_template"),
        color=color,
        rgb_command_topic=rgb_topic if ok_rgb else None,
        rgb_command_template=rgb_tpl,
        rgb_state_topic=rd.topic("rgb_state_topic"),
        rgb_template=rd.value_template("rgb_value_template"),
        hs_command_topic=hs_topic,
        xy_command_topic=xy_topic,
        on_command_type=on_type,
    )


_COLOR_MODES = ("onoff", "brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww", "white")


def _parse_json_light(
    rd: _Reader, command_topic: str, scale: int, kelvin: bool, lo_k: int, hi_k: int
) -> LightSpec:
    modes = rd.strings("supported_color_modes")
    unknown = [m for m in modes if m not in _COLOR_MODES]
    if unknown:
        raise _Invalid(f"supported_color_modes has unknown mode(s) {', '.join(unknown)}")
    brightness = rd.flag("brightness") or any(m not in ("onoff",) for m in modes)
    color_temp = "color_temp" in modes or (not modes and rd.flag("color_temp"))
    color: Literal["rgb", "hs", "xy", ""] = ""
    candidates: tuple[Literal["rgb", "hs", "xy"], ...] = ("rgb", "hs", "xy")
    for mode in candidates:
        if mode in modes or (not modes and rd.data.get(mode) is True):
            color = mode
            break
    if not color and any(m in modes for m in ("rgbw", "rgbww")):
        rd.notes.append("rgbw/rgbww colour modes are not offered")
    return LightSpec(
        schema="json",
        command_topic=command_topic,
        state_topic=rd.topic("state_topic"),
        brightness=brightness,
        brightness_scale=scale,
        color_temp=color_temp,
        color_temp_kelvin=kelvin,
        min_kelvin=lo_k,
        max_kelvin=hi_k,
        color=color,
    )


def _parse_switch(rd: _Reader) -> SwitchSpec:
    command_topic = rd.topic("command_topic", required=True)
    assert command_topic is not None
    pl_on = rd.payload("payload_on", "ON")
    pl_off = rd.payload("payload_off", "OFF")
    if rd.has("command_template"):
        raise _Invalid("command_template is not supported for switches")
    return SwitchSpec(
        command_topic=command_topic,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        payload_on=pl_on,
        payload_off=pl_off,
        state_on=rd.payload("state_on", pl_on),
        state_off=rd.payload("state_off", pl_off),
    )


def _parse_fan(rd: _Reader) -> FanSpec:
    command_topic = rd.topic("command_topic", required=True)
    assert command_topic is not None
    ok_cmd, cmd_tpl = rd.command_template("command_template")
    if not ok_cmd:
        raise _Invalid("command_template is not supported")
    lo = rd.integer("speed_range_min", 1, 1, 1_000_000)
    hi = rd.integer("speed_range_max", 100, 1, 1_000_000)
    if lo > hi:
        raise _Invalid("speed_range_min must not exceed speed_range_max")
    ok_pct, pct_tpl = rd.command_template("percentage_command_template")
    ok_pr, pr_tpl = rd.command_template("preset_mode_command_template")
    ok_osc, osc_tpl = rd.command_template("oscillation_command_template")
    presets = rd.strings("preset_modes")
    pr_topic = rd.topic("preset_mode_command_topic")
    return FanSpec(
        command_topic=command_topic,
        command_template=cmd_tpl,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("state_value_template"),
        payload_on=rd.payload("payload_on", "ON"),
        payload_off=rd.payload("payload_off", "OFF"),
        percentage_command_topic=rd.topic("percentage_command_topic") if ok_pct else None,
        percentage_command_template=pct_tpl,
        percentage_state_topic=rd.topic("percentage_state_topic"),
        percentage_template=rd.value_template("percentage_value_template"),
        speed_range_min=lo,
        speed_range_max=hi,
        preset_mode_command_topic=pr_topic if ok_pr and presets else None,
        preset_mode_command_template=pr_tpl,
        preset_mode_state_topic=rd.topic("preset_mode_state_topic"),
        preset_mode_template=rd.value_template("preset_mode_value_template"),
        preset_modes=presets,
        oscillation_command_topic=rd.topic("oscillation_command_topic") if ok_osc else None,
        oscillation_command_template=osc_tpl,
        oscillation_state_topic=rd.topic("oscillation_state_topic"),
        oscillation_template=rd.value_template("oscillation_value_template"),
        payload_oscillation_on=rd.payload("payload_oscillation_on", "oscillate_on"),
        payload_oscillation_off=rd.payload("payload_oscillation_off", "oscillate_off"),
    )


def _parse_cover(rd: _Reader) -> CoverSpec:
    ok_pos, pos_tpl = rd.command_template("set_position_template", ("position", "value"))
    pos_open = rd.integer("position_open", 100, -1_000_000, 1_000_000)
    pos_closed = rd.integer("position_closed", 0, -1_000_000, 1_000_000)
    if pos_open == pos_closed:
        raise _Invalid("position_open and position_closed must differ")
    return CoverSpec(
        command_topic=rd.topic("command_topic"),
        payload_open=rd.optional_payload("payload_open", "OPEN"),
        payload_close=rd.optional_payload("payload_close", "CLOSE"),
        payload_stop=rd.optional_payload("payload_stop", "STOP"),
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        state_open=rd.payload("state_open", "open"),
        state_opening=rd.payload("state_opening", "opening"),
        state_closed=rd.payload("state_closed", "closed"),
        state_closing=rd.payload("state_closing", "closing"),
        state_stopped=rd.payload("state_stopped", "stopped"),
        set_position_topic=rd.topic("set_position_topic") if ok_pos else None,
        set_position_template=pos_tpl,
        position_topic=rd.topic("position_topic"),
        position_template=rd.value_template("position_template"),
        position_open=pos_open,
        position_closed=pos_closed,
    )


def _parse_lock(rd: _Reader) -> LockSpec:
    command_topic = rd.topic("command_topic", required=True)
    assert command_topic is not None
    if rd.has("code_format"):
        raise _Invalid("locks that need a code (code_format) are not supported")
    ok_cmd, cmd_tpl = rd.command_template("command_template")
    if not ok_cmd:
        raise _Invalid("command_template is not supported")
    return LockSpec(
        command_topic=command_topic,
        command_template=cmd_tpl,
        state_topic=rd.topic("state_topic"),
        state_template=rd.value_template("value_template"),
        payload_lock=rd.payload("payload_lock", "LOCK"),
        payload_unlock=rd.payload("payload_unlock", "UNLOCK"),
        payload_open=rd.optional_payload("payload_open", None),
        state_locked=rd.payload("state_locked", "LOCKED"),
        state_unlocked=rd.payload("state_unlocked", "UNLOCKED"),
        state_locking=rd.payload("state_locking", "LOCKING"),
        state_unlocking=rd.payload("state_unlocking", "UNLOCKING"),
        state_jammed=rd.payload("state_jammed", "JAMMED"),
        state_open=rd.payload("state_open", "OPEN"),
        state_opening=rd.payload("state_opening", "OPENING"),
    )


def _parse_climate(rd: _Reader) -> ClimateSpec:
    unit = rd.text("temperature_unit") or "C"
    if unit not in ("C", "F"):
        raise _Invalid("temperature_unit must be C or F")
    default_lo, default_hi = (7.0, 35.0) if unit == "C" else (45.0, 95.0)
    lo = rd.number("min_temp", default_lo)
    hi = rd.number("max_temp", default_hi)
    step = rd.number("temp_step", 1.0)
    if lo > hi:
        raise _Invalid("min_temp must not exceed max_temp")
    if step <= 0:
        raise _Invalid("temp_step must be positive")
    modes = rd.strings("modes", ("auto", "off", "cool", "heat", "dry", "fan_only"))
    ok_mode, mode_tpl = rd.command_template("mode_command_template")
    ok_temp, temp_tpl = rd.command_template("temperature_command_template")
    return ClimateSpec(
        mode_command_topic=rd.topic("mode_command_topic") if ok_mode and modes else None,
        mode_command_template=mode_tpl,
        mode_state_topic=rd.topic("mode_state_topic"),
        mode_template=rd.value_template("mode_state_template"),
        modes=modes,
        temperature_command_topic=rd.topic("temperature_command_topic") if ok_temp else None,
        temperature_command_template=temp_tpl,
        temperature_state_topic=rd.topic("temperature_state_topic"),
        temperature_template=rd.value_template("temperature_state_template"),
        current_temperature_topic=rd.topic("current_temperature_topic"),
        current_temperature_template=rd.value_template("current_temperature_template"),
        min_temp=lo,
        max_temp=hi,
        temp_step=step,
        temperature_unit=unit,
        power_command_topic=rd.topic("power_command_topic"),
        payload_on=rd.payload("payload_on", "ON"),
        payload_off=rd.payload("payload_off", "OFF"),
    )


def _parse_scene(rd: _Reader) -> SceneSpec:
    command_topic = rd.topic("command_topic", required=True)
    assert command_topic is not None
    return SceneSpec(command_topic, rd.payload("payload_on", "ON"))


def _parse_button(rd: _Reader) -> ButtonSpec:
    command_topic = rd.topic("command_topic", required=True)
    assert command_topic is not None
    if rd.has("command_template"):
        raise _Invalid("command_template is not supported for buttons")
    return ButtonSpec(command_topic, rd.payload("payload_press", "PRESS"))


def _parse_sensor(rd: _Reader) -> SensorSpec:
    state_topic = rd.topic("state_topic", required=True)
    assert state_topic is not None
    return SensorSpec(
        state_topic,
        rd.value_template("value_template"),
        rd.label("unit_of_measurement"),
        rd.label("state_class"),
    )


def _parse_binary_sensor(rd: _Reader) -> BinarySensorSpec:
    state_topic = rd.topic("state_topic", required=True)
    assert state_topic is not None
    return BinarySensorSpec(
        state_topic,
        rd.value_template("value_template"),
        rd.payload("payload_on", "ON"),
        rd.payload("payload_off", "OFF"),
    )


_ALARM_PAYLOADS: Mapping[str, str] = {
    "arm_home": "ARM_HOME",
    "arm_away": "ARM_AWAY",
    "arm_night": "ARM_NIGHT",
    "arm_vacation": "ARM_VACATION",
    "disarm": "DISARM",
}
_ALARM_FEATURES = (*ALARM_ARM_ACTIONS, "arm_custom_bypass", "trigger")


def _parse_alarm_control_panel(rd: _Reader) -> AlarmPanelSpec:
    """Arm and disarm as Home Assistant offers them, minus what needs the user's code.

    A `code` (a fixed one Home Assistant checks itself, or REMOTE_CODE/REMOTE_CODE_TEXT
    for one the panel checks) means a person must enter it. We never have it and never
    make one up, so the actions that require it (`code_arm_required`,
    `code_disarm_required`, both true by default) are not offered; the caveat says so.
    Custom bypass and trigger are never offered.
    """
    command_topic = rd.topic("command_topic", required=True)
    state_topic = rd.topic("state_topic", required=True)
    assert command_topic is not None
    assert state_topic is not None
    features = rd.strings("supported_features", _ALARM_FEATURES)
    unknown = [f for f in features if f not in _ALARM_FEATURES]
    if unknown:
        raise _Invalid(f"supported_features has unknown feature(s) {', '.join(unknown)}")
    ok_tpl, cmd_tpl = rd.command_template("command_template", ("action",))
    if not ok_tpl:
        rd.caveat = "its command template is not supported here: it can only be read"
        return AlarmPanelSpec(command_topic, state_topic, rd.value_template("value_template"))
    code = rd.text("code")
    needs_code = code is not None and code != ""
    arm_blocked = needs_code and rd.flag("code_arm_required", True)
    disarm_blocked = needs_code and rd.flag("code_disarm_required", True)
    payloads: list[tuple[str, str]] = []
    for action in ALARM_ARM_ACTIONS:
        if action in features and not arm_blocked:
            payloads.append((action, rd.payload(f"payload_{action}", _ALARM_PAYLOADS[action])))
    if not disarm_blocked:
        payloads.append(("disarm", rd.payload("payload_disarm", "DISARM")))
    blocked = [w for w, b in (("arming", arm_blocked), ("disarming", disarm_blocked)) if b]
    if blocked:
        kind = "the panel checks" if code in ALARM_REMOTE_CODES else "Home Assistant checks"
        what = " and ".join(blocked)
        need = "need" if len(blocked) > 1 else "needs"
        rd.caveat = (
            f"{what} {need} the user's code ({kind} it), which this assistant does not "
            "have: use the panel or Home Assistant for that"
        )
        rd.notes.append(f"{what} {need} a user code: not offered")
    return AlarmPanelSpec(
        command_topic=command_topic,
        state_topic=state_topic,
        state_template=rd.value_template("value_template"),
        command_template=cmd_tpl,
        payloads=tuple(payloads),
    )


_SPEC_PARSERS: dict[str, Any] = {
    "alarm_control_panel": _parse_alarm_control_panel,
    "light": _parse_light,
    "switch": _parse_switch,
    "fan": _parse_fan,
    "cover": _parse_cover,
    "lock": _parse_lock,
    "climate": _parse_climate,
    "scene": _parse_scene,
    "button": _parse_button,
    "sensor": _parse_sensor,
    "binary_sensor": _parse_binary_sensor,
}


# ------------------------------------------------------------------- capabilities


def capabilities(spec: ComponentSpec) -> tuple[ActionSpec, ...]:
    """What the device can be told to do, with ranges from its own config."""
    if isinstance(spec, LightSpec):
        acts = [ActionSpec("turn_on"), ActionSpec("turn_off")]
        if spec.brightness:
            acts.append(
                ActionSpec(
                    "set_brightness",
                    (ArgSpec("brightness", "int", 1, 100, 1, unit="%"),),
                    "brightness in percent; turns the light on",
                )
            )
        if spec.color_temp:
            acts.append(
                ActionSpec(
                    "set_color_temp",
                    (ArgSpec("kelvin", "int", spec.min_kelvin, spec.max_kelvin, 1, unit="K"),),
                    "white colour temperature in kelvin (low is warm); turns the light on",
                )
            )
        if spec.color:
            acts.append(
                ActionSpec("set_color", (ArgSpec("rgb", "rgb"),), "colour; turns the light on")
            )
        return tuple(acts)
    if isinstance(spec, SwitchSpec):
        return (ActionSpec("turn_on"), ActionSpec("turn_off"))
    if isinstance(spec, FanSpec):
        acts = [ActionSpec("turn_on"), ActionSpec("turn_off")]
        if spec.percentage_command_topic:
            acts.append(
                ActionSpec(
                    "set_percentage",
                    (ArgSpec("percentage", "int", 1, 100, 1, unit="%"),),
                    "fan speed in percent",
                )
            )
        if spec.preset_mode_command_topic:
            acts.append(
                ActionSpec(
                    "set_preset_mode",
                    (ArgSpec("preset_mode", "choice", choices=spec.preset_modes),),
                )
            )
        if spec.oscillation_command_topic:
            acts.append(
                ActionSpec(
                    "set_oscillation", (ArgSpec("oscillating", "choice", choices=("on", "off")),)
                )
            )
        return tuple(acts)
    if isinstance(spec, CoverSpec):
        acts = []
        if spec.command_topic:
            if spec.payload_open is not None:
                acts.append(ActionSpec("open"))
            if spec.payload_close is not None:
                acts.append(ActionSpec("close"))
            if spec.payload_stop is not None:
                acts.append(ActionSpec("stop"))
        if spec.set_position_topic:
            acts.append(
                ActionSpec(
                    "set_position",
                    (ArgSpec("position", "int", 0, 100, 1, unit="%"),),
                    "0 is closed, 100 is fully open",
                )
            )
        return tuple(acts)
    if isinstance(spec, LockSpec):
        acts = [ActionSpec("lock"), ActionSpec("unlock")]
        if spec.payload_open is not None:
            acts.append(ActionSpec("open", description="unlatch and open the door"))
        return tuple(acts)
    if isinstance(spec, ClimateSpec):
        acts = []
        if spec.mode_command_topic:
            acts.append(ActionSpec("set_mode", (ArgSpec("mode", "choice", choices=spec.modes),)))
        if spec.temperature_command_topic:
            acts.append(
                ActionSpec(
                    "set_temperature",
                    (
                        ArgSpec(
                            "temperature",
                            "number",
                            spec.min_temp,
                            spec.max_temp,
                            spec.temp_step,
                            unit=f"°{spec.temperature_unit}",
                        ),
                    ),
                    "target temperature",
                )
            )
        if spec.power_command_topic:
            acts += [ActionSpec("turn_on"), ActionSpec("turn_off")]
        return tuple(acts)
    if isinstance(spec, SceneSpec):
        return (ActionSpec("activate"),)
    if isinstance(spec, ButtonSpec):
        return (ActionSpec("press"),)
    if isinstance(spec, AlarmPanelSpec):
        return tuple(ActionSpec(a) for a in spec.actions)
    return ()


def command_topics(spec: ComponentSpec) -> frozenset[str]:
    """Every topic an action of this spec may publish to."""
    names = (
        "command_topic",
        "brightness_command_topic",
        "color_temp_command_topic",
        "rgb_command_topic",
        "hs_command_topic",
        "xy_command_topic",
        "percentage_command_topic",
        "preset_mode_command_topic",
        "oscillation_command_topic",
        "set_position_topic",
        "mode_command_topic",
        "temperature_command_topic",
        "power_command_topic",
    )
    found = {getattr(spec, n, None) for n in names}
    return frozenset(t for t in found if isinstance(t, str))


def state_topics(spec: ComponentSpec) -> frozenset[str]:
    """Every topic on which this spec reports state."""
    names = (
        "state_topic",
        "brightness_state_topic",
        "color_temp_state_topic",
        "rgb_state_topic",
        "percentage_state_topic",
        "preset_mode_state_topic",
        "oscillation_state_topic",
        "position_topic",
        "mode_state_topic",
        "temperature_state_topic",
        "current_temperature_topic",
    )
    found = {getattr(spec, n, None) for n in names}
    return frozenset(t for t in found if isinstance(t, str))

"""Home Assistant MQTT discovery, parsed into plain values (no I/O).

Devices announce themselves with retained JSON configs at
`<prefix>/<component>/[<node_id>/]<object_id>/config`. This module turns one such
message (or one `[[mqtt.devices]]` table from the config file, which uses the same
keys) into an `EntityConfig`: who the device is, where it lives, how to tell it is
reachable, and its component spec, which the component's own module parses
(daemon.home.components). Bad input becomes a `DiscoveryError` value; no exception
escapes `parse_discovery` or `parse_entity`, because a single broken device must
never stop the others.

Every string a device announces is data, never text for the model to obey: names,
areas, device classes, units and the device block are made one clean line
(daemon.home.text); a `unique_id` that is not a valid device id (`ID_RE`, the rule
for declared ids too) is not used: the id then comes from the discovery topic.
Nothing of the raw config is kept once it is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.home.actions import ActionSpec
from daemon.home.components import REGISTRY, ComponentSpec
from daemon.home.reader import TOPIC_BASE, ConfigReader, Invalid, check_topic
from daemon.home.templates import ValueTemplate
from daemon.home.text import ID_RE, clean_text, shown

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

_ID_PART = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


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
        """What the device can be told to do (the spec's actions)."""
        return self.spec.actions()

    @property
    def command_topics(self) -> frozenset[str]:
        """Every topic a command for it may be published to (the spec's)."""
        return self.spec.command_topics()

    @property
    def state_topics(self) -> frozenset[str]:
        """The topics on which it reports state (the spec's)."""
        return self.spec.state_topics()


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
    if where.component not in REGISTRY:
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
    if component not in REGISTRY:
        return DiscoveryError(where, f"component {shown(component)} is not supported")
    try:
        data = apply_base_topic(expand_abbreviations(config))
        return _parse(component, data, object_id, node_id)
    except Invalid as exc:
        return DiscoveryError(where, f"{component}: {exc}")
    except (TypeError, ValueError, AttributeError) as exc:  # defensive: never escape
        return DiscoveryError(where, f"{component}: malformed config ({exc})")


def _parse(
    component: str, data: Mapping[str, Any], object_id: str, node_id: str | None
) -> EntityConfig:
    rd = ConfigReader(data)
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
    spec = REGISTRY[component].parse(rd)
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
    raise Invalid("qos must be 0, 1 or 2")


_MAX_IDENTIFIERS = 8


def _parse_device(value: Any) -> DeviceInfo | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise Invalid("device must be an object")
    dev = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in value.items()}
    ids = dev.get("identifiers")
    if isinstance(ids, str):
        raw_ids: list[Any] = [ids]
    elif isinstance(ids, list):
        raw_ids = ids[:_MAX_IDENTIFIERS]
    elif ids is None:
        raw_ids = []
    else:
        raise Invalid("device.identifiers must be a string or a list")
    identifiers = tuple(clean_text(str(i)) for i in raw_ids)

    def opt(key: str) -> str | None:
        v = dev.get(key)
        if v is None:
            return None
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise Invalid(f"device.{key} must be a string")
        return clean_text(str(v)) or None

    return DeviceInfo(
        identifiers=identifiers,
        name=opt("name"),
        manufacturer=opt("manufacturer"),
        model=opt("model"),
        suggested_area=opt("suggested_area"),
    )


def _parse_availability(rd: ConfigReader) -> Availability:
    data = rd.data
    single = data.get("availability_topic")
    many = data.get("availability")
    if single is not None and many is not None:
        raise Invalid("availability and availability_topic must not be used together")
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
            raise Invalid("availability must be a list")
        for i, item in enumerate(many):
            if not isinstance(item, Mapping):
                raise Invalid(f"availability[{i}] must be an object")
            sub = ConfigReader({ABBREVIATIONS.get(k, k): v for k, v in item.items()})
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
        raise Invalid("availability_mode must be one of latest, any, all")
    return Availability(tuple(topics), mode)



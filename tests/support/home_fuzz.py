"""The allow-list oracle for the home property tests, built independently of daemon.home.

Straight from raw discovery configs: the command topics they name and the payloads
those topics may carry (literal payloads, numbers within the configured ranges, the
JSON shapes of a JSON-schema light), the QoS a command goes at, and the hypothesis
strategy for arbitrary JSON values the model might send.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

Check = Callable[[str], bool]

# The extra shapes the simulator does not cover: templates, kelvin, hs/xy, odd ranges.
EXTRA_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    (
        "light",
        {
            "uniq_id": "x-rgb",
            "~": "x/rgb",
            "cmd_t": "~/power",
            "pl_on": "1",
            "pl_off": "0",
            "bri_cmd_t": "~/dim",
            "bri_scl": 10,
            "bri_cmd_tpl": '{"dim": {{ value }}}',
            "clr_temp_cmd_t": "~/ct",
            "clr_temp_k": True,
            "min_k": 2700,
            "max_k": 6500,
            "rgb_cmd_t": "~/rgb",
        },
    ),
    (
        "light",
        {
            "uniq_id": "x-hs",
            "schema": "json",
            "cmd_t": "x/hs/set",
            "sup_clrm": ["hs", "color_temp"],
            "bri_scl": 100,
            "clr_temp_k": True,
        },
    ),
    ("light", {"uniq_id": "x-xy", "schema": "json", "cmd_t": "x/xy/set", "sup_clrm": ["xy"]}),
    (
        "light",
        {
            "uniq_id": "x-dim-hs",
            "cmd_t": "x/dimhs/set",
            "bri_cmd_t": "x/dimhs/bri",
            "bri_scl": 1000,
            "on_cmd_type": "brightness",
            "hs_cmd_t": "x/dimhs/hs",
            "xy_cmd_t": "x/dimhs/xy",
        },
    ),
    ("light", {"uniq_id": "x-def-xy", "cmd_t": "x/defxy/set", "xy_cmd_t": "x/defxy/xy"}),
    (
        "fan",
        {
            "uniq_id": "x-fan",
            "cmd_t": "x/fan/set",
            "cmd_tpl": '{"power": "{{ value }}"}',
            "pct_cmd_t": "x/fan/speed",
            "pct_cmd_tpl": "speed={{ value }}",
            "spd_rng_min": 3,
            "spd_rng_max": 7,
            "pr_mode_cmd_t": "x/fan/mode",
            "pr_modes": ["Eco", "Turbo"],
        },
    ),
    (
        "cover",
        {
            "uniq_id": "x-gate",
            "dev_cla": "gate",
            "cmd_t": "x/gate/set",
            "pl_open": "go",
            "pl_cls": "shut",
            "pl_stop": None,
            "set_pos_t": "x/gate/pos",
            "set_pos_tpl": '{"pos": {{ position }}}',
            "pos_open": 255,
            "pos_clsd": 10,
        },
    ),
    (
        "lock",
        {
            "uniq_id": "x-lock",
            "cmd_t": "x/lock/set",
            "cmd_tpl": '{"lock": "{{ value }}"}',
            "pl_open": "UNLATCH",
        },
    ),
    (
        "climate",
        {
            "uniq_id": "x-ac",
            "mode_cmd_t": "x/ac/mode",
            "mode_cmd_tpl": "mode:{{ value }}",
            "modes": ["off", "cool"],
            "temp_cmd_t": "x/ac/temp",
            "temperature_unit": "F",
            "min_temp": 60,
            "max_temp": 86,
            "temp_step": 0.1,
            "pow_cmd_t": "x/ac/power",
        },
    ),
    ("button", {"uniq_id": "x-btn", "cmd_t": "x/btn", "pl_prs": "RING", "qos": 2}),
    ("scene", {"uniq_id": "x-scene", "cmd_t": "x/scene", "qos": 0}),
    (
        "alarm_control_panel",
        {
            "uniq_id": "x-alarm",
            "cmd_t": "x/alarm/set",
            "stat_t": "x/alarm/state",
            "sup_feat": ["arm_away", "arm_vacation", "trigger"],
            "pl_arm_away": "AWAY",
            "pl_arm_vacation": "HOLIDAY",
            "pl_disarm": "OFF",
            "pl_trig": "SIREN",
            "cmd_tpl": '{"cmd": "{{ action }}"}',
        },
    ),
    (  # the user's code is checked by the panel: never disarmed from here
        "alarm_control_panel",
        {"uniq_id": "x-coded", "cmd_t": "x/coded/set", "stat_t": "x/coded/state",
         "code": "REMOTE_CODE", "cod_arm_req": False, "pl_disarm": "DISARM"},
    ),
    ("switch", {"uniq_id": "x-sw", "cmd_t": "x/sw", "pl_on": "true", "pl_off": "false"}),
]

# ---------------------------------------------------------- the test's own reading

_SHORT = {
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "pl_on": "payload_on",
    "pl_off": "payload_off",
    "bri_cmd_t": "brightness_command_topic",
    "bri_cmd_tpl": "brightness_command_template",
    "bri_scl": "brightness_scale",
    "clr_temp_cmd_t": "color_temp_command_topic",
    "clr_temp_k": "color_temp_kelvin",
    "min_k": "min_kelvin",
    "max_k": "max_kelvin",
    "min_mirs": "min_mireds",
    "max_mirs": "max_mireds",
    "rgb_cmd_t": "rgb_command_topic",
    "hs_cmd_t": "hs_command_topic",
    "xy_cmd_t": "xy_command_topic",
    "on_cmd_type": "on_command_type",
    "sup_clrm": "supported_color_modes",
    "pct_cmd_t": "percentage_command_topic",
    "pct_cmd_tpl": "percentage_command_template",
    "spd_rng_min": "speed_range_min",
    "spd_rng_max": "speed_range_max",
    "pr_mode_cmd_t": "preset_mode_command_topic",
    "pr_modes": "preset_modes",
    "osc_cmd_t": "oscillation_command_topic",
    "pl_open": "payload_open",
    "pl_cls": "payload_close",
    "pl_stop": "payload_stop",
    "set_pos_t": "set_position_topic",
    "set_pos_tpl": "set_position_template",
    "pos_open": "position_open",
    "pos_clsd": "position_closed",
    "pl_lock": "payload_lock",
    "pl_unlk": "payload_unlock",
    "mode_cmd_t": "mode_command_topic",
    "mode_cmd_tpl": "mode_command_template",
    "temp_cmd_t": "temperature_command_topic",
    "pow_cmd_t": "power_command_topic",
    "pl_prs": "payload_press",
    "sup_feat": "supported_features",
    "pl_arm_away": "payload_arm_away",
    "pl_arm_home": "payload_arm_home",
    "pl_arm_nite": "payload_arm_night",
    "pl_arm_vacation": "payload_arm_vacation",
    "pl_disarm": "payload_disarm",
    "cod_arm_req": "code_arm_required",
    "cod_dis_req": "code_disarm_required",
}


def _full(raw: dict[str, Any]) -> dict[str, Any]:
    out = {_SHORT.get(k, k): v for k, v in raw.items()}
    base = out.pop("~", None)
    for key, value in list(out.items()):
        if base and key.endswith("_topic") and isinstance(value, str):
            if value.startswith("~"):
                out[key] = base + value[1:]
            elif value.endswith("~"):
                out[key] = value[:-1] + base
    return out


def literal(*values: str | None) -> Check:
    allowed = {v for v in values if v is not None}
    return lambda p: p in allowed


def integer(lo: float, hi: float, template: str | None = None) -> Check:
    def check(p: str) -> bool:
        if template is not None:
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{\\\{\\ (value|position)\\ \\\}\\\}", r"(-?\\d+)", pattern)
            m = re.fullmatch(pattern, p)
            if m is None:
                return False
            p = m.group(1)
        return re.fullmatch(r"-?\d+", p) is not None and lo <= int(p) <= hi

    return check


def templated(template: str | None, inner: Check, variable: str = "value") -> Check:
    if template is None:
        return inner
    head, _, tail = template.partition(f"{{{{ {variable} }}}}")

    def check(p: str) -> bool:
        if not (p.startswith(head) and p.endswith(tail)) or len(p) < len(head) + len(tail):
            return False
        return inner(p[len(head) : len(p) - len(tail)])

    return check


def stepped(lo: float, hi: float, step: float) -> Check:
    def check(p: str) -> bool:
        try:
            v = float(p)
        except ValueError:
            return False
        ratio = v / step
        return lo <= v <= hi and abs(ratio - round(ratio)) < 1e-6

    return check


def pair_text(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> Check:
    """Two decimal numbers, "a.a,b.b", each in its range (default-schema hs, xy colours)."""

    def check(p: str) -> bool:
        parts = p.split(",")
        if len(parts) != 2 or not all(re.fullmatch(r"\d+\.\d+", x) for x in parts):
            return False
        a, b = float(parts[0]), float(parts[1])
        return lo_a <= a <= hi_a and lo_b <= b <= hi_b

    return check


def rgb_text(p: str) -> bool:
    parts = p.split(",")
    return len(parts) == 3 and all(re.fullmatch(r"\d{1,3}", c) and int(c) <= 255 for c in parts)


def json_light(scale: int, ct_lo: float, ct_hi: float) -> Check:
    def number(v: Any, lo: float, hi: float) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi

    def check(p: str) -> bool:
        try:
            data = json.loads(p)
        except ValueError:
            return False
        if not isinstance(data, dict) or data.get("state") not in ("ON", "OFF"):
            return False
        if set(data) - {"state", "brightness", "color_temp", "color"}:
            return False
        if "brightness" in data and not (
            isinstance(data["brightness"], int) and 1 <= data["brightness"] <= scale
        ):
            return False
        if "color_temp" in data and not (
            isinstance(data["color_temp"], int) and ct_lo <= data["color_temp"] <= ct_hi
        ):
            return False
        if "color" in data:
            c = data["color"]
            shapes = [
                {"r": (0, 255), "g": (0, 255), "b": (0, 255)},
                {"h": (0, 360), "s": (0, 100)},
                {"x": (0, 1), "y": (0, 1)},
            ]
            if not isinstance(c, dict) or not any(
                set(c) == set(shape) and all(number(c[k], *shape[k]) for k in shape)
                for shape in shapes
            ):
                return False
        return True

    return check


def allow_list(component: str, raw: dict[str, Any]) -> dict[str, Check]:
    c = _full(raw)
    allowed: dict[str, Check] = {}

    def add(key: str, check: Check) -> None:
        if isinstance(c.get(key), str):
            allowed[c[key]] = check

    kelvin = c.get("color_temp_kelvin") is True
    ct_lo = c.get("min_kelvin", 2000) if kelvin else c.get("min_mireds", 153)
    ct_hi = c.get("max_kelvin", 6535) if kelvin else c.get("max_mireds", 500)
    if component == "light" and c.get("schema") == "json":
        add("command_topic", json_light(c.get("brightness_scale", 255), ct_lo, ct_hi))
    elif component == "light":
        add("command_topic", literal(c.get("payload_on", "ON"), c.get("payload_off", "OFF")))
        scale = c.get("brightness_scale", 255)
        add("brightness_command_topic", integer(1, scale, c.get("brightness_command_template")))
        add("color_temp_command_topic", integer(ct_lo, ct_hi))
        # One colour topic: RGB if there is one, else hue/saturation, else x/y.
        colour = {
            "rgb_command_topic": rgb_text,
            "hs_command_topic": pair_text(0, 360, 0, 100),
            "xy_command_topic": pair_text(0, 1, 0, 1),
        }
        key = next((k for k in colour if isinstance(c.get(k), str)), None)
        if key is not None:
            add(key, colour[key])
    elif component in ("switch", "scene"):
        add("command_topic", literal(c.get("payload_on", "ON"), c.get("payload_off", "OFF")))
    elif component == "fan":
        on_off = literal(c.get("payload_on", "ON"), c.get("payload_off", "OFF"))
        add("command_topic", templated(c.get("command_template"), on_off))
        lo, hi = c.get("speed_range_min", 1), c.get("speed_range_max", 100)
        add("percentage_command_topic", integer(lo, hi, c.get("percentage_command_template")))
        add("preset_mode_command_topic", literal(*c.get("preset_modes", [])))
        add("oscillation_command_topic", literal("oscillate_on", "oscillate_off"))
    elif component == "cover":
        add(
            "command_topic",
            literal(
                c.get("payload_open", "OPEN"),
                c.get("payload_close", "CLOSE"),
                c.get("payload_stop", "STOP"),
            ),
        )
        a, b = c.get("position_open", 100), c.get("position_closed", 0)
        add("set_position_topic", integer(min(a, b), max(a, b), c.get("set_position_template")))
    elif component == "lock":
        words = literal(
            c.get("payload_lock", "LOCK"), c.get("payload_unlock", "UNLOCK"), c.get("payload_open")
        )
        add("command_topic", templated(c.get("command_template"), words))
    elif component == "climate":
        modes = literal(*c.get("modes", ["auto", "off", "cool", "heat", "dry", "fan_only"]))
        add("mode_command_topic", templated(c.get("mode_command_template"), modes))
        add(
            "temperature_command_topic",
            stepped(c.get("min_temp", 7), c.get("max_temp", 35), c.get("temp_step", 1)),
        )
        add("power_command_topic", literal(c.get("payload_on", "ON"), c.get("payload_off", "OFF")))
    elif component == "button":
        add("command_topic", literal(c.get("payload_press", "PRESS")))
    elif component == "alarm_control_panel":
        # Home Assistant's payloads for the supported arm modes and disarm; never
        # trigger or custom bypass; nothing that needs a code a person must enter.
        coded = c.get("code") not in (None, "")
        features = c.get("supported_features", ["arm_home", "arm_away", "arm_night",
                                                 "arm_vacation"])
        words: list[str | None] = []
        if not (coded and c.get("code_arm_required", True)):
            words += [c.get(f"payload_{f}", f.upper()) for f in features if f.startswith("arm_")
                      and f != "arm_custom_bypass"]
        if not (coded and c.get("code_disarm_required", True)):
            words.append(c.get("payload_disarm", "DISARM"))
        add("command_topic", templated(c.get("command_template"), literal(*words), "action"))
    return allowed


def expected_qos(raw: dict[str, Any]) -> int:
    """The QoS a command to this device goes at: its config's, else 1."""
    qos = raw.get("qos", 1)
    assert qos in (0, 1, 2)
    return int(qos)


# Arbitrary JSON, the odd and the plausible.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["ON", "#ff0000", "heat", "auto", "1e3", "50", "evil/topic", "#", "+"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)

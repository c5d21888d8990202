"""Every counter the daemon keeps, in one registry per daemon instance.

One place lists them all so /metrics is the full catalogue of what can be lost,
retried or timed out. A registry per instance keeps tests independent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LINK_STATES = ("idle", "connecting", "connected", "handover", "backoff", "failed", "stopped")


class Metrics:
    """The Prometheus metrics of one daemon: each an attribute, all in `registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # Live link
        self.link_state = Gauge(
            "edge_live_link_state", "1 for the Live link's current state", ["state"], registry=r
        )
        self.link_connects = Counter(
            "edge_live_connects", "Connection attempts by result", ["result"], registry=r
        )
        self.link_disconnects = Counter(
            "edge_live_disconnects", "Lost or ended connections by reason", ["reason"], registry=r
        )
        self.link_fresh_sessions = Counter(
            "edge_live_fresh_sessions",
            "Sessions started without resumption, by reason",
            ["reason"],
            registry=r,
        )
        self.link_gap = Histogram(
            "edge_live_reconnect_gap_seconds",
            "Time from losing a connection to the next working one",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.uplink_audio = Counter(
            "edge_live_uplink_audio_chunks", "Audio chunks sent to the Live API", registry=r
        )
        self.uplink_audio_replayed = Counter(
            "edge_live_uplink_audio_replayed_chunks",
            "Audio chunks sent late, from the replay buffer, after a reconnect",
            registry=r,
        )
        self.uplink_audio_dropped = Counter(
            "edge_live_uplink_audio_dropped_chunks",
            "Audio chunks dropped because the replay buffer was full",
            registry=r,
        )
        self.uplink_video = Counter(
            "edge_live_uplink_video_frames", "Video frames sent to the Live API", registry=r
        )
        self.uplink_video_skipped = Counter(
            "edge_live_uplink_video_skipped_frames",
            "Video frames not sent, by reason (rate limit, superseded while offline)",
            ["reason"],
            registry=r,
        )
        self.replay_buffer_seconds = Gauge(
            "edge_live_replay_buffer_seconds",
            "Audio waiting in the replay buffer",
            registry=r,
        )
        self.downlink_messages = Counter(
            "edge_live_downlink_messages", "Server messages by kind", ["kind"], registry=r
        )
        self.downlink_audio_seconds = Counter(
            "edge_live_downlink_audio_seconds", "Model audio received", registry=r
        )
        self.tokens = Counter(
            "edge_live_tokens", "Tokens reported by usage metadata", ["kind"], registry=r
        )
        # Tools
        self.tool_calls = Counter(
            "edge_tool_calls", "Tool calls by tool and outcome", ["tool", "outcome"], registry=r
        )
        self.tool_seconds = Histogram(
            "edge_tool_call_seconds",
            "Tool call duration",
            ["tool"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.tool_responses_lost = Counter(
            "edge_tool_responses_lost",
            "Tool responses that could not be delivered (session not resumable)",
            registry=r,
        )
        self.tool_ready_waits = Counter(
            "edge_tool_ready_waits",
            "Calls to a tool not registered yet that waited for the tools to be ready (the "
            "home's first inventory), by result: ready, or timeout (then answered unknown)",
            ["result"],
            registry=r,
        )
        # Health server
        self.health_refused = Counter(
            "edge_health_refused",
            "Health server connections and requests not served, by reason: bad_host (not a "
            "loopback Host), no_host, bad_request, timeout, idle_shed (an idle connection "
            "dropped to make room at the cap), busy",
            ["reason"],
            registry=r,
        )
        # Peripheral
        self.peripheral_audio = Counter(
            "edge_peripheral_audio_chunks", "Audio chunks from the peripheral", registry=r
        )
        self.peripheral_video = Counter(
            "edge_peripheral_video_frames", "Camera frames from the peripheral", registry=r
        )
        self.peripheral_taps = Counter(
            "edge_peripheral_taps", "Deliberate taps on the peripheral (confirmations)",
            registry=r,
        )
        self.peripheral_dropped_before_start = Counter(
            "edge_peripheral_dropped_before_start",
            "Captured before the conversation existed and dropped: media past the hold "
            "limit, or a tap (no question can be open yet)",
            ["kind"],
            registry=r,
        )
        self.uplink_withheld = Counter(
            "edge_uplink_withheld",
            "Media not sent: microphone muted, camera off, idle video, or the microphone "
            "gated while a speaker in the room plays the model (echo_gate)",
            ["kind"],
            registry=r,
        )
        self.playback_seconds = Counter(
            "edge_playback_audio_seconds", "Model audio handed to the speaker", registry=r
        )
        self.agent_event_errors = Counter(
            "edge_agent_event_errors",
            "Live events whose handling failed and that were dropped, by event type",
            ["event"],
            registry=r,
        )
        self.playback_dropped = Counter(
            "edge_playback_dropped_seconds",
            "Model audio discarded, by reason (interrupted, overflow)",
            ["reason"],
            registry=r,
        )
        self._add_home(r)
        # Live link: what happened to sent-but-unconfirmed audio and to tool answers
        self.uplink_unconfirmed_at_close = Counter(
            "edge_live_uplink_unconfirmed_at_close_chunks",
            "Audio chunks on the socket but not confirmed by a pong when a connection "
            "ended, by reason: sent again when the server was not reading (a stall, or a "
            "ping unanswered for live.stall_timeout), else taken as delivered",
            ["reason"],
            registry=r,
        )
        self.live_start_sessions = Counter(
            "edge_live_start_sessions",
            "How the first Live session after the daemon started came about, by reason: "
            "resumed (the stored handle), or fresh because it was refused, expired "
            "(older than live.resume_max_age), changed (another endpoint or model), "
            "corrupt (unreadable record) or none (nothing stored)",
            ["reason"],
            registry=r,
        )
        self.live_session_writes = Counter(
            "edge_live_session_writes",
            "Writes of the stored Live session (state record live_session), by result: "
            "written, deleted, failed",
            ["result"],
            registry=r,
        )
        self.live_interrupted_calls = Counter(
            "edge_live_interrupted_calls",
            "Tool calls a previous daemon process left open, by outcome: answered (with "
            "an error: outcome unknown) on the resumed session, or dropped with it",
            ["outcome"],
            registry=r,
        )
        self.live_session_calls_left_out = Counter(
            "edge_live_session_calls_left_out",
            "Open tool calls the stored Live session does not list (more than 64 open at "
            "once, an empty id, or no room left in the record): a restart could not "
            "answer them; counted once each time a call is left out",
            registry=r,
        )
        self.live_stalls = Counter(
            "edge_live_stalls",
            "Connections ended as stalled, by evidence: silence (nothing heard for "
            "live.stall_timeout) or no_pong (a ping unanswered that long while the server "
            "still sent: it was not reading); their unconfirmed audio is sent again",
            ["evidence"],
            registry=r,
        )
        self.tool_responses_dropped = Counter(
            "edge_live_tool_responses_dropped",
            "Tool answers not sent as given, by reason (cancelled by the model, duplicate, "
            "unserialisable: replaced by an error answer)",
            ["reason"],
            registry=r,
        )
        self.tool_responses_resent = Counter(
            "edge_live_tool_responses_resent",
            "Tool answers sent again on a resumed session: no pong confirmed them before "
            "their connection ended",
            registry=r,
        )
        # Live link: malformed server messages, refusals by the API, the tool fallback
        self.live_messages_dropped = Counter(
            "edge_live_messages_dropped",
            "Parts of server messages dropped as malformed, by reason (audio_rate, "
            "audio_odd_length, audio_format, usage_negative); the rest of the message is kept",
            ["reason"],
            registry=r,
        )
        self.live_refusals = Counter(
            "edge_live_refusals",
            "Connections the Live API refused (key, endpoint, model, setup), by reason: "
            "fatal on the first connection after start, later retried after minutes",
            ["reason"],
            registry=r,
        )
        self.live_tool_fallbacks = Counter(
            "edge_live_tool_fallbacks",
            "Fresh setups rejected (1007) and tried again with the built-in tools only",
            registry=r,
        )
        self.sdk_socket_unavailable = Counter(
            "edge_live_sdk_socket_unavailable",
            "Connections on which the installed google-genai did not expose the websocket "
            "the link needs (daemon.live.socket_door): no ping confirmed what was sent on "
            "them, so tool answers and audio were taken as delivered",
            registry=r,
        )
        self._before_render: list[Callable[[], None]] = []
        self.set_link_state("idle")

    def _add_home(self, r: CollectorRegistry) -> None:
        """The home's metrics (kept apart: one constructor would be too long to read)."""
        # Home: MQTT connection, inventory, device commands, the daemon's own HA device
        self.mqtt_connected = Gauge(
            "edge_mqtt_connected", "1 while connected to the MQTT broker", registry=r
        )
        self.mqtt_events = Counter(
            "edge_mqtt_events",
            "MQTT connection events: connects, failures, losses, reconnect loops, MQTT 5 "
            "refused, messages dropped (queue full, backlog bytes, oversized discovery or "
            "other), publishes by outcome (acked, unconfirmed, not sent)",
            ["event"],
            registry=r,
        )
        self.home_devices = Gauge(
            "edge_home_devices", "Devices in the inventory, by source", ["source"], registry=r
        )
        self.home_messages = Counter(
            "edge_home_messages",
            "Discovery, state and availability messages by result (ignored and errors too; "
            "bad ids and topics, forgotten errors and replay payloads)",
            ["result"],
            registry=r,
        )
        self.home_commands = Counter(
            "edge_home_commands",
            "Device commands by result (done, sent unconfirmed, failed by reason, "
            "debounced: the same command again at once, not re-sent)",
            ["result"],
            registry=r,
        )
        self.home_confirmations = Counter(
            "edge_home_confirmations",
            "Confirmation tokens for sensitive devices: issued, redeemed, refused by reason",
            ["result"],
            registry=r,
        )
        self.home_tool_refreshes = Counter(
            "edge_home_tool_refreshes",
            "Times the device tools were re-declared because the inventory changed",
            registry=r,
        )
        self.home_ha_commands = Counter(
            "edge_home_ha_commands",
            "Commands Home Assistant sent to the daemon's own switches, by result",
            ["entity", "result"],
            registry=r,
        )
        self.home_announcements = Counter(
            "edge_home_announcements",
            "Times the daemon announced itself to Home Assistant (discovery configs)",
            registry=r,
        )
        self.home_state_publishes = Counter(
            "edge_home_state_publishes",
            "The daemon's own state messages, by result (published, not sent)",
            ["result"],
            registry=r,
        )

    def add_status_source(self, name: str, status: Callable[[], Mapping[str, Any]]) -> None:
        """Expose every number in `status()` (nested dicts flattened with dots) as
        `edge_<name>_stat{key="..."}`, read at scrape time.

        Peripherals keep plain counters in dataclasses on their hot paths (every
        BLE notification); this makes all of them visible without a metric each.
        """
        self.registry.register(_StatusCollector(f"edge_{name}_stat", status))

    def set_link_state(self, state: str) -> None:
        """Set the link state gauge: 1 for `state`, 0 for every other."""
        for s in LINK_STATES:
            self.link_state.labels(s).set(1 if s == state else 0)

    def before_render(self, hook: Callable[[], None]) -> None:
        """Call `hook` before each render: counters kept in plain dataclasses move in
        then, so one scrape never shows some of them a moment behind the others."""
        self._before_render.append(hook)

    def render(self) -> bytes:
        """The /metrics body in Prometheus text format."""
        for hook in self._before_render:
            try:
                hook()
            except Exception:
                log.exception("metrics hook failed")
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample; 0 when it was never touched (for tests, status)."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


class _StatusCollector(Collector):
    def __init__(self, metric: str, status: Callable[[], Mapping[str, Any]]) -> None:
        self._metric = metric
        self._status = status

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._metric, "Counters and readings of a component, by key",
                                   labels=["key"])
        try:
            for key, value in _numbers(self._status(), ""):
                family.add_metric([key], value)
        except Exception:
            log.exception("status source %s failed", self._metric)
        yield family


def _numbers(tree: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, int | float):  # bool is an int: 0 / 1
            yield path, float(value)
        elif isinstance(value, Mapping):
            yield from _numbers(value, path + ".")

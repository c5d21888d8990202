"""The background tasks' counters, in the daemon's one registry (`Metrics.registry`).

Kept here rather than in daemon.ops.metrics so the tasks room owns its
catalogue; they still show on /metrics with everything else.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class TaskMetrics:
    """Every start, poll, retry, ending and delivery of a background task is counted."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.started = Counter("edge_tasks_started", "Background tasks started", registry=r)
        self.refused = Counter(
            "edge_tasks_refused",
            "Task starts refused, by reason (not_running, limit: too many running, "
            "undelivered: too many results still to be said)", ["reason"], registry=r)
        self.finished = Counter("edge_tasks_finished", "Tasks ended, by final state",
                                ["state"], registry=r)
        self.requests = Counter("edge_tasks_requests",
                                "Interactions API requests, by operation and result",
                                ["op", "result"], registry=r)
        self.retries = Counter("edge_tasks_retries",
                               "Transient Interactions API errors retried, by operation",
                               ["op"], registry=r)
        self.invalid_results = Counter(
            "edge_tasks_invalid_results", "Answers that did not fit the result schema",
            registry=r)
        self.clipped = Counter("edge_tasks_summaries_clipped",
                               "Spoken summaries cut to the word limit", registry=r)
        self.delivered = Counter("edge_tasks_delivered",
                                 "Results and failures put into the conversation", registry=r)
        self.resumed = Counter("edge_tasks_resumed", "Tasks picked up again after a restart",
                               registry=r)
        self.active = Gauge("edge_tasks_active", "Tasks starting or running", registry=r)
        self.undelivered = Gauge("edge_tasks_undelivered",
                                 "Finished tasks whose result waits to be said", registry=r)
        self.undelivered_expired = Counter(
            "edge_tasks_undelivered_expired",
            "Results given up unsaid: the oldest beyond the bound on waiting results",
            registry=r)
        self.deletes_given_up = Counter(
            "edge_tasks_deletes_given_up",
            "Interactions left on the service after their deletes kept failing", registry=r)
        self.delivery_wait = Histogram(
            "edge_tasks_delivery_wait_seconds",
            "From a result being ready to it reaching the conversation",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800), registry=r)


class FallbackMetrics:
    """The fallback road's switches, turns, tool calls and answer latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.switches = Counter("edge_fallback_switches", "Road switches, by the road taken",
                                ["to"], registry=r)
        self.road = Gauge("edge_fallback_active", "1 while on the fallback road", registry=r)
        self.turns = Counter("edge_fallback_turns", "Fallback turns, by outcome",
                             ["outcome"], registry=r)
        self.tool_calls = Counter("edge_fallback_tool_calls",
                                  "Tool calls run for the fallback model, by outcome",
                                  ["outcome"], registry=r)
        self.utterances_dropped = Counter(
            "edge_fallback_utterances_dropped",
            "Utterances dropped because turns were still queued", registry=r)
        self.summaries = Counter("edge_fallback_summaries",
                                 "Hand-overs to the Live session, by how summarised",
                                 ["how"], registry=r)
        self.answer_seconds = Histogram(
            "edge_fallback_answer_seconds",
            "End of utterance to the first answer audio queued (model time included)",
            buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30), registry=r)
        self.overhead_seconds = Histogram(
            "edge_fallback_overhead_seconds",
            "The same, less the time spent waiting for the service (our own overhead)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1), registry=r)

"""Every Prometheus metric shardmgr exports, defined in this one module.

The supervisor feeds a ``Metrics`` object from the workers' IPC reports (``on_worker_message``)
and from its own decisions (restarts, identify queue, session-start budget); the HTTP server
serves ``render()``. Workers never talk to Prometheus themselves. This module declares the
metrics; what the plan and the reports do to them is ``shardmgr.metricsfeed``, and the closed
label sets are ``shardmgr.metriclabels``.

Naming follows Prometheus conventions: prefix ``shardmgr_``, base units (seconds, bytes),
``_total`` on counters. Every label value comes from a closed set (shard and worker ids are
bounded by the plan; event types, reasons and close codes are folded into ``other`` when
unknown), so a misbehaving gateway or worker cannot blow up the series count.

Series cost at 1000 shards: the per-shard state Enum is 8 series per shard (8000), the
per-shard gauges (latency, guilds, backlog, last event, session start) 5000 more, the
counters from the shards' stats (duplicates, skipped, identifies and resumes sent) 4000, and
the per-shard counters by label (sessions by kind, reconnects by reason) only exist once they
happened, at most 9 per shard. That is ~17-26k series per supervisor: comfortable for one
Prometheus target. Dashboards that need fleet-wide numbers use the cheap aggregates
(``shardmgr_shards{state}``, per-worker histograms) rather than summing per-shard series.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from shardmgr.metriclabels import EVENT_TYPES as EVENT_TYPES
from shardmgr.metriclabels import RESTART_REASONS, Family, fold
from shardmgr.metricsfeed import MetricsFeed
from shardmgr.reshardmetrics import ReshardMetrics
from shardmgr.restmetrics import RestMetrics
from shardmgr.shardtable import SHARD_STATES
from workers import ipc

PREFIX: Final = "shardmgr"
SHARD_LABELS: Final = ("shard", "worker")
WORKER_LABELS: Final = ("worker",)

# Per-shard counters fed from ``ipc.ShardStats``: field -> (metric name, help). Created at
# zero with the plan, so the first skipped event is an increase that alerts can see.
SHARD_STAT_COUNTERS: Final = {
    "duplicates": (
        "shard_duplicate_events",
        "Replayed dispatches each shard dropped because it had already received them",
    ),
    "skipped": (
        "shard_skipped_events",
        "Events each shard gave up on after their replay failed to decode again and again "
        "(never delivered to the handler)",
    ),
    "identifies": (
        "shard_identifies_sent",
        "IDENTIFY payloads each shard sent (each one spends a session start)",
    ),
    "resumes": ("shard_resumes_sent", "RESUME payloads each shard sent"),
    "model_errors": (
        "shard_model_errors",
        "Dispatch payloads that did not fit their typed model (the handler got the raw event)",
    ),
}


# Gateway ACKs normally take tens of milliseconds; the upper buckets catch a blocked loop.
LATENCY_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
# Identify waits range from nothing to minutes (one 5 s window per bucket, in shard order).
IDENTIFY_WAIT_BUCKETS: Final = (
    0.0, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip


def _version() -> str:
    try:
        return importlib.metadata.version("shardmgr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The supervisor's metrics registry, fed by IPC reports and supervisor decisions.

    Not thread-safe beyond what prometheus-client guarantees; call it from the supervisor's
    event loop.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        own = registry is None
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        if own:
            # The supervisor's own CPU, memory, fds and GC: only on a registry we created,
            # because the default registry already carries these collectors.
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        p = PREFIX

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(f"{p}_{name}", doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(f"{p}_{name}", doc, labels, registry=r)

        self.build = Info(f"{p}_build", "shardmgr version", registry=r)
        self.reshard = ReshardMetrics(r)  # shardmgr_reshard_* (shardmgr.resharder)
        self.build.info({"version": _version()})

        # ---- fleet-wide
        self.shards_planned = gauge("shards_planned", "Shards this supervisor runs")
        self.shards_connected = gauge("shards_connected", "Shards whose state is connected")
        self.shards_by_state = gauge("shards", "Shards in each lifecycle state", ["state"])
        self.workers_planned = gauge("workers_planned", "Worker processes planned")
        self.identify_queue_depth = gauge("identify_queue_depth", "Identifies waiting for a permit")
        self.identify_wait = Histogram(
            f"{p}_identify_wait_seconds",
            "Time a shard waited for its identify permit",
            buckets=IDENTIFY_WAIT_BUCKETS,
            registry=r,
        )
        self.session_start_remaining_gauge = gauge(
            "session_start_remaining",
            "session_start_limit.remaining: identifies left in Discord's daily window",
        )
        self.session_start_total_gauge = gauge(
            "session_start_limit", "session_start_limit.total: the daily identify budget"
        )
        self.identify_limiter_available_gauge = gauge(
            "identify_limiter_available",
            "0 while the identify limiter cannot reach its backend (Redis); identifies wait",
        )
        self.budget_exhausted_gauge = gauge(
            "session_start_budget_exhausted",
            "1 while identifies wait for the session-start budget to refill",
        )
        # ---- the redis-stream sink (--sink), as the supervisor sees its Redis
        self.sink_available_gauge = gauge(
            "sink_available",
            "0 while the redis-stream sink's Redis cannot be reached or refuses the "
            "credentials (1 without a sink); events wait in the shard backlogs",
        )
        self.sink_backpressure_gauge = gauge(
            "sink_backpressure",
            "1 while the sink's stream is full of entries a consumer group has not "
            "acknowledged: writes wait and the shards stop reading from Discord",
        )
        self.sink_stream_length_gauge = gauge(
            "sink_stream_length", "Entries in the sink's stream (XLEN)"
        )
        self.sink_group_lag_gauge = gauge(
            "sink_group_lag",
            "Entries of the sink's stream not yet delivered to each consumer group",
            ["group"],
        )
        self.sink_group_pending_gauge = gauge(
            "sink_group_pending",
            "Entries delivered to each consumer group and not yet acknowledged",
            ["group"],
        )
        self._sink_groups = (
            Family(self.sink_group_lag_gauge),
            Family(self.sink_group_pending_gauge),
        )
        self.rolling_failures = counter(
            "rolling_restart_failures",
            "Rolling restarts stopped because a replacement could not load the handler",
        )
        self.rolling_failed_gauge = gauge(
            "rolling_restart_failed",
            "1 while the last rolling restart stopped on a handler that did not load",
        )

        # ---- per shard
        shard = SHARD_LABELS
        self.shard_state = Enum(
            f"{p}_shard_state",
            "Lifecycle state of each shard",
            shard,
            states=list(SHARD_STATES),
            registry=r,
        )
        self.shard_latency = gauge(
            "shard_heartbeat_latency_seconds", "Latest heartbeat ACK latency of each shard", shard
        )
        self.shard_reconnects = counter(
            "shard_reconnects", "Reconnects of each shard by reason", [*shard, "reason"]
        )
        self.shard_sessions = counter(
            "shard_sessions_started",
            "Sessions started by each shard: identify (READY) or resume (RESUMED)",
            [*shard, "kind"],
        )
        self.shard_guilds = gauge("shard_guilds", "Guilds on each shard", shard)
        self.shard_last_event = gauge(
            "shard_last_event_timestamp_seconds",
            "Unix time of the last gateway event each shard received",
            shard,
        )
        self.shard_session_started = gauge(
            "shard_session_start_timestamp_seconds",
            "Unix time the current session of each shard started (READY or RESUMED)",
            shard,
        )
        self.shard_backlog = gauge(
            "shard_handler_backlog", "Events of each shard waiting for the bot's handler", shard
        )
        # ShardStats field -> its counter; the stats carry deltas, added up here.
        self.shard_stat_counters: dict[str, Counter] = {
            field: counter(name, doc, shard) for field, (name, doc) in SHARD_STAT_COUNTERS.items()
        }

        # ---- per worker
        worker = WORKER_LABELS
        self.worker_up_gauge = gauge("worker_up", "1 while the worker process is alive", worker)
        self.worker_restarts = counter(
            "worker_restarts", "Worker process restarts by reason", [*worker, "reason"]
        )
        self.worker_rss = gauge(
            "worker_resident_memory_bytes", "Resident memory of the worker process", worker
        )
        self.worker_cpu = counter(
            "worker_cpu_seconds",
            "User and system CPU time of the worker processes (survives restarts)",
            worker,
        )
        self.worker_shards = gauge("worker_shards", "Shards planned on each worker", worker)
        self.worker_events = counter(
            "worker_events", "Gateway dispatch events received, by type", [*worker, "type"]
        )
        self.worker_bytes = counter(
            "worker_received_bytes",
            "Gateway bytes received: on the wire (compressed) and after inflation",
            [*worker, "form"],
        )
        self.worker_handler_errors = counter(
            "worker_handler_errors", "Exceptions raised by the bot's event handler", worker
        )
        self.worker_bad_payloads = counter(
            "worker_bad_payloads", "Gateway messages that could not be inflated or decoded", worker
        )
        self.worker_latency = Histogram(
            f"{p}_worker_heartbeat_latency_seconds",
            "Heartbeat ACK latency of all shards of the worker",
            worker,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_close_codes = counter(
            "worker_close_codes",
            "Gateway close codes seen by the worker's shards",
            [*worker, "code"],
        )
        self.ipc_messages_received = counter(
            "ipc_messages_received",
            "IPC messages the supervisor received from workers (stats are batched, so this "
            "must not grow with the event rate)",
        )
        self.shard_dead_letters = counter(
            "shard_dead_letters",
            "Poison events delivered past after killing their worker twice (dead-lettered)",
            SHARD_LABELS,
        )
        self.worker_loop_lag = gauge(
            "worker_loop_lag_seconds",
            "How late the worker's event loop woke for its last stats tick (blocking handlers)",
            worker,
        )
        self.worker_shard_stops = counter(
            "worker_shard_stops",
            "Shards that stopped for good (fatal=true: a fatal close or refused identify)",
            [*worker, "fatal"],
        )

        named = tuple(
            Family(m)
            for m in (
                self.shard_state,
                self.shard_latency,
                self.shard_reconnects,
                self.shard_sessions,
                self.shard_guilds,
                self.shard_last_event,
                self.shard_session_started,
                self.shard_backlog,
            )
        )
        (
            self.f_state,
            self.f_latency,
            self.f_reconnects,
            self.f_sessions,
            self.f_guilds,
            self.f_last_event,
            self.f_session_started,
            self.f_backlog,
        ) = named
        self.per_shard: tuple[Family, ...] = (
            *named,
            *(Family(c) for c in self.shard_stat_counters.values()),
            Family(self.shard_dead_letters),
        )
        self.per_worker: tuple[Family, ...] = tuple(
            Family(m)
            for m in (
                self.worker_up_gauge,
                self.worker_restarts,
                self.worker_rss,
                self.worker_cpu,
                self.worker_shards,
                self.worker_events,
                self.worker_bytes,
                self.worker_handler_errors,
                self.worker_bad_payloads,
                self.worker_latency,
                self.worker_close_codes,
                self.worker_shard_stops,
                self.worker_loop_lag,
            )
        )
        self._families = {id(f.metric): f for f in (*self.per_shard, *self.per_worker)}

        self._feed = MetricsFeed(self)
        self.exhausted_reason: str | None = None
        # Unknown until discovery reports it: NaN keeps "remaining < threshold" alerts quiet
        # and draws a gap, where 0 would claim the budget is gone.
        self.session_start_remaining_gauge.set(math.nan)
        self.session_start_total_gauge.set(math.nan)
        for state in SHARD_STATES:
            self.shards_by_state.labels(state).set(0)
        self.budget_exhausted_gauge.set(0)
        self.rolling_failed_gauge.set(0)
        self.identify_limiter_available_gauge.set(1)
        self.rest = RestMetrics(self.registry)
        self.sink_available_gauge.set(1)

    # ------------------------------------------------------------------ plan and workers

    def set_plan(self, shards_planned: int, workers: dict[int, list[int]]) -> None:
        """Declare which shards run on which worker (``MetricsFeed.set_plan``)."""
        self._feed.set_plan(shards_planned, workers)

    def worker_up(self, worker_id: int, up: bool) -> None:
        self._feed.worker_up(worker_id, up)

    def family(self, metric: Counter | Gauge | Histogram | Enum) -> Family:
        return self._families[id(metric)]

    def worker_restarted(self, worker_id: int, reason: str) -> None:
        w = str(worker_id)
        label = fold(reason, RESTART_REASONS)
        self.family(self.worker_restarts).touch(w, label)
        self.worker_restarts.labels(w, label).inc()

    # ------------------------------------------------------------------ identify budget

    def identify_queue(self, depth: int) -> None:
        self.identify_queue_depth.set(max(0, depth))

    def identify_waited(self, seconds: float) -> None:
        self.identify_wait.observe(max(0.0, seconds))

    def session_start_remaining(self, remaining: int, total: int | None = None) -> None:
        self.session_start_remaining_gauge.set(remaining)
        if total is not None:
            self.session_start_total_gauge.set(total)

    def identify_limiter_available(self, available: bool) -> None:
        self.identify_limiter_available_gauge.set(1 if available else 0)

    def sink_state(self, available: bool, backpressure: bool) -> None:
        self.sink_available_gauge.set(1 if available else 0)
        self.sink_backpressure_gauge.set(1 if backpressure else 0)

    def sink_stream(self, length: int, groups: Mapping[str, tuple[float, int]]) -> None:
        """The stream's length and, per consumer group, (lag, pending); a lag Redis cannot
        tell (after deletions) is NaN. Groups that are gone lose their series."""
        self.sink_stream_length_gauge.set(length)
        for family in self._sink_groups:
            family.drop(lambda values: values[0] in groups)
        for name, (lag, pending) in groups.items():
            self.sink_group_lag_gauge.labels(name).set(lag)
            self.sink_group_pending_gauge.labels(name).set(pending)
            for family in self._sink_groups:
                family.touch(name)

    def budget_exhausted(self, reason: str | None) -> None:
        self.exhausted_reason = reason
        self.budget_exhausted_gauge.set(0 if reason is None else 1)

    # ------------------------------------------------------------------ IPC reports

    def on_worker_message(self, worker_id: int, msg: ipc.ToSupervisor) -> None:
        """Apply one IPC report (``MetricsFeed.on_worker_message``); messages that carry no
        metric are ignored, so the supervisor can pass every message through."""
        self._feed.on_worker_message(worker_id, msg)

    def rolling_restart_outcome(self, failed: bool) -> None:
        self.rolling_failed_gauge.set(1 if failed else 0)
        if failed:
            self.rolling_failures.inc()

    # ------------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its content type."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE_LATEST


class _WithoutCreated:
    """A view of a registry without the ``_created`` samples prometheus-client adds to every
    counter and histogram child. In the text format they are extra gauge series (doubling
    the per-shard counter cost) that no dashboard or alert here uses. Filtered per render
    rather than with ``disable_created_metrics()``, which would change process-wide state."""

    __slots__ = ("_registry",)

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary", "gaugehistogram"):
                created = family.name + "_created"
                family.samples = [s for s in family.samples if s.name != created]
            yield family

"""Every Prometheus metric shardmgr exports, defined in this one module.

The supervisor feeds a ``Metrics`` object from the workers' IPC reports (``on_worker_message``)
and from its own decisions (restarts, identify queue, session-start budget); the HTTP server
serves ``render()``. Workers never talk to Prometheus themselves.

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
import logging
import math
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
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

from shardmgr.reshardmetrics import ReshardMetrics
from shardmgr.restmetrics import RestMetrics
from shardmgr.shardtable import SHARD_STATES, state_after, state_without_worker
from workers import ipc
from workers.events import DISPATCH_NAMES
from workers.protocol import CloseCode

log = logging.getLogger(__name__)

PREFIX: Final = "shardmgr"
OTHER: Final = "other"


RECONNECT_REASONS: Final = frozenset(reason.value for reason in ipc.Reason)
RESTART_REASONS: Final = frozenset({"exit", "hung", "rolling", "replan"})
SESSION_KINDS: Final = frozenset({"identify", "resume"})
BYTE_FORMS: Final = ("compressed", "inflated")
CLOSE_CODES: Final = frozenset(str(int(code)) for code in CloseCode)
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

# Dispatch names documented in the protocol reference (section 9). Anything else is "other".
EVENT_TYPES: Final = DISPATCH_NAMES

# Gateway ACKs normally take tens of milliseconds; the upper buckets catch a blocked loop.
LATENCY_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
# Identify waits range from nothing to minutes (one 5 s window per bucket, in shard order).
IDENTIFY_WAIT_BUCKETS: Final = (
    0.0, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip


def fold(value: str, allowed: Iterable[str]) -> str:
    """``value`` if it belongs to the closed set, else ``other``."""
    return value if value in allowed else OTHER


def event_label(name: str) -> str:
    return fold(name, EVENT_TYPES)


def close_code_label(code: int | None) -> str:
    if code is None:
        return "none"
    return fold(str(code), CLOSE_CODES)


def _version() -> str:
    try:
        return importlib.metadata.version("shardmgr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


LabelTuple = tuple[str, ...]


class _Family:
    """A labelled metric plus the label sets it has created, so a re-plan can drop the
    series of shards and workers that no longer exist (prometheus-client has no query
    for "children whose worker label is 3")."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: Counter | Gauge | Histogram | Enum) -> None:
        self.metric = metric
        self.children: set[LabelTuple] = set()

    def touch(self, *values: str) -> None:
        self.children.add(values)

    def drop(self, keep: Callable[[LabelTuple], bool]) -> None:
        for values in [v for v in self.children if not keep(v)]:
            self.metric.remove(*values)
            self.children.discard(values)


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
            _Family(self.sink_group_lag_gauge),
            _Family(self.sink_group_pending_gauge),
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
            _Family(m)
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
            self._f_state,
            self._f_latency,
            self._f_reconnects,
            self._f_sessions,
            self._f_guilds,
            self._f_last_event,
            self._f_session_started,
            self._f_backlog,
        ) = named
        self._per_shard: tuple[_Family, ...] = (
            *named,
            *(_Family(c) for c in self.shard_stat_counters.values()),
            _Family(self.shard_dead_letters),
        )
        self._per_worker: tuple[_Family, ...] = tuple(
            _Family(m)
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
        self._families = {id(f.metric): f for f in (*self._per_shard, *self._per_worker)}

        self._plan: dict[int, list[int]] = {}
        self._worker_of: dict[int, int] = {}
        self._state: dict[int, str] = {}
        self._state_counts: Tally[str] = Tally()
        # CPU arrives as the worker process's cumulative total; a new generation starts at 0.
        self._cpu_seen: dict[int, tuple[int, float]] = {}
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
        """Declare which shards run on which worker. Series of shards and workers that left
        the plan are removed; every planned shard starts as ``idle`` until its worker reports."""
        self._plan = {w: list(s) for w, s in workers.items()}
        self._worker_of = {shard: w for w, shards in workers.items() for shard in shards}
        self.shards_planned.set(shards_planned)
        self.workers_planned.set(len(workers))

        def shard_kept(values: LabelTuple) -> bool:
            shard, worker = int(values[0]), int(values[1])
            return self._worker_of.get(shard) == worker

        def worker_kept(values: LabelTuple) -> bool:
            return int(values[0]) in self._plan

        for family in self._per_shard:
            family.drop(shard_kept)
        for family in self._per_worker:
            family.drop(worker_kept)
        for shard in [s for s in self._state if s not in self._worker_of]:
            self._forget_state(shard)

        for worker, shards in self._plan.items():
            w = str(worker)
            self._worker_series(w)
            self.worker_shards.labels(w).set(len(shards))
            for shard in shards:
                s = str(shard)
                self._f_guilds.touch(s, w)
                self.shard_guilds.labels(s, w)
                self._f_backlog.touch(s, w)
                self.shard_backlog.labels(s, w)
                for metric in (*self.shard_stat_counters.values(), self.shard_dead_letters):
                    self._inc(metric, 0, s, w)
                if shard not in self._state:
                    self._set_state(shard, worker, "idle")
                else:
                    # Re-assert the current state: its series may have been dropped above.
                    self._set_state(shard, worker, self._state[shard])

    def _worker_series(self, w: str) -> None:
        """Create a worker's series at zero so rate() and alerts see them before the first
        increment (Prometheus cannot tell "never happened" from "not exported")."""
        for family, values in (
            (self._fam(self.worker_up_gauge), (w,)),
            (self._fam(self.worker_rss), (w,)),
            (self._fam(self.worker_cpu), (w,)),
            (self._fam(self.worker_shards), (w,)),
            (self._fam(self.worker_handler_errors), (w,)),
            (self._fam(self.worker_bad_payloads), (w,)),
            (self._fam(self.worker_latency), (w,)),
        ):
            family.touch(*values)
            family.metric.labels(*values)
        for reason in (*sorted(RESTART_REASONS), OTHER):
            self._fam(self.worker_restarts).touch(w, reason)
            self.worker_restarts.labels(w, reason)
        for form in BYTE_FORMS:
            self._fam(self.worker_bytes).touch(w, form)
            self.worker_bytes.labels(w, form)
        for fatal in ("true", "false"):
            self._fam(self.worker_shard_stops).touch(w, fatal)
            self.worker_shard_stops.labels(w, fatal)

    def _fam(self, metric: Counter | Gauge | Histogram | Enum) -> _Family:
        return self._families[id(metric)]

    def worker_up(self, worker_id: int, up: bool) -> None:
        w = str(worker_id)
        self._fam(self.worker_up_gauge).touch(w)
        self.worker_up_gauge.labels(w).set(1 if up else 0)
        if not up:
            # The process is gone: its shards have no connection, whatever they last said,
            # and their last latency would be a lie. A shard stopped for good stays stopped.
            for shard in self._plan.get(worker_id, []):
                self._set_state(shard, worker_id, state_without_worker(self._state.get(shard)))
                self._drop_latency(shard)
            self.worker_rss.labels(w).set(0)

    def worker_restarted(self, worker_id: int, reason: str) -> None:
        w = str(worker_id)
        label = fold(reason, RESTART_REASONS)
        self._fam(self.worker_restarts).touch(w, label)
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

    def rolling_restart_outcome(self, failed: bool) -> None:
        self.rolling_failed_gauge.set(1 if failed else 0)
        if failed:
            self.rolling_failures.inc()

    def on_worker_message(self, worker_id: int, msg: ipc.ToSupervisor) -> None:
        """Apply one IPC report. Messages that carry no metric (pong, identify requests,
        suspended) are ignored, so the supervisor can pass every message through."""
        self.ipc_messages_received.inc()
        if isinstance(msg, ipc.Stats):
            self._on_stats(worker_id, msg)
        elif isinstance(msg, ipc.SessionStarted):
            self._on_session_started(worker_id, msg)
        elif isinstance(msg, ipc.Reconnecting):
            self._on_reconnecting(worker_id, msg)
        elif isinstance(msg, ipc.ShardStopped):
            self._on_stopped(worker_id, msg)
        elif isinstance(msg, ipc.Started):
            self._cpu_seen[worker_id] = (msg.gen, 0.0)
        elif isinstance(msg, ipc.RestStats):
            self.rest.on_stats(worker_id, msg)
        elif isinstance(msg, ipc.DeadLettered):
            self._inc(self.shard_dead_letters, 1, str(msg.shard_id), str(worker_id))
        implied = state_after(msg)
        if implied is not None:
            self._set_state(implied[0], worker_id, implied[1])

    def _on_stats(self, worker_id: int, msg: ipc.Stats) -> None:
        w = str(worker_id)
        compressed = inflated = handler_errors = bad_payloads = 0
        events: Tally[str] = Tally()
        latency_hist = self.worker_latency.labels(w)
        for st in msg.shards:
            s = str(st.shard_id)
            for latency in st.latencies_s:
                latency_hist.observe(latency)
            if st.latencies_s:
                self._f_latency.touch(s, w)
                self.shard_latency.labels(s, w).set(st.latencies_s[-1])
            for name, count in st.events.items():
                if count > 0:
                    events[event_label(name)] += count
            compressed += max(0, st.bytes_compressed)
            inflated += max(0, st.bytes_inflated)
            handler_errors += max(0, st.handler_errors)
            bad_payloads += max(0, st.bad_payloads)
            self._f_backlog.touch(s, w)
            self.shard_backlog.labels(s, w).set(max(0, st.backlog))
            self._f_guilds.touch(s, w)
            self.shard_guilds.labels(s, w).set(max(0, st.guilds))
            if st.last_event_at is not None:
                self._f_last_event.touch(s, w)
                self.shard_last_event.labels(s, w).set(st.last_event_at)
            for field, metric in self.shard_stat_counters.items():
                self._inc(metric, getattr(st, field), s, w)
        events_family = self._fam(self.worker_events)
        for label, count in events.items():
            events_family.touch(w, label)
            self.worker_events.labels(w, label).inc(count)
        self._inc(self.worker_bytes, compressed, w, "compressed")
        self._inc(self.worker_bytes, inflated, w, "inflated")
        self._inc(self.worker_handler_errors, handler_errors, w)
        self._inc(self.worker_bad_payloads, bad_payloads, w)
        if msg.rss_bytes > 0:
            self._fam(self.worker_rss).touch(w)
            self.worker_rss.labels(w).set(msg.rss_bytes)
        self._on_cpu(worker_id, msg.gen, msg.cpu_seconds)
        self._fam(self.worker_loop_lag).touch(w)
        self.worker_loop_lag.labels(w).set(max(0.0, msg.loop_lag_s))

    def _inc(self, metric: Counter, amount: int, *labels: str) -> None:
        self._fam(metric).touch(*labels)
        child = metric.labels(*labels)
        if amount > 0:
            child.inc(amount)

    def _on_cpu(self, worker_id: int, gen: int, cpu_seconds: float) -> None:
        """Turn each process's cumulative CPU into one counter that never goes backwards
        across restarts, so ``rate()`` stays meaningful."""
        if cpu_seconds <= 0:
            return
        last_gen, last = self._cpu_seen.get(worker_id, (gen, 0.0))
        if last_gen != gen or cpu_seconds < last:
            last = 0.0
        self._inc_float(self.worker_cpu, cpu_seconds - last, str(worker_id))
        self._cpu_seen[worker_id] = (gen, cpu_seconds)

    def _inc_float(self, metric: Counter, amount: float, *labels: str) -> None:
        self._fam(metric).touch(*labels)
        if amount > 0:
            metric.labels(*labels).inc(amount)

    def _on_session_started(self, worker_id: int, msg: ipc.SessionStarted) -> None:
        s, w = str(msg.shard_id), str(worker_id)
        kind = fold(msg.kind, SESSION_KINDS)
        self._f_sessions.touch(s, w, kind)
        self.shard_sessions.labels(s, w, kind).inc()
        self._f_guilds.touch(s, w)
        self.shard_guilds.labels(s, w).set(max(0, msg.guilds))
        self._f_session_started.touch(s, w)
        self.shard_session_started.labels(s, w).set(msg.at)

    def _on_reconnecting(self, worker_id: int, msg: ipc.Reconnecting) -> None:
        s, w = str(msg.shard_id), str(worker_id)
        reason = fold(msg.reason, RECONNECT_REASONS)
        self._f_reconnects.touch(s, w, reason)
        self.shard_reconnects.labels(s, w, reason).inc()
        if msg.close_code is not None:
            self._inc(self.worker_close_codes, 1, w, close_code_label(msg.close_code))

    def _on_stopped(self, worker_id: int, msg: ipc.ShardStopped) -> None:
        w = str(worker_id)
        self._inc(self.worker_shard_stops, 1, w, "true" if msg.fatal else "false")
        if msg.close_code is not None:
            self._inc(self.worker_close_codes, 1, w, close_code_label(msg.close_code))
        self._drop_latency(msg.shard_id)

    def _drop_latency(self, shard_id: int) -> None:
        s = str(shard_id)
        self._f_latency.drop(lambda values: values[0] != s)

    # ------------------------------------------------------------------ state bookkeeping

    def _set_state(self, shard_id: int, worker_id: int, state: str) -> None:
        if state not in SHARD_STATES:
            log.warning("ignoring unknown shard state %r for shard %d", state[:40], shard_id)
            return
        s, w = str(shard_id), str(worker_id)
        self._f_state.touch(s, w)
        self.shard_state.labels(s, w).state(state)
        previous = self._state.get(shard_id)
        if previous != state:
            if previous is not None:
                self._state_counts[previous] -= 1
                self.shards_by_state.labels(previous).set(self._state_counts[previous])
            self._state_counts[state] += 1
            self.shards_by_state.labels(state).set(self._state_counts[state])
            self._state[shard_id] = state
            self.shards_connected.set(self._state_counts["connected"])

    def _forget_state(self, shard_id: int) -> None:
        previous = self._state.pop(shard_id, None)
        if previous is not None:
            self._state_counts[previous] -= 1
            self.shards_by_state.labels(previous).set(self._state_counts[previous])
            self.shards_connected.set(self._state_counts["connected"])

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

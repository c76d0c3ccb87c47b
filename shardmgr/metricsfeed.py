"""What the workers' IPC reports and the plan do to the metrics of ``shardmgr.metrics``:
per-shard and per-worker series created with the plan and dropped when it changes, each
shard's state (exactly one of the Enum's states, and the fleet-wide counts), and the
counters fed from ``ipc.Stats`` (cumulative CPU made monotonic across restarts)."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import Counter

from shardmgr.metriclabels import (
    BYTE_FORMS,
    OTHER,
    RECONNECT_REASONS,
    RESTART_REASONS,
    SESSION_KINDS,
    LabelTuple,
    close_code_label,
    event_label,
    fold,
)
from shardmgr.shardtable import SHARD_STATES, state_after, state_without_worker
from workers import ipc

if TYPE_CHECKING:
    from shardmgr.metrics import Metrics

log = logging.getLogger(__name__)


class MetricsFeed:
    """The bookkeeping half of ``Metrics`` (which forwards to it); call it from the
    supervisor's event loop."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._plan: dict[int, list[int]] = {}
        self._worker_of: dict[int, int] = {}
        self._state: dict[int, str] = {}
        self._state_counts: Tally[str] = Tally()
        # CPU arrives as the worker process's cumulative total; a new generation starts at 0.
        self._cpu_seen: dict[int, tuple[int, float]] = {}

    def set_plan(self, shards_planned: int, workers: dict[int, list[int]]) -> None:
        """Declare which shards run on which worker. Series of shards and workers that left
        the plan are removed; every planned shard starts as ``idle`` until its worker reports."""
        self._plan = {w: list(s) for w, s in workers.items()}
        self._worker_of = {shard: w for w, shards in workers.items() for shard in shards}
        self._m.shards_planned.set(shards_planned)
        self._m.workers_planned.set(len(workers))

        def shard_kept(values: LabelTuple) -> bool:
            shard, worker = int(values[0]), int(values[1])
            return self._worker_of.get(shard) == worker

        def worker_kept(values: LabelTuple) -> bool:
            return int(values[0]) in self._plan

        for family in self._m.per_shard:
            family.drop(shard_kept)
        for family in self._m.per_worker:
            family.drop(worker_kept)
        for shard in [s for s in self._state if s not in self._worker_of]:
            self._forget_state(shard)

        for worker, shards in self._plan.items():
            w = str(worker)
            self._worker_series(w)
            self._m.worker_shards.labels(w).set(len(shards))
            for shard in shards:
                s = str(shard)
                self._m.f_guilds.touch(s, w)
                self._m.shard_guilds.labels(s, w)
                self._m.f_backlog.touch(s, w)
                self._m.shard_backlog.labels(s, w)
                for metric in (*self._m.shard_stat_counters.values(), self._m.shard_dead_letters):
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
            (self._m.family(self._m.worker_up_gauge), (w,)),
            (self._m.family(self._m.worker_rss), (w,)),
            (self._m.family(self._m.worker_cpu), (w,)),
            (self._m.family(self._m.worker_shards), (w,)),
            (self._m.family(self._m.worker_handler_errors), (w,)),
            (self._m.family(self._m.worker_bad_payloads), (w,)),
            (self._m.family(self._m.worker_latency), (w,)),
        ):
            family.touch(*values)
            family.metric.labels(*values)
        for reason in (*sorted(RESTART_REASONS), OTHER):
            self._m.family(self._m.worker_restarts).touch(w, reason)
            self._m.worker_restarts.labels(w, reason)
        for form in BYTE_FORMS:
            self._m.family(self._m.worker_bytes).touch(w, form)
            self._m.worker_bytes.labels(w, form)
        for fatal in ("true", "false"):
            self._m.family(self._m.worker_shard_stops).touch(w, fatal)
            self._m.worker_shard_stops.labels(w, fatal)

    def worker_up(self, worker_id: int, up: bool) -> None:
        w = str(worker_id)
        self._m.family(self._m.worker_up_gauge).touch(w)
        self._m.worker_up_gauge.labels(w).set(1 if up else 0)
        if not up:
            # The process is gone: its shards have no connection, whatever they last said,
            # and their last latency would be a lie. A shard stopped for good stays stopped.
            for shard in self._plan.get(worker_id, []):
                self._set_state(shard, worker_id, state_without_worker(self._state.get(shard)))
                self._drop_latency(shard)
            self._m.worker_rss.labels(w).set(0)

    def on_worker_message(self, worker_id: int, msg: ipc.ToSupervisor) -> None:
        """Apply one IPC report. Messages that carry no metric (pong, identify requests,
        suspended) are ignored, so the supervisor can pass every message through."""
        self._m.ipc_messages_received.inc()
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
            self._m.rest.on_stats(worker_id, msg)
        elif isinstance(msg, ipc.DeadLettered):
            self._inc(self._m.shard_dead_letters, 1, str(msg.shard_id), str(worker_id))
        implied = state_after(msg)
        if implied is not None:
            self._set_state(implied[0], worker_id, implied[1])

    def _on_stats(self, worker_id: int, msg: ipc.Stats) -> None:
        w = str(worker_id)
        compressed = inflated = handler_errors = bad_payloads = 0
        events: Tally[str] = Tally()
        latency_hist = self._m.worker_latency.labels(w)
        for st in msg.shards:
            s = str(st.shard_id)
            for latency in st.latencies_s:
                latency_hist.observe(latency)
            if st.latencies_s:
                self._m.f_latency.touch(s, w)
                self._m.shard_latency.labels(s, w).set(st.latencies_s[-1])
            for name, count in st.events.items():
                if count > 0:
                    events[event_label(name)] += count
            compressed += max(0, st.bytes_compressed)
            inflated += max(0, st.bytes_inflated)
            handler_errors += max(0, st.handler_errors)
            bad_payloads += max(0, st.bad_payloads)
            self._m.f_backlog.touch(s, w)
            self._m.shard_backlog.labels(s, w).set(max(0, st.backlog))
            self._m.f_guilds.touch(s, w)
            self._m.shard_guilds.labels(s, w).set(max(0, st.guilds))
            if st.last_event_at is not None:
                self._m.f_last_event.touch(s, w)
                self._m.shard_last_event.labels(s, w).set(st.last_event_at)
            for field, metric in self._m.shard_stat_counters.items():
                self._inc(metric, getattr(st, field), s, w)
        events_family = self._m.family(self._m.worker_events)
        for label, count in events.items():
            events_family.touch(w, label)
            self._m.worker_events.labels(w, label).inc(count)
        self._inc(self._m.worker_bytes, compressed, w, "compressed")
        self._inc(self._m.worker_bytes, inflated, w, "inflated")
        self._inc(self._m.worker_handler_errors, handler_errors, w)
        self._inc(self._m.worker_bad_payloads, bad_payloads, w)
        if msg.rss_bytes > 0:
            self._m.family(self._m.worker_rss).touch(w)
            self._m.worker_rss.labels(w).set(msg.rss_bytes)
        self._on_cpu(worker_id, msg.gen, msg.cpu_seconds)
        self._m.family(self._m.worker_loop_lag).touch(w)
        self._m.worker_loop_lag.labels(w).set(max(0.0, msg.loop_lag_s))

    def _inc(self, metric: Counter, amount: int, *labels: str) -> None:
        self._m.family(metric).touch(*labels)
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
        self._inc_float(self._m.worker_cpu, cpu_seconds - last, str(worker_id))
        self._cpu_seen[worker_id] = (gen, cpu_seconds)

    def _inc_float(self, metric: Counter, amount: float, *labels: str) -> None:
        self._m.family(metric).touch(*labels)
        if amount > 0:
            metric.labels(*labels).inc(amount)

    def _on_session_started(self, worker_id: int, msg: ipc.SessionStarted) -> None:
        s, w = str(msg.shard_id), str(worker_id)
        kind = fold(msg.kind, SESSION_KINDS)
        self._m.f_sessions.touch(s, w, kind)
        self._m.shard_sessions.labels(s, w, kind).inc()
        self._m.f_guilds.touch(s, w)
        self._m.shard_guilds.labels(s, w).set(max(0, msg.guilds))
        self._m.f_session_started.touch(s, w)
        self._m.shard_session_started.labels(s, w).set(msg.at)

    def _on_reconnecting(self, worker_id: int, msg: ipc.Reconnecting) -> None:
        s, w = str(msg.shard_id), str(worker_id)
        reason = fold(msg.reason, RECONNECT_REASONS)
        self._m.f_reconnects.touch(s, w, reason)
        self._m.shard_reconnects.labels(s, w, reason).inc()
        if msg.close_code is not None:
            self._inc(self._m.worker_close_codes, 1, w, close_code_label(msg.close_code))

    def _on_stopped(self, worker_id: int, msg: ipc.ShardStopped) -> None:
        w = str(worker_id)
        self._inc(self._m.worker_shard_stops, 1, w, "true" if msg.fatal else "false")
        if msg.close_code is not None:
            self._inc(self._m.worker_close_codes, 1, w, close_code_label(msg.close_code))
        self._drop_latency(msg.shard_id)

    def _drop_latency(self, shard_id: int) -> None:
        s = str(shard_id)
        self._m.f_latency.drop(lambda values: values[0] != s)

    def _set_state(self, shard_id: int, worker_id: int, state: str) -> None:
        if state not in SHARD_STATES:
            log.warning("ignoring unknown shard state %r for shard %d", state[:40], shard_id)
            return
        s, w = str(shard_id), str(worker_id)
        self._m.f_state.touch(s, w)
        self._m.shard_state.labels(s, w).state(state)
        previous = self._state.get(shard_id)
        if previous != state:
            if previous is not None:
                self._state_counts[previous] -= 1
                self._m.shards_by_state.labels(previous).set(self._state_counts[previous])
            self._state_counts[state] += 1
            self._m.shards_by_state.labels(state).set(self._state_counts[state])
            self._state[shard_id] = state
            self._m.shards_connected.set(self._state_counts["connected"])

    def _forget_state(self, shard_id: int) -> None:
        previous = self._state.pop(shard_id, None)
        if previous is not None:
            self._state_counts[previous] -= 1
            self._m.shards_by_state.labels(previous).set(self._state_counts[previous])
            self._m.shards_connected.set(self._state_counts["connected"])

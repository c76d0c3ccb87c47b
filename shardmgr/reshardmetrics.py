"""The ``shardmgr_reshard_*`` metrics (issue 19), registered on the supervisor's registry by
``shardmgr.metrics.Metrics`` and fed by ``shardmgr.resharder``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shardmgr.reshard import Outcome, Phase


class ReshardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.phase = Gauge(
            "shardmgr_reshard_phase",
            "Reshard phase: 0 idle, 1 new shard set starting beside the old, 2 switching",
            registry=registry,
        )
        self.progress = Gauge(
            "shardmgr_reshard_progress",
            "Share of the new shard set that is ready (0 to 1; 0 when no reshard runs)",
            registry=registry,
        )
        self.target_shards = Gauge(
            "shardmgr_reshard_target_shards",
            "Shard count the running reshard moves to (0 when none runs)",
            registry=registry,
        )
        self.last_duration = Gauge(
            "shardmgr_reshard_last_duration_seconds",
            "How long the last finished reshard took, start to switch (or to giving up)",
            registry=registry,
        )
        self.outcomes = Counter(
            "shardmgr_reshard",
            "Reshards by outcome: succeeded, failed (old plan kept), refused (never started)",
            ["outcome"],
            registry=registry,
        )
        for outcome in Outcome:
            self.outcomes.labels(outcome.value)
        self.duplicates = Counter(
            "shardmgr_reshard_duplicate_events",
            "Held events the new set delivered at the switch that the old set had delivered "
            "too (at-least-once around the switch)",
            registry=registry,
        )

    def started(self, target: int) -> None:
        self.phase.set(Phase.STARTING)
        self.progress.set(0)
        self.target_shards.set(target)

    def finished(self, outcome: Outcome, duration_s: float | None) -> None:
        self.outcomes.labels(outcome.value).inc()
        if duration_s is not None:
            self.last_duration.set(duration_s)
        self.phase.set(Phase.IDLE)
        self.progress.set(0)
        self.target_shards.set(0)


def reshard_metrics(metrics: object) -> ReshardMetrics:
    """The ``shardmgr_reshard_*`` family of ``shardmgr.metrics.Metrics``; a sink without it
    (a test double) gets a private one."""
    found = getattr(metrics, "reshard", None)
    return found if isinstance(found, ReshardMetrics) else ReshardMetrics(CollectorRegistry())

"""Benchmark 6: supervisor overhead.

Events per second through the whole system (fake gateway -> worker -> no-op handler) with
the supervisor attached, against the same shards in a worker run alone (the benchmark plays
the supervisor's IPC part: start, identify grants, nothing else). The fake gateway is asked
for more traffic than this machine can carry, so the figure is what the system sustains; the
two set-ups alternate and the medians are compared. Target: with supervisor >= 0.95 x alone.

Worker counts only move when a stats report arrives (about once a second), so each rate is
taken between two reports: (events at the last report - events at the first) divided by the
time between the newest events those reports name, in both set-ups alike.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench import fakestats
from bench.bareworker import BareWorker
from bench.procs import Cluster, cluster, wait_for
from bench.results import Row
from bench.system import start_system

# Dispatches per second per shard asked of the fake gateway: above what it can send on this
# machine, yet bounded so that a tick's burst stays small.
OFFERED_PER_SHARD = 5_000.0


def report_point(metrics_text: str) -> tuple[float, float]:
    """(wall time of the newest event any shard reported, total events) from /metrics: the
    same two numbers a worker's stats report carries, so both set-ups are timed alike."""
    total = newest = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("shardmgr_worker_events_total{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shardmgr_shard_last_event_timestamp_seconds{"):
            newest = max(newest, float(line.rsplit(" ", 1)[1]))
    return newest, total


def rate_between_reports(timeline: list[tuple[float, float]]) -> float:
    points = sorted(timeline)
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        raise RuntimeError(f"too few stats reports to measure a rate ({len(points)})")
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0)


def _with_supervisor(c: Cluster, shards: int, window: float) -> float:
    system = start_system(
        c, shards=shards, workers=1, max_concurrency=shards, heartbeat_interval=5.0
    )
    try:
        # The flood starts once every shard is connected, in both set-ups alike.
        system.wait_ready(timeout=60)
        fakestats.set_event_rate(system.api, OFFERED_PER_SHARD)
        wait_for(
            "event counts in /metrics",
            lambda: report_point(system.metrics())[1] or None,
            timeout=30,
        )
        timeline: list[tuple[float, float]] = []
        end = time.monotonic() + window
        while time.monotonic() < end:
            point = report_point(system.metrics())
            if not timeline or point != timeline[-1]:
                timeline.append(point)
            time.sleep(0.5)  # reports come about once a second; keep polling cheap
        return rate_between_reports(timeline)
    finally:
        c.stop(system.supervisor)
        c.stop(system.fake)


async def _alone_async(c: Cluster, api: str, shards: int, window: float) -> float:
    w = BareWorker(
        worker_id=0,
        gateway_url=fakestats.gateway_ws_url(api),
        num_shards=shards,
        shard_ids=range(shards),
    )
    await w.start(str(c.dir / "alone.log"))
    try:
        await asyncio.wait_for(w.all_connected.wait(), 60)
        await asyncio.to_thread(fakestats.set_event_rate, api, OFFERED_PER_SHARD)
        await asyncio.wait_for(w.events_flowing.wait(), 30)
        start = len(w.timeline)
        await asyncio.sleep(window)
        return rate_between_reports([(t, float(n)) for t, n in w.timeline[start:]])
    finally:
        await w.stop()


def _alone(c: Cluster, shards: int, window: float) -> float:
    fake, api = c.fake_gateway(
        shards=shards, max_concurrency=shards, identify_window=0.05, heartbeat_interval=5.0
    )
    try:
        return asyncio.run(_alone_async(c, api, shards, window))
    finally:
        c.stop(fake)


def run(quick: bool) -> list[Row]:
    shards = 4 if quick else 16
    rounds, window = (1, 3.0) if quick else (5, 6.0)
    sup: list[float] = []
    alone: list[float] = []
    with cluster() as c:
        for _ in range(rounds):
            sup.append(_with_supervisor(c, shards, window))
            alone.append(_alone(c, shards, window))
    s, a = statistics.median(sup), statistics.median(alone)
    return [
        Row(
            "overhead.events_with_supervisor_vs_alone",
            s,
            "events/s",
            baseline=a,
            direction=">=",
            threshold=0.95,
            note=f"{shards} shards in one worker, {OFFERED_PER_SHARD * shards:.0f} events/s "
            f"offered; median of {rounds} alternating rounds of {window:.0f}s "
            f"(with: {', '.join(f'{x:.0f}' for x in sup)}; "
            f"alone: {', '.join(f'{x:.0f}' for x in alone)})",
        ),
    ]

"""Benchmark 6: supervisor overhead.

Events per second through the whole system (fake gateway -> worker -> no-op handler) with
the supervisor attached, against the same shards in a worker run alone (the benchmark plays
the supervisor's IPC part: start, identify grants, nothing else). The fake gateway floods
as fast as it can, so the figure is what the machine sustains; the two set-ups alternate and
the medians are compared. Target: with supervisor >= 0.95 x alone.
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

FLOOD_RATE = 1_000_000.0  # events/s asked of the fake gateway: more than it can send


def events_total(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("shardmgr_worker_events_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _with_supervisor(c: Cluster, shards: int, window: float) -> float:
    system = start_system(c, shards=shards, workers=1, heartbeat_interval=5.0,
                          event_rate=FLOOD_RATE)
    try:
        system.wait_ready(timeout=60)
        # Reports are batched about once a second: measure between two report boundaries.
        first = wait_for("event counts in /metrics",
                         lambda: events_total(system.metrics()) or None, timeout=30)
        t0 = time.monotonic()
        wait_for("the next report", lambda: (events_total(system.metrics()) > first) or None,
                 timeout=10)
        n0, t0 = events_total(system.metrics()), time.monotonic()
        time.sleep(window)
        n1 = events_total(system.metrics())
        t1 = time.monotonic()
        return (n1 - n0) / (t1 - t0)
    finally:
        c.stop(system.supervisor)
        c.stop(system.fake)


async def _alone_async(c: Cluster, api: str, shards: int, window: float) -> float:
    w = BareWorker(worker_id=0, gateway_url=fakestats.gateway_ws_url(api), num_shards=shards,
                   shard_ids=range(shards))
    await w.start(str(c.dir / "alone.log"))
    try:
        await asyncio.wait_for(w.all_connected.wait(), 60)
        await asyncio.wait_for(w.events_flowing.wait(), 30)
        n0, t0 = w.event_total, time.monotonic()
        await asyncio.sleep(window)
        n1, t1 = w.event_total, time.monotonic()
        return (n1 - n0) / (t1 - t0)
    finally:
        await w.stop()


def _alone(c: Cluster, shards: int, window: float) -> float:
    fake, api = c.fake_gateway(shards=shards, max_concurrency=shards, identify_window=0.05,
                               heartbeat_interval=5.0, event_rate=FLOOD_RATE)
    try:
        return asyncio.run(_alone_async(c, api, shards, window))
    finally:
        c.stop(fake)


def run(quick: bool) -> list[Row]:
    shards = 4 if quick else 16
    rounds, window = (1, 2.0) if quick else (3, 5.0)
    sup: list[float] = []
    alone: list[float] = []
    with cluster() as c:
        for _ in range(rounds):
            sup.append(_with_supervisor(c, shards, window))
            alone.append(_alone(c, shards, window))
    s, a = statistics.median(sup), statistics.median(alone)
    return [
        Row("overhead.events_with_supervisor_vs_alone", s, "events/s", baseline=a,
            direction=">=", threshold=0.95,
            note=f"{shards} shards in one worker, fake gateway flooding; median of {rounds} "
                 f"alternating rounds of {window:.0f}s"),
    ]

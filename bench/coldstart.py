"""Benchmark 2: cold start against the identify floor.

The fake gateway recommends 64 shards with max_concurrency 4 and a 0.5 s identify window, so
no client can have every shard identified sooner than ceil(64 / 4) x 0.5 s = 8 s after the
first identify. ``shardmgr start --shards auto`` runs until ``/readyz`` answers 200; its time
from the first identify to ready is compared with that floor, and the process start-up (spawn
to first identify) is reported on its own line. Identify-concurrency violations counted by
the fake gateway must be zero.
"""

from __future__ import annotations

import math
import time

from bench import fakestats
from bench.procs import cluster, http_get, wait_for
from bench.results import Row
from bench.system import start_system


def run(quick: bool) -> list[Row]:
    shards, concurrency, window = (16, 4, 0.25) if quick else (64, 4, 0.5)
    workers = 2 if quick else 4
    floor = math.ceil(shards / concurrency) * window
    with cluster() as c:
        system = start_system(
            c,
            shards=shards,
            workers=workers,
            max_concurrency=concurrency,
            identify_window=window,
            heartbeat_interval=2.0,
            wait_http=False,
        )
        first_identify: list[float] = []

        def ready() -> bool | None:
            system.check_alive()
            if not first_identify and fakestats.identifies(fakestats.stats(system.api)) > 0:
                first_identify.append(time.monotonic())
            try:
                status, _ = http_get(f"{system.http}/readyz", timeout=2)
            except OSError:
                return None  # not listening yet
            return True if status == 200 else None

        wait_for("/readyz to answer 200", ready, timeout=floor * 4 + 60, interval=0.01)
        t_ready = time.monotonic()
        stats = fakestats.stats(system.api)
    t_first = first_identify[0] if first_identify else system.spawned_at
    cold = t_ready - t_first
    startup = t_first - system.spawned_at
    violations = fakestats.identify_violations(stats)
    identifies = fakestats.identifies(stats)
    return [
        Row(
            "coldstart.ready_vs_identify_floor",
            cold,
            "s",
            baseline=floor,
            direction="<=",
            threshold=1.05,
            note=f"{shards} shards, max_concurrency {concurrency}, window {window}s: first "
            f"identify to /readyz 200; floor = ceil({shards}/{concurrency}) x {window}s",
        ),
        Row(
            "coldstart.process_startup",
            startup,
            "s",
            note="spawn of `shardmgr start` to the first identify seen by the fake gateway",
        ),
        Row(
            "coldstart.identify_violations",
            float(violations),
            "count",
            direction="==",
            threshold=0.0,
            on_value=True,
            note=f"{identifies} identifies for {shards} shards",
        ),
    ]

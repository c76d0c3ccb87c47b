"""Benchmark 4: scale.

1,000 shards in 8 workers on this 2-core machine against the fake gateway (heartbeat interval
5 s, light traffic). Once every shard is connected: supervisor CPU (% of one core) and RSS,
worker CPU per 100 shards, and IPC messages per second into the supervisor, first at the
light rate and then at 10x the rate. The supervisor never touches gateway traffic, so its CPU
and the IPC rate must not grow with the event rate (ratio 10x / 1x close to 1); the
supervisor must stay below 5% of one core.
"""

from __future__ import annotations

import time

from bench import fakestats
from bench.procs import CpuSample, cluster, rss_bytes
from bench.results import Row
from bench.system import System, start_system


def ipc_total(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("shardmgr_ipc_messages_received_total "):
            return float(line.rsplit(" ", 1)[1])
    raise ValueError("/metrics has no shardmgr_ipc_messages_received_total")


def _window(system: System, pids: list[int], seconds: float) -> tuple[float, float, float]:
    """(supervisor CPU %, summed worker CPU %, IPC messages/s) over ``seconds``."""
    sup = system.supervisor.pid
    m0 = ipc_total(system.metrics())
    sample = CpuSample([sup, *pids]).start()
    time.sleep(seconds)
    cpu = sample.percent()
    m1 = ipc_total(system.metrics())
    elapsed = time.monotonic() - sample.t0
    return cpu[sup], sum(cpu[p] for p in pids), (m1 - m0) / elapsed


def run(quick: bool) -> list[Row]:
    shards, workers = (50, 2) if quick else (1000, 8)
    # Dispatches per second per shard: 100 events/s over 1,000 shards is light traffic.
    light = 0.5 if quick else 0.1
    window = 2.0 if quick else 10.0
    with cluster() as c:
        # 25 buckets (a divisor of 1,000, so `--shards auto` keeps exactly 1,000) and the
        # cold-start benchmark's 0.5 s window: 40 windows, 20 s of identifies. The budget is
        # raised so that a violation, if any, is counted without starving the run.
        system = start_system(
            c,
            shards=shards,
            workers=workers,
            max_concurrency=25,
            identify_window=0.5,
            heartbeat_interval=5.0,
            event_rate=light,
            fake_extra=["--session-start-total", "100000"],
        )
        connect_s = system.wait_ready(timeout=60 if quick else 240)
        pids = system.worker_pids()
        # Start-up bursts (READY, GUILD_CREATE, first reports) are over before measuring.
        time.sleep(1.0 if quick else 3.0)
        sup1, work1, ipc1 = _window(system, pids, window)
        sup_rss = rss_bytes(system.supervisor.pid)
        fakestats.set_event_rate(system.api, light * 10)
        time.sleep(1.0)
        sup10, work10, ipc10 = _window(system, pids, window)
        system.check_alive()
        violations = fakestats.identify_violations(fakestats.stats(system.api))
        connected = system.status()["supervisor"]["connected_shards"]
        planned = system.status()["supervisor"]["planned_shards"]
        if planned != shards:
            raise RuntimeError(f"the supervisor planned {planned} shards, not {shards}")
    per100 = 100.0 / shards
    rows = [
        Row(
            "scale.shards_connected",
            float(connected),
            "shards",
            baseline=float(shards),
            direction=">=",
            threshold=1.0,
            note=f"{shards} shards in {workers} workers, all connected in {connect_s:.1f}s",
        ),
        Row(
            "scale.identify_violations",
            float(violations),
            "count",
            direction="==",
            threshold=0.0,
            on_value=True,
            note="identifies the fake gateway saw inside their bucket's window",
        ),
        Row(
            "scale.supervisor_cpu",
            sup1,
            "% of a core",
            direction="<",
            threshold=5.0,
            on_value=True,
            note=f"at {light * shards:.0f} events/s",
        ),
        Row(
            "scale.supervisor_cpu_at_10x_traffic",
            sup10,
            "% of a core",
            baseline=sup1,
            direction="<",
            threshold=5.0,
            on_value=True,
            note=f"at {light * shards * 10:.0f} events/s; ratio = vs the light rate",
        ),
        Row("scale.supervisor_rss", sup_rss / 2**20, "MiB"),
        Row(
            "scale.worker_cpu_per_100_shards",
            work1 * per100,
            "% of a core",
            note=f"at {light * shards:.0f} events/s",
        ),
        Row(
            "scale.worker_cpu_per_100_shards_at_10x",
            work10 * per100,
            "% of a core",
            baseline=work1 * per100,
            note="ratio = vs the light rate",
        ),
        Row("scale.ipc_messages_per_s", ipc1, "msgs/s", note=f"at {light * shards:.0f} events/s"),
        Row(
            "scale.ipc_messages_per_s_at_10x_traffic",
            ipc10,
            "msgs/s",
            baseline=ipc1,
            direction="<=",
            threshold=1.25,
            note="IPC must not grow with the event rate (ratio = 10x traffic vs light)",
        ),
    ]
    return rows

"""Benchmark 3: memory per idle shard.

256 shards in 4 workers connect (READY and their GUILD_CREATEs), then sit idle with only
heartbeats. Per shard = (sum of the workers' RSS - RSS of the same number of workers run with
zero shards) / 256. Beside it, the floor measured in the same run: the RSS of 256 bare
decompression contexts that each inflated the same GUILD_CREATE. Done for zlib-stream (the
default; target <= 2x the floor and <= 100 KB) and for zstd-stream (reported: a zstd context
grows towards its window, which is why zlib-stream is the default).
"""

from __future__ import annotations

import asyncio

from bench import corpus, fakestats, memfloor
from bench.bareworker import BareWorker
from bench.procs import cluster, rss_bytes
from bench.results import Row
from bench.system import start_system

KB = 1000.0
KIB = 1024.0


async def _zero_shard_rss(api: str, workers: int, compress: str, log_dir: str) -> int:
    """Sum of RSS of ``workers`` worker processes started with no shards at all."""
    bare = [
        BareWorker(worker_id=i, gateway_url=api, num_shards=1, shard_ids=[], compress=compress)
        for i in range(workers)
    ]
    try:
        for i, w in enumerate(bare):
            await w.start(f"{log_dir}/bare-{i}.log")
        await asyncio.wait_for(asyncio.gather(*(w.started.wait() for w in bare)), 60)
        # Let each finish its start-up work (handler load, runtime set-up) before sampling.
        samples: list[int] = []
        for _ in range(20):
            samples.append(sum(rss_bytes(w.pid) for w in bare))
            if len(samples) >= 3 and abs(samples[-1] - samples[-3]) <= 0.005 * samples[-1]:
                break
            await asyncio.sleep(0.25)
        return samples[-1]
    finally:
        for w in bare:
            await w.stop()


def _measure(
    compress: str, shards: int, workers: int, floor_contexts: int, guild_timeout: float
) -> tuple[float, float, float, int]:
    """(per-shard bytes, floor bytes per context, zero-shard RSS, bytes the floor inflated)."""
    with cluster() as c:
        system = start_system(
            c,
            shards=shards,
            workers=workers,
            max_concurrency=16,
            identify_window=0.05,
            heartbeat_interval=1.0,
            compress=compress,
        )
        system.wait_ready(timeout=guild_timeout)
        fakestats.wait_guilds_sent(system.api, shards, timeout=guild_timeout)
        pids = system.worker_pids()
        if len(pids) != workers:
            raise RuntimeError(f"expected {workers} worker pids in /status, got {pids}")
        loaded = system.wait_rss_settled(pids)
        system.check_alive()
        zero = asyncio.run(_zero_shard_rss(system.api, workers, compress, str(c.dir)))
    startup = fakestats.shard_zero_startup(shards)
    floor = memfloor.measure(
        "zlib" if compress == "zlib-stream" else "zstd", floor_contexts, startup
    )
    return (loaded - zero) / shards, floor, float(zero), sum(len(m) for m in startup)


def run(quick: bool) -> list[Row]:
    shards, workers = (16, 2) if quick else (256, 4)
    rows: list[Row] = []
    per, floor, zero, inflated = _measure("zlib-stream", shards, workers, shards, 120)
    rows.append(
        Row(
            "memory.zlib.per_idle_shard_vs_floor",
            per / KIB,
            "KiB",
            baseline=floor / KIB,
            direction="<=",
            threshold=2.0,
            note=f"{shards} idle shards in {workers} workers (zero-shard workers: "
            f"{zero / 2**20:.0f} MiB in all); floor = a bare zlib context that inflated "
            f"shard 0's READY and GUILD_CREATEs ({inflated // 1000} KB)",
        )
    )
    rows.append(
        Row(
            "memory.zlib.per_idle_shard_kb",
            per / KB,
            "KB",
            direction="<=",
            threshold=100.0,
            on_value=True,
        )
    )
    if quick:
        return rows
    # zstd contexts are large: the floor is measured on fewer contexts (a per-context figure).
    zper, zfloor, _, _ = _measure("zstd-stream", shards, workers, 32, 120)
    rows.append(
        Row(
            "memory.zstd.per_idle_shard_vs_floor",
            zper / KIB,
            "KiB",
            baseline=zfloor / KIB,
            note="zstd-stream after the same start-up traffic (information)",
        )
    )
    # What a context costs once the stream has passed more than its window (a busy shard):
    # zlib stays at its 32 KiB window, zstd grows to its (2 MiB) window.
    busy, _, _ = corpus.generate_messages(3000)
    zlib_busy = memfloor.measure("zlib", 16, busy)
    zstd_busy = memfloor.measure("zstd", 16, busy)
    mib = sum(len(m) for m in busy) / 2**20
    rows.append(
        Row(
            "memory.zlib.context_after_busy_stream",
            zlib_busy / KIB,
            "KiB",
            note=f"one zlib context after inflating {mib:.1f} MiB",
        )
    )
    rows.append(
        Row(
            "memory.zstd.context_after_busy_stream",
            zstd_busy / KIB,
            "KiB",
            baseline=zlib_busy / KIB,
            note=f"one zstd context after inflating {mib:.1f} MiB; ratio = vs zlib",
        )
    )
    return rows

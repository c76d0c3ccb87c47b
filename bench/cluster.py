"""Cluster calls: a ``call_all`` round trip over 8 workers (median, p99), and what routing
a gateway command through the supervisor to another worker's shard costs against sending
it on a shard of the caller's own worker (median of each, and the difference).

8 shards in 8 workers against the fake; the timing runs inside worker 0's handler
(``bench.cluster_bot``), triggered by a ``!bench`` message through ``/_fake/dispatch``.
A command's time is until it is written to the shard's socket (its owner answers then)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.procs import cluster, http_json, http_post, wait_for
from bench.results import Row
from bench.system import start_system

SHARDS = 8
INTENTS = "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT"


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc


def run(quick: bool) -> list[Row]:
    rounds = 20 if quick else 50
    with cluster() as c:
        out = c.dir / "cluster_bench.json"
        system = start_system(
            c, shards=SHARDS, workers=SHARDS, handler="bench.cluster_bot:Bot",
            sup_extra=("--intents", INTENTS), env={"BENCH_CLUSTER_OUT": str(out)},
        )  # fmt: skip
        system.wait_ready(timeout=90)
        guild = http_json(f"{system.api}/_fake/guilds?num_shards={SHARDS}&shard_id=0")[0]
        status, body = http_post(
            f"{system.api}/_fake/dispatch",
            {"t": "MESSAGE_CREATE", "content": f"!bench {rounds}", "guild_id": guild},
        )
        if status != 200:
            raise RuntimeError(f"/_fake/dispatch answered {status}: {body[:200]!r}")
        doc = wait_for("the handler's timings", lambda: _read(out), timeout=120, interval=0.1)
    call_all = [s * 1000 for s in doc["call_all"]]
    local = statistics.median(doc["local"]) * 1000
    remote = statistics.median(doc["remote"]) * 1000
    note = f"{rounds} rounds in worker 0; {doc['workers']} workers answered each call_all"
    return [
        Row("cluster.call_all_8_workers_median", statistics.median(call_all), "ms", note=note),
        Row("cluster.call_all_8_workers_p99", _p99(call_all), "ms"),
        Row("cluster.command_local_shard_median", local, "ms",
            note="send_packet op 3 until written, shard of the caller's worker"),
        Row("cluster.command_other_worker_median", remote, "ms",
            note="the same through the supervisor to worker 1's shard"),
        Row("cluster.command_routing_overhead", remote - local, "ms"),
    ]  # fmt: skip

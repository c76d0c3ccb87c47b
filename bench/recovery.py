"""Benchmark 5: recovery from a killed worker.

16 shards in one worker, events flowing into the ``jsonl`` handler. ``kill -9`` the worker and
time how long until ``/status`` shows all 16 shards connected again by RESUME in the new
process; count the identifies the fake gateway saw meanwhile (must be 0) and the events lost
(must be 0): per shard, a sequence number missing below the highest one the handler
received. The first restart after a stable run has no backoff, so the target (< 2 s beyond
the restart backoff) is < 2 s in all.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

from bench import fakestats
from bench.procs import cluster, wait_for
from bench.results import Row
from bench.system import System, start_system


def _read_jsonl(path: Path) -> dict[int, set[int]]:
    """Seqs each shard's handler finished writing (a line cut by the kill is skipped)."""
    seen: dict[int, set[int]] = defaultdict(set)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return seen
    for line in data.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc.get("seq"), int):
            seen[int(doc["shard"])].add(doc["seq"])
    return seen


def _lost(seen: dict[int, set[int]]) -> int:
    return sum(max(seqs) - len(seqs) for seqs in seen.values() if seqs)


def _resumed_all(system: System, old_pid: int, shards: int) -> bool | None:
    system.check_alive()
    st = system.status()
    pids = [w.get("pid") for w in st["workers"]]
    if not pids or not pids[0] or pids[0] == old_pid:
        return None
    views = st["shards"]
    if len(views) != shards:
        return None
    ok = all(v["state"] == "connected" and v.get("session_kind") == "resume" for v in views)
    return True if ok else None


def run(quick: bool) -> list[Row]:
    shards = 16
    rate = 20.0 if quick else 50.0  # dispatches/s per shard
    with cluster() as c:
        jsonl = c.dir / "events.jsonl"
        system = start_system(
            c,
            shards=shards,
            workers=1,
            heartbeat_interval=1.0,
            event_rate=rate,
            handler="shardmgr.handlers:jsonl",
            env={"SHARDMGR_JSONL": str(jsonl)},
        )
        system.wait_ready(timeout=60)
        # Events flowing on every shard before the kill, so a loss would show as a gap.
        wait_for(
            "events on every shard",
            lambda: True if len(_read_jsonl(jsonl)) == shards else None,
            timeout=30,
            interval=0.1,
        )
        before = fakestats.stats(system.api)
        old_pid = system.worker_pids()[0]
        t_kill = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        wait_for(
            "all 16 shards resumed in the new worker",
            lambda: _resumed_all(system, old_pid, shards),
            timeout=60,
            interval=0.02,
        )
        recovered = time.monotonic() - t_kill
        # Let the new process deliver past the point of the kill, then compare.
        at_kill = {s: max(v) for s, v in _read_jsonl(jsonl).items()}

        def delivered_past_kill() -> bool | None:
            seen = _read_jsonl(jsonl)
            return True if all(max(seen[s]) > at_kill.get(s, 0) for s in range(shards)) else None

        wait_for(
            "events delivered after the restart", delivered_past_kill, timeout=30, interval=0.1
        )
        after = fakestats.stats(system.api)
        seen = _read_jsonl(jsonl)
    identifies = fakestats.identifies(after) - fakestats.identifies(before)
    lost = _lost(seen)
    delivered = sum(len(v) for v in seen.values())
    return [
        Row(
            "recovery.resume_all_after_kill9",
            recovered,
            "s",
            direction="<",
            threshold=2.0,
            on_value=True,
            note=f"{shards} shards, one worker, {rate * shards:.0f} events/s; the first "
            "restart after a stable run has no backoff, so the target is 2 s in all",
        ),
        Row(
            "recovery.identifies_spent",
            float(identifies),
            "count",
            direction="==",
            threshold=0.0,
            on_value=True,
        ),
        Row(
            "recovery.events_lost",
            float(lost),
            "count",
            direction="==",
            threshold=0.0,
            on_value=True,
            note=f"{delivered} distinct events delivered across the kill",
        ),
    ]

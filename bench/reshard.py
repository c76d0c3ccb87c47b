"""Benchmark: growing without downtime (issue 19).

64 shards at max_concurrency 16 under event traffic; Discord's guild limit per shard is
lowered so that one shard, made to re-identify, is closed with 4011, and the
recommendation becomes 128. Measured: for each shard of the new count (its guilds, whoever
delivers them), the longest wait between two events reaching the handler, from the 4011 to
the end; the shards of the old shard closed with 4011 are left out (nobody serves them until
the new set runs, either way). Once with the background reshard, once with today's
stop-and-start (``--no-reshard-in-background``). The fake's identify window is 1 s, so
identifying 128 shards takes 8 windows: the stop-and-start outage.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bench import fakestats
from bench.procs import cluster, http_json, http_post, wait_for
from bench.results import Row
from bench.system import System, start_system

STEADY_S = 10.0


def _events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def longest_gaps(
    events: list[dict[str, Any]],
    *,
    since: float,
    until: float,
    new_total: int,
    old_total: int,
    skip: Collection[int] = (),
) -> tuple[float, float]:
    """(the longest wait for any event, the longest wait on one new shard's guilds) in
    [since, until], leaving out the guilds of the old shards in ``skip``. Every new shard
    with guilds (some have none) had events before ``since``: one that is down for the
    whole window shows up as the whole window."""
    per_shard: dict[int, list[float]] = {}
    every: list[float] = []
    for e in events:
        guild = e.get("guild")
        if guild is None or (int(guild) >> 22) % old_total in skip:
            continue
        marks = per_shard.setdefault((int(guild) >> 22) % new_total, [])
        if since <= e["at"] <= until:
            marks.append(e["at"])
            every.append(e["at"])

    def longest(times: list[float]) -> float:
        return max(b - a for a, b in itertools.pairwise([since, *sorted(times), until]))

    return longest(every), max(longest(t) for t in per_shard.values())


def _scenario(
    *, old: int, new: int, mc: int, rate: float, background: bool, steady_s: float = STEADY_S
) -> tuple[float, float, float, int, int, float]:
    """(longest gap, longest gap on one shard's guilds, seconds to the new plan, identifies,
    identify violations, the longest gap on one shard's guilds in a steady window)."""
    with cluster() as c:
        jsonl = c.dir / "events.jsonl"
        system: System = start_system(
            c,
            shards=old,
            workers=old // 16 or 1,
            max_concurrency=mc,
            identify_window=1.0,
            event_rate=rate,
            handler="bench.timed_handler:handler",
            sup_extra=["--reshard-in-background" if background else "--no-reshard-in-background"],
            env={"SHARDMGR_JSONL": str(jsonl)},
        )
        system.wait_ready(timeout=180)
        at_old = http_json(f"{system.api}/_fake/guilds?num_shards={old}")["per_shard"]
        at_new = http_json(f"{system.api}/_fake/guilds?num_shards={new}")["per_shard"]
        victim = max(range(old), key=lambda i: at_old[i])
        limit = max(at_new)
        if at_old[victim] <= limit:
            raise RuntimeError(f"no old shard holds more than {limit} guilds: {at_old}")
        http_post(f"{system.api}/_fake/recommend", {"shards": new, "max_guilds_per_shard": limit})
        steady = time.time()
        time.sleep(steady_s)  # traffic on every shard before the 4011: the noise floor
        before = fakestats.stats(system.api)
        since = time.time()
        t0 = time.monotonic()
        http_post(
            f"{system.api}/_fake/faults",
            {"kind": "invalid_session", "shard_id": victim, "resumable": False},
        )

        def switched() -> bool | None:
            system.check_alive()
            st = system.status()
            sup = st["supervisor"]
            done = (
                sup["total_shards"] == new
                and len(st["shards"]) == new
                and all(s["state"] == "connected" for s in st["shards"])
                and sup.get("reshard", {}).get("phase", "idle") == "idle"
            )
            return True if done else None

        wait_for(f"{new} shards connected", switched, timeout=300, interval=0.1)
        took = time.monotonic() - t0
        time.sleep(2.0)  # the new set delivers on its own for a while
        until = time.time()
        after = fakestats.stats(system.api)
        events = _events(jsonl)
    gap, shard_gap = longest_gaps(
        events, since=since, until=until, new_total=new, old_total=old, skip={victim}
    )
    # the same measure while nothing happens: random traffic leaves gaps of its own
    _, floor = longest_gaps(
        events,
        since=steady,
        until=steady + steady_s,
        new_total=new,
        old_total=old,
        skip={victim},
    )
    identifies = fakestats.identifies(after) - fakestats.identifies(before)
    return gap, shard_gap, took, identifies, fakestats.identify_violations(after), floor


def run(quick: bool) -> list[Row]:
    # --quick (inside `make test`): a small reshard, without the stop-and-start baseline
    old, new, mc, rate = (4, 8, 4, 10.0) if quick else (64, 128, 16, 10.0)
    steady_s = 2.0 if quick else STEADY_S
    gap, shard_gap, took, identifies, violations, floor = _scenario(
        old=old, new=new, mc=mc, rate=rate, background=True, steady_s=steady_s
    )
    base: tuple[float | None, ...] = (None, None, None, None)
    if not quick:
        b_gap, b_shard_gap, b_took, _, _, b_floor = _scenario(
            old=old, new=new, mc=mc, rate=rate, background=False
        )
        base = (b_gap, b_shard_gap, b_took, b_shard_gap - b_floor)
    base_gap, base_shard_gap, base_took, base_beyond = base
    what = (
        f"{old} -> {new} shards, max_concurrency {mc}, 1 s identify window, "
        f"{rate:g} events/s per shard"
    )
    return [
        Row(
            "reshard.longest_gap_one_shard",
            shard_gap,
            "s",
            baseline=base_shard_gap,
            note=f"{what}; baseline: stop-and-start (--no-reshard-in-background)",
        ),
        Row(
            "reshard.gap_beyond_steady",
            shard_gap - floor,
            "s",
            baseline=base_beyond,
            direction="<",
            threshold=2.0,
            on_value=True,
            note="the longest gap on one shard's guilds minus the steady window's: what the "
            "reshard adds to the traffic's own gaps",
        ),
        Row(
            "reshard.steady_gap_one_shard",
            floor,
            "s",
            note=f"the same measure over {steady_s:g} s before the 4011: the traffic's own gaps",
        ),
        Row(
            "reshard.longest_gap_any_event",
            gap,
            "s",
            baseline=base_gap,
            note="the longest time no event at all reached the handler",
        ),
        Row(
            "reshard.time_to_new_plan",
            took,
            "s",
            baseline=base_took,
            note="from the 4011 to every new shard connected and the old set gone",
        ),
        Row(
            "reshard.identifies",
            float(identifies),
            "count",
            direction="==",
            threshold=float(new),
            on_value=True,
            note="the new set only: no old shard spent one",
        ),
        Row(
            "reshard.identify_violations",
            float(violations),
            "count",
            direction="==",
            threshold=0.0,
            on_value=True,
        ),
    ]

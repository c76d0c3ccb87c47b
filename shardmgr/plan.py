"""Which shards this host runs, and how they are grouped into worker processes (pure functions)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Collection
from typing import Final

import msgspec

from shardmgr.errors import UserError

# Past this many shards per process one core is the bottleneck (inflate + decode of every
# event), and a worker crash costs more shards; discord-hybrid-sharding uses a similar bound.
MAX_DEFAULT_GROUP: Final = 16


class Plan(msgspec.Struct, frozen=True):
    total_shards: int
    max_concurrency: int
    groups: list[list[int]]  # worker id = index

    @property
    def shard_ids(self) -> list[int]:
        return [s for group in self.groups for s in group]

    def describe(self, resuming: Collection[int] = (), budget: str | None = None) -> str:
        """The plan for the operator; ``budget`` (``budget_shortfall``) follows the first line."""
        ids = self.shard_ids
        workers = plural(len(self.groups), "worker")
        lines = [
            f"plan: {len(ids)} of {self.total_shards} shards in {workers}, "
            f"max_concurrency {self.max_concurrency} ({start_summary(self, resuming)})"
        ]
        if budget is not None:
            lines.append(f"  {budget}")
        lines += [f"  worker {wid}: shards {_ranges(g)}" for wid, g in enumerate(self.groups)]
        return "\n".join(lines)


def _ranges(ids: list[int]) -> str:
    parts: list[str] = []
    start = prev = ids[0]
    for sid in [*ids[1:], None]:
        if sid is not None and sid == prev + 1:
            prev = sid
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if sid is not None:
            start = prev = sid
    return ",".join(parts)


def auto_shard_count(recommended: int, max_concurrency: int) -> int:
    """Round up to a multiple of ``max_concurrency`` so every identify window is full."""
    mc = max(1, max_concurrency)
    return max(1, math.ceil(recommended / mc) * mc)


def identify_windows(shard_ids: list[int], max_concurrency: int) -> int:
    """Windows needed to identify these shards: the fullest bucket decides."""
    counts: dict[int, int] = {}
    for sid in shard_ids:
        counts[sid % max_concurrency] = counts.get(sid % max_concurrency, 0) + 1
    return max(counts.values(), default=0)


def host_slice(total_shards: int, host_index: int, host_count: int) -> list[int]:
    """An even, contiguous split of ``range(total_shards)``: the first ``total % count`` hosts
    take one extra shard."""
    if host_count < 1 or not 0 <= host_index < host_count:
        raise ValueError(f"host {host_index} of {host_count} is not a valid host")
    base, extra = divmod(total_shards, host_count)
    start = host_index * base + min(host_index, extra)
    size = base + (1 if host_index < extra else 0)
    return list(range(start, start + size))


def group_size(n_shards: int, cpu_count: int) -> int:
    return max(1, min(MAX_DEFAULT_GROUP, math.ceil(n_shards / max(1, cpu_count))))


def group_shards(
    shard_ids: list[int],
    *,
    shards_per_worker: int | None = None,
    workers: int | None = None,
    cpu_count: int | None = None,
) -> list[list[int]]:
    """Contiguous groups; ``workers`` spreads the shards as evenly as possible."""
    n = len(shard_ids)
    if n == 0:
        return []
    if workers is not None:
        w = min(workers, n)
        base, extra = divmod(n, w)
        groups: list[list[int]] = []
        pos = 0
        for i in range(w):
            size = base + (1 if i < extra else 0)
            groups.append(shard_ids[pos : pos + size])
            pos += size
        return groups
    k = shards_per_worker or group_size(n, cpu_count or os.cpu_count() or 1)
    return [shard_ids[i : i + k] for i in range(0, n, k)]


def make_plan(
    *,
    shards: str,
    recommended: int,
    max_concurrency: int,
    total_shards: int | None = None,
    shard_ids: tuple[int, int] | None = None,
    host: tuple[int, int] | None = None,
    shards_per_worker: int | None = None,
    workers: int | None = None,
    cpu_count: int | None = None,
) -> Plan:
    """``total_shards`` (with ``shard_ids`` or ``host``) runs one slice of a bigger bot;
    otherwise ``shards`` ("auto" or N) is the whole bot on this host."""
    if total_shards is not None:
        total = total_shards
        if shard_ids is not None:
            first, last = shard_ids
            if last >= total:
                raise UserError(f"--shard-ids {first}-{last} is outside --total-shards {total}")
            ids = list(range(first, last + 1))
        elif host is not None:
            ids = host_slice(total, host[0], host[1])
        else:
            ids = list(range(total))
    else:
        total = auto_shard_count(recommended, max_concurrency) if shards == "auto" else int(shards)
        ids = list(range(total))
    if not ids:
        raise UserError("this host's slice of the shards is empty: fewer shards than hosts")
    groups = group_shards(
        ids, shards_per_worker=shards_per_worker, workers=workers, cpu_count=cpu_count
    )
    return Plan(total_shards=total, max_concurrency=max_concurrency, groups=groups)


def replan_total(old_total: int, recommended: int, max_concurrency: int) -> int:
    """The shard count after a 4011 (sharding required): Discord's new recommendation, and
    never fewer than one more window's worth, so a stale recommendation cannot re-plan to
    the same count."""
    return max(
        auto_shard_count(recommended, max_concurrency),
        auto_shard_count(old_total + 1, max_concurrency),
    )


def plural(n: int, noun: str) -> str:
    """``1 worker``, ``4 workers``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def start_summary(plan: Plan, resuming: Collection[int] = ()) -> str:
    """What starting ``plan`` takes, when the shards in ``resuming`` have sessions to resume."""
    ids = plan.shard_ids
    to_identify = [sid for sid in ids if sid not in resuming]
    windows = plural(identify_windows(to_identify, plan.max_concurrency), "identify window")
    if len(to_identify) == len(ids):
        return f"{windows} to start"
    resumed = len(ids) - len(to_identify)
    if not to_identify:
        every = "all " if resumed > 1 else ""
        return f"resuming {every}{plural(resumed, 'shard')}, no identify"
    return f"resuming {plural(resumed, 'shard')}; {windows} for the other {len(to_identify)}"


def budget_shortfall(
    to_identify: int, remaining: int, reserve: int, reset_after_s: float, now: float
) -> str | None:
    """When the shards to identify need more session starts than ``remaining`` minus the
    ``reserve`` kept for restarts: how many identify now, how many wait, and until when
    (``now`` and the answer's clock time are wall-clock, UTC); None when all fit."""
    can = max(0, remaining - reserve)
    if to_identify <= can:
        return None
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now + reset_after_s))
    return (
        f"session start budget: {remaining} left, {reserve} kept in reserve for restarts, "
        f"so {can} of {plural(to_identify, 'shard')} identify now and {to_identify - can} "
        f"wait until it refills at {until} (in {_duration(reset_after_s)})"
    )


def _duration(seconds: float) -> str:
    minutes = max(0, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"

"""Which shards this host runs, and how they are grouped into worker processes (pure functions)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Final

import msgspec

from shardmgr.errors import UserError
from shardmgr.settingvalues import ranges_text

# Past this many shards per process one core is the bottleneck (inflate + decode of every
# event), and a worker crash costs more shards; discord-hybrid-sharding uses a similar bound.
MAX_DEFAULT_GROUP: Final = 16
# Measured resident memory (issue 22, against the fake gateway): a worker process with its
# interpreter, uvloop, aiohttp, msgspec and a handler loaded holds about 41 MiB before its
# first shard; each shard adds about 66 KiB (socket and inflate buffers, session, backlog).
# The plan line multiplies them out so an operator can size a container before starting.
WORKER_RSS_BYTES: Final = 41 * 1024 * 1024
SHARD_RSS_BYTES: Final = 66 * 1024
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP: Final = Path("/proc/self/cgroup")


class Plan(msgspec.Struct, frozen=True):
    total_shards: int
    max_concurrency: int
    groups: list[list[int]]  # worker id = index

    @property
    def shard_ids(self) -> list[int]:
        return [s for group in self.groups for s in group]

    @property
    def memory_bytes(self) -> int:
        """Roughly what the workers will hold, from the measured per-worker and per-shard
        figures."""
        return len(self.groups) * WORKER_RSS_BYTES + len(self.shard_ids) * SHARD_RSS_BYTES

    def describe(self, resuming: Collection[int] = (), budget: str | None = None) -> str:
        """The plan for the operator; ``budget`` (``budget_shortfall``) follows the first line."""
        ids = self.shard_ids
        workers = plural(len(self.groups), "worker")
        mib = math.ceil(self.memory_bytes / (1024 * 1024))
        lines = [
            f"plan: {len(ids)} of {self.total_shards} shards in {workers}, "
            f"max_concurrency {self.max_concurrency} ({start_summary(self, resuming)}), "
            f"about {mib} MiB of memory"
        ]
        if budget is not None:
            lines.append(f"  {budget}")
        lines += [f"  worker {wid}: shards {ranges_text(g)}" for wid, g in enumerate(self.groups)]
        return "\n".join(lines)


def usable_cpus(
    affinity: Callable[[int], set[int]] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> int:
    """The CPUs this process may really use: its affinity mask (``taskset``, cpusets), capped
    by a cgroup v2 ``cpu.max`` quota on its cgroup or any ancestor (a container's CPU
    limit). ``os.cpu_count()`` is the node's cores, which in a limited pod plans far too many
    workers."""
    get_affinity = affinity or getattr(os, "sched_getaffinity", None)
    try:
        cpus = len(get_affinity(0)) if get_affinity is not None else os.cpu_count() or 1
    except OSError:
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def _cgroup_cpu_quota(root: Path, proc_self_cgroup: Path) -> int | None:
    """The tightest ``cpu.max`` between this process's cgroup and the root, rounded up
    (a 1.5-CPU quota can keep two workers busy part of the time); None when unlimited."""
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    # cgroup v2 has the single line ``0::/path``; v1 lines name controllers, not handled.
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        return None
    best: int | None = None
    current = root / rel.lstrip("/")
    for directory in [current, *current.parents]:
        if not directory.is_relative_to(root):
            break
        try:
            quota_s, _, period_s = (directory / "cpu.max").read_text().strip().partition(" ")
        except OSError:
            continue
        if quota_s == "max" or not period_s:
            continue
        try:
            limit = math.ceil(int(quota_s) / int(period_s))
        except (ValueError, ZeroDivisionError):
            continue
        best = limit if best is None else min(best, limit)
    return best


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
    k = shards_per_worker or group_size(n, cpu_count or usable_cpus())
    return [shard_ids[i : i + k] for i in range(0, n, k)]


def make_plan(
    *,
    shards: str,
    recommended: int,
    max_concurrency: int,
    total_shards: int | None = None,
    slice_ids: Sequence[int] | None = None,
    host: tuple[int, int] | None = None,
    shards_per_worker: int | None = None,
    workers: int | None = None,
    cpu_count: int | None = None,
) -> Plan:
    """``total_shards`` (with ``slice_ids``, this host's shard ids, or ``host``) runs one
    slice of a bigger bot; otherwise ``shards`` ("auto" or N) is the whole bot on this
    host."""
    if total_shards is not None:
        total = total_shards
        if slice_ids is not None:
            ids = sorted(set(slice_ids))
            if ids and ids[-1] >= total:
                raise UserError(f"--shard-ids {ranges_text(ids)} is outside --total-shards {total}")
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

"""Resharding without downtime (issue 19), the decisions: when to reshard, to how many
shards, whether the budget can pay for it, and what a new shard set's progress calls for
(wait, switch over, give up). Pure functions; ``shardmgr.resharder`` carries them out."""

from __future__ import annotations

import enum
import math
from typing import Final

import msgspec

from shardmgr.plan import auto_shard_count, plural, replan_total
from workers.protocol import CloseCode


class Phase(enum.IntEnum):
    """Where a reshard is (the ``shardmgr_reshard_phase`` gauge shows the number)."""

    IDLE = 0
    # the new set's workers run beside the old ones, identifying, holding their events
    STARTING = 1
    # every new shard is ready: the new set delivers, the old one closes
    SWITCHING = 2


class Trigger(enum.StrEnum):
    """Why a reshard was asked for."""

    SHARDING_REQUIRED = "sharding_required"  # a shard closed with 4011
    RECOMMENDATION = "recommendation"  # the periodic /gateway/bot check
    GUILDS = "guilds"  # the largest shard passed reshard_at_guilds
    OPERATOR = "operator"  # POST /reshard, `shardmgr reshard`


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the new set did not become ready: the old plan keeps running
    REFUSED = "refused"  # never started (budget, fixed --total-shards)


class Verdict(enum.Enum):
    WAIT = enum.auto()
    SWITCH = enum.auto()
    ABANDON = enum.auto()


class StoppedShard(msgspec.Struct, frozen=True):
    shard_id: int
    reason: str | None
    close_code: int | None


class NewSet(msgspec.Struct, frozen=True, kw_only=True):
    """What the supervisor knows of the new shard set, for ``decide``."""

    total: int
    connected: int
    stopped: list[StoppedShard] = []
    # worker processes of the new set that died and were restarted
    crashes: int = 0
    crash_limit: int = 5
    elapsed_s: float = 0.0
    timeout_s: float = 900.0


class Step(msgspec.Struct, frozen=True):
    verdict: Verdict
    reason: str | None = None


WAIT: Final = Step(Verdict.WAIT)


def decide(new: NewSet) -> Step:
    """What a new shard set's progress calls for. Any shard stopped for good (4011 again,
    the budget refused its identify, a fatal close) or a crash loop gives up: the old plan
    keeps running. Every shard connected (READY): switch."""
    for shard in new.stopped:
        if shard.close_code == CloseCode.SHARDING_REQUIRED:
            return Step(
                Verdict.ABANDON,
                f"new shard {shard.shard_id} closed with 4011 too: {new.total} shards are "
                "not enough",
            )
    if new.stopped:
        first = new.stopped[0]
        code = "" if first.close_code is None else f" (close {first.close_code})"
        return Step(
            Verdict.ABANDON,
            f"new shard {first.shard_id} stopped: {first.reason or 'unknown reason'}{code}",
        )
    if new.crashes >= new.crash_limit:
        return Step(Verdict.ABANDON, f"the new set's workers crashed {new.crashes} times")
    if new.connected >= new.total:
        return Step(Verdict.SWITCH)
    if new.elapsed_s > new.timeout_s:
        return Step(
            Verdict.ABANDON,
            f"only {new.connected} of {new.total} new shards ready after "
            f"{new.elapsed_s:.0f} s (reshard_timeout_s {new.timeout_s:g})",
        )
    return WAIT


def target_shards(
    trigger: Trigger,
    *,
    current: int,
    recommended: int,
    max_concurrency: int,
    largest_guilds: int = 0,
    at_guilds: int = 2000,
) -> int | None:
    """The shard count to reshard to, rounded up to whole identify windows as at start;
    None when there is nothing to do (never fewer shards than run now)."""
    if trigger is Trigger.SHARDING_REQUIRED:
        return replan_total(current, recommended, max_concurrency)
    wanted = auto_shard_count(recommended, max_concurrency)
    if trigger is Trigger.GUILDS and largest_guilds > at_guilds:
        # enough shards that the largest one would be back under the threshold
        needed = math.ceil(current * largest_guilds / max(1, at_guilds))
        wanted = max(wanted, replan_total(current, needed, max_concurrency))
    return wanted if wanted > current else None


def budget_refusal(new_shards: int, remaining: int, reserve: int) -> str | None:
    """Why the session start budget cannot pay for identifying the new set while keeping
    the reserve for restarts; None when it can."""
    can = remaining - reserve
    if new_shards <= can:
        return None
    return (
        f"session start budget: {remaining} left and {reserve} kept in reserve cannot pay "
        f"for {plural(new_shards, 'new shard')}; resharding refused until it refills"
    )


def slice_refusal(total_shards: int) -> str:
    """Why a host running a slice (``--total-shards``) does not reshard on its own."""
    return (
        f"resharding refused: this host runs a slice of --total-shards {total_shards}, and a "
        "new shard count changes every host's slice. Procedure: start the new count on new "
        "hosts (or processes) beside the old ones with the new --total-shards and slices "
        "and a shared --identify-limiter redis://, wait until `shardmgr status` shows them "
        "all connected, then stop the old hosts"
    )

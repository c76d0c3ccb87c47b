"""Identify coordination: who may send an IDENTIFY, and when. The interface and the one-host
limiter are exported here; ``broker`` answers workers' permit requests; ``redis`` (the
limiter shared by several hosts, which needs the redis extra) is imported on demand, with
its Lua in ``redis_scripts``; ``redisconn`` is the Redis plumbing it shares with the
stream sink; ``redisrestart`` tells when Redis restarted (its ``run_id``)."""

from shardmgr.identify.limiter import (
    MIN_BUDGET_WAIT_S,
    BudgetExhausted,
    BudgetWait,
    IdentifyLimiter,
    RefreshLimits,
    SessionStartLimit,
)
from shardmgr.identify.local import LocalIdentifyLimiter

__all__ = [
    "MIN_BUDGET_WAIT_S",
    "BudgetExhausted",
    "BudgetWait",
    "IdentifyLimiter",
    "LocalIdentifyLimiter",
    "RefreshLimits",
    "SessionStartLimit",
]

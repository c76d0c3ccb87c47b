"""Identify coordination: the limiter interface, the one-host limiter, and the broker that
answers workers' permit requests. The Redis limiter (``shardmgr.identify.redis``) and its
plumbing (``shardmgr.identify.redisconn``) are imported on demand: they need the redis extra."""

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

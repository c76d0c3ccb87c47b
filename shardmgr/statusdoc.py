"""The ``/status`` document: the supervisor, its workers and every planned shard, plus the
sections other parts register (e.g. shard ownership)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from workers.ipc import ShardState

if TYPE_CHECKING:
    from shardmgr.supervisor import Supervisor


def status_document(sup: Supervisor, started_wall: float) -> dict[str, Any]:
    """``started_wall`` is the supervisor's start on the wall clock (for ``uptime_s``)."""
    now = time.time()
    return {
        "supervisor": {
            "pid": os.getpid(),
            "uptime_s": round(now - started_wall, 3),
            "total_shards": sup.plan.total_shards,
            "planned_shards": len(sup.shards),
            "max_concurrency": sup.plan.max_concurrency,
            "connected_shards": sup.shards.count(ShardState.CONNECTED.value),
            "healthy": sup.healthy(),
            "ready": sup.ready(),
            "stopping": sup.stopping,
            "rolling_restart": sup.rolling,
            "rolling": sup.roll.as_dict(),
            "stopped_for_good": sup.fatal.explain() or None,
            "replans": sup.replans + sup.reshard.succeeded,
            "reshard": sup.reshard.as_dict(),
            "budget_exhausted": sup.exhausted,
            "session_start_remaining": sup.limiter.remaining,
            "identify_limiter_available": sup.limiter.available,
            "identify_queue": sup.limiter.queue_depth,
            "identifies_granted": sup.identifies_granted,
            "stale_messages": sup.stale_messages,
        },
        "workers": [slot.as_dict() for slot in sup.slots.values()],
        "shards": [
            view.as_dict(now, sup.sessions.get(view.shard_id)) for view in sup.shards.views()
        ],
        **{name: section() for name, section in sup.status_sections.items()},
    }

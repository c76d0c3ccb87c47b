"""A worker's start configuration from the supervisor's settings, in one place."""

from __future__ import annotations

from typing import Any, Final

from shardmgr.config import Settings
from workers import ipc

# What each worker gets of its own, and what is derived from settings of another shape.
_PER_WORKER: Final = frozenset(
    {"worker_id", "token", "gateway_url", "num_shards", "shards", "hold_delivery"}
)
_DERIVED: Final = frozenset(
    {
        "handler",
        "intents",
        "log_level",
        "check_heartbeat_acks",
        "identify_properties",
        "presence",
        "sink_url",
        "loop_stall_s",
    }
)
# Every other Settings and WorkerConfig field of one name means one thing and passes through
# as it is, so a setting added to both reaches the workers with no line here.
SAME_NAMED_FIELDS: Final = tuple(
    sorted(
        (set(ipc.WorkerConfig.__struct_fields__) & set(Settings.__struct_fields__))
        - _PER_WORKER
        - _DERIVED
    )
)


def worker_config(
    settings: Settings,
    *,
    worker_id: int,
    token: str,
    gateway_url: str,
    num_shards: int,
    shards: list[ipc.ShardAssignment],
    hold_delivery: bool = False,
) -> ipc.WorkerConfig:
    """A worker's start configuration: the same-named settings, plus what is derived."""
    options: dict[str, Any] = {name: getattr(settings, name) for name in SAME_NAMED_FIELDS}
    derived: dict[str, Any] = {
        "handler": settings.handler_target,
        "log_level": settings.log_level.upper(),
        "intents": settings.intents_mask,
        "check_heartbeat_acks": settings.heartbeat_ack_check,
        "identify_properties": settings.identify_properties,
        "presence": settings.presence,
        "sink_url": settings.sink,
        "loop_stall_s": settings.loop_stall,
    }
    assert derived.keys() == _DERIVED
    return ipc.WorkerConfig(
        worker_id=worker_id,
        token=token,
        gateway_url=gateway_url,
        num_shards=num_shards,
        shards=shards,
        hold_delivery=hold_delivery,
        **options,
        **derived,
    )

"""The checks behind ``shardmgr.config.validate``: every mistake in the settings that can be
caught before touching the network, each raised as one ``UserError`` line naming the setting
the way the user gave it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from shardmgr.errors import UserError
from shardmgr.identify.redisconn import safe_url
from shardmgr.presence import ACTIVITY_TYPES, PRESENCE_STATUSES
from shardmgr.settingvalues import REDIS_SCHEMES
from workers.codec import COMPRESS_MODES

if TYPE_CHECKING:
    from shardmgr.config import Settings

# How a setting is named in a message: its flag, variable or TOML key.
Where = Callable[[str], str]

MIN_MESSAGE_BYTES: Final = 1024 * 1024
LARGE_THRESHOLD_RANGE: Final = (50, 250)
REST_INVALID_MAX: Final = 9500


def check_settings(s: Settings, where: Where, *, default_handler: str) -> None:
    """Raise ``UserError`` for the first mistake, one line naming the setting as the user
    gave it (``where``: flag, variable or TOML key). ``default_handler`` is the handler
    when none is given (a sink replaces it)."""
    if s.shards != "auto":
        try:
            n = int(s.shards)
        except ValueError:
            raise UserError(
                f"{where('shards')} must be 'auto' or a number, not {s.shards!r}"
            ) from None
        if n < 1:
            raise UserError(f"{where('shards')} must be at least 1")
    if s.total_shards is not None and s.total_shards < 1:
        raise UserError(f"{where('total_shards')} must be at least 1")
    _validate_slice(s, where)
    for name in ("shards_per_worker", "workers", "handler_backlog", "handler_batch"):
        value = getattr(s, name)
        if value is not None and value < 1:
            raise UserError(f"{where(name)} must be at least 1, not {value}")
    if s.shards_per_worker is not None and s.workers is not None:
        raise UserError(f"use either {where('shards_per_worker')} or {where('workers')}, not both")
    if s.compress not in COMPRESS_MODES:
        modes = ", ".join(COMPRESS_MODES)
        raise UserError(f"{where('compress')} must be one of {modes}, not {s.compress!r}")
    _parsed(s, where, "intents", lambda: s.intents_mask, ": ")
    _parsed(s, where, "http", lambda: s.http_address, " ")
    if ":" not in s.handler:
        raise UserError(f"{where('handler')} must look like module:attribute, not {s.handler!r}")
    s.app_path  # noqa: B018 - fixed now, before anything can change the directory
    if not os.path.isdir(s.app_path):
        raise UserError(f"{where('app_dir')} {s.app_dir} is not a directory")
    if not LARGE_THRESHOLD_RANGE[0] <= s.large_threshold <= LARGE_THRESHOLD_RANGE[1]:
        low, high = LARGE_THRESHOLD_RANGE
        raise UserError(
            f"{where('large_threshold')} must be between {low} and {high} (Discord's range)"
        )
    _validate_timing(s, where)
    _validate_redis(s, where, default_handler)
    _validate_rest(s, where)
    _validate_gateway_options(s, where)
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise UserError(
            f"{where('log_level')} must be debug, info, warning or error, not {s.log_level!r}"
        )


def _parsed(s: Settings, where: Where, name: str, view: Callable[[], object], sep: str) -> None:
    """Compute (and so cache) one typed view; its ValueError becomes the user's one line."""
    try:
        view()
    except ValueError as exc:
        raise UserError(f"{where(name)}{sep}{exc}") from None


def _validate_slice(s: Settings, where: Where) -> None:
    if s.shard_ids is not None:
        _parsed(s, where, "shard_ids", lambda: s.shard_selection, " ")
        if s.total_shards is None:
            raise UserError(
                f"{where('shard_ids')} needs {where('total_shards')} (the bot's whole shard count)"
            )
        selection = s.shard_selection
        assert selection is not None
        if selection.last >= s.total_shards:
            raise UserError(
                f"{where('shard_ids')} {s.shard_ids} is outside {where('total_shards')} "
                f"{s.total_shards} (ids go from 0 to {s.total_shards - 1})"
            )
    if (s.host_index is None) != (s.host_count is None):
        raise UserError("SHARDMGR_HOST_INDEX and SHARDMGR_HOST_COUNT must be set together")
    if s.host_count is not None and s.host_index is not None:
        if s.host_count < 1 or not 0 <= s.host_index < s.host_count:
            raise UserError(
                f"host index {s.host_index} must be between 0 and host count {s.host_count} - 1"
            )
        if s.total_shards is None:
            raise UserError(f"SHARDMGR_HOST_INDEX/HOST_COUNT need {where('total_shards')}")
        if s.shard_ids is not None:
            raise UserError(
                f"use either {where('shard_ids')} or SHARDMGR_HOST_INDEX/HOST_COUNT, not both"
            )


_POSITIVE: Final = (
    "discovery_backoff_s",
    "identify_window_s",
    "ping_interval_s",
    "ping_timeout_s",
    "start_timeout_s",
    "progress_interval_s",
    "restart_backoff_base_s",
    "restart_backoff_cap_s",
    "restart_stable_s",
    "shutdown_timeout_s",
    "resume_window_s",
    "drain_timeout_s",
    "sessions_save_interval_s",
    "command_timeout_s",
    "call_timeout_s",
    "call_max_bytes",
    "owner_lease_s",
    "reshard_check_interval_s",
    "reshard_timeout_s",
    "reshard_overlap_s",
)


def _validate_timing(s: Settings, where: Where) -> None:
    if s.discovery_attempts < 1:
        raise UserError(f"{where('discovery_attempts')} must be at least 1")
    for name in _POSITIVE:
        if getattr(s, name) <= 0:
            raise UserError(f"{where(name)} must be positive")
    if s.ping_timeout_s <= s.ping_interval_s:
        raise UserError(
            f"{where('ping_timeout_s')} ({s.ping_timeout_s:g}) must be longer than "
            f"{where('ping_interval_s')} ({s.ping_interval_s:g}), or every worker looks hung"
        )
    if s.loop_stall_s is not None and not 0 < s.loop_stall_s < s.ping_timeout_s:
        raise UserError(
            f"{where('loop_stall_s')} ({s.loop_stall_s:g}) must be positive and shorter "
            f"than {where('ping_timeout_s')} ({s.ping_timeout_s:g}), so that a blocked handler is "
            "logged before its worker is killed as hung"
        )
    if s.crash_loop_restarts < 1:
        raise UserError(f"{where('crash_loop_restarts')} must be at least 1")
    if s.identify_reserve < 0:
        raise UserError(f"{where('identify_reserve')} must be 0 or more")
    if not 1 <= s.reshard_at_guilds <= 2500:
        raise UserError(f"{where('reshard_at_guilds')} must be 1 to 2500 (Discord's limit)")


def _validate_gateway_options(s: Settings, where: Where) -> None:
    if s.max_message_bytes < MIN_MESSAGE_BYTES:
        raise UserError(
            f"{where('max_message_bytes')} must be at least {MIN_MESSAGE_BYTES} (1 MiB): READY "
            f"and GUILD_CREATE messages are often that large, not {s.max_message_bytes}"
        )
    if s.presence_status is not None and s.presence_status not in PRESENCE_STATUSES:
        raise UserError(
            f"{where('presence_status')} must be one of {', '.join(PRESENCE_STATUSES)}, "
            f"not {s.presence_status!r}"
        )
    if s.presence_activity_type not in ACTIVITY_TYPES:
        raise UserError(
            f"{where('presence_activity_type')} must be one of {', '.join(ACTIVITY_TYPES)}, "
            f"not {s.presence_activity_type!r}"
        )
    if s.presence_activity is not None and not 1 <= len(s.presence_activity) <= 128:
        raise UserError(f"{where('presence_activity')} must be 1 to 128 characters")
    for name in ("identify_browser", "identify_device"):
        if not getattr(s, name).strip():
            raise UserError(f"{where(name)} must not be empty")


def _validate_rest(s: Settings, where: Where) -> None:
    if s.rest_global_limit < 1:
        raise UserError(
            f"{where('rest_global_limit')} must be at least 1 (Discord's default is 50)"
        )
    if not 1 <= s.rest_invalid_limit <= REST_INVALID_MAX:
        raise UserError(
            f"{where('rest_invalid_limit')} must be 1 to {REST_INVALID_MAX}: Discord bans the "
            "IP at 10,000 answers with 401/403/429 in 10 minutes"
        )
    limiter = s.rest_limiter
    if limiter not in (None, "local") and not limiter.startswith(REDIS_SCHEMES):
        raise UserError(
            f"{where('rest_limiter')} must be 'local' or a redis:// URL, not {safe_url(limiter)!r}"
        )


def _validate_redis(s: Settings, where: Where, default_handler: str) -> None:
    try:
        spec = s.limiter
    except ValueError as exc:
        raise UserError(
            f"{where('identify_limiter')} {exc}, not {safe_url(s.identify_limiter)!r}"
        ) from None
    if spec.url is not None:
        try:
            import shardmgr.identify.redis  # noqa: F401 - only to know it can be imported
        except ImportError:
            raise UserError(
                f"{where('identify_limiter')} redis://... needs the redis extra: "
                "pip install 'shardmgr[redis]'"
            ) from None
    if s.sink is None:
        return
    if not s.sink.startswith(("redis-stream://", "rediss-stream://")):
        raise UserError(f"{where('sink')} must be a redis-stream:// URL, not {safe_url(s.sink)!r}")
    if s.handler != default_handler:
        raise UserError(
            f"{where('sink')} replaces the handler: give either {where('sink')} or "
            f"{where('handler')}, not both"
        )
    # Check stream=/maxlen=/batch= now: found in the workers, a typo would crash-loop them.
    try:
        from shardmgr.sinks.redis_stream import SinkConfig
    except ImportError:
        raise UserError(
            f"{where('sink')} needs the redis extra: pip install 'shardmgr[redis]'"
        ) from None
    SinkConfig.parse(s.sink)

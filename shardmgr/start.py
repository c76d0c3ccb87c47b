"""``shardmgr start``: discover, plan, then run the supervisor with its HTTP port and signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from shardmgr import stop as pidfile
from shardmgr.config import Settings, parse_http_address, parse_shard_ids
from shardmgr.discovery import GatewayInfo, fetch_gateway_bot
from shardmgr.errors import UserError
from shardmgr.httpapi import HttpApi
from shardmgr.identify import IdentifyLimiter, LocalIdentifyLimiter, SessionStartLimit
from shardmgr.plan import Plan, auto_shard_count, make_plan
from shardmgr.sessions import SessionStore, read_state, write_state
from shardmgr.supervisor import Supervisor
from workers.logsetup import fields

log = logging.getLogger(__name__)

SINK_HANDLER = "shardmgr.sinks.redis_stream:sink"
IDENTIFY_WINDOW_MARGIN = 0.1


def effective_handler(settings: Settings) -> str:
    return SINK_HANDLER if settings.sink else settings.handler


def check_handler(path: str) -> None:
    """Import the handler here, before any process starts, so a typo is one line and exit 2
    rather than every worker crash-looping."""
    from workers.handlers import HandlerLoadError, load_handler

    try:
        load_handler(path)
    except HandlerLoadError as exc:
        raise UserError(f"--handler: {exc}") from None


def plan_for(settings: Settings, gateway: GatewayInfo, shards: str | None = None) -> Plan:
    host = None
    if settings.host_index is not None and settings.host_count is not None:
        host = (settings.host_index, settings.host_count)
    return make_plan(
        shards=shards or settings.shards,
        recommended=gateway.recommended_shards,
        max_concurrency=gateway.limits.max_concurrency,
        total_shards=settings.total_shards,
        shard_ids=parse_shard_ids(settings.shard_ids) if settings.shard_ids else None,
        host=host,
        shards_per_worker=settings.shards_per_worker,
        workers=settings.workers,
    )


def make_limiter(
    settings: Settings,
    token: str,
    limits: SessionStartLimit,
    refresh: Callable[[], Any],
) -> IdentifyLimiter:
    # A grant is sent over IPC and the IDENTIFY goes out a moment later; without a margin, two
    # grants a window apart can reach Discord less than a window apart.
    window = settings.identify_window_s * (1.0 + IDENTIFY_WINDOW_MARGIN)
    if settings.identify_limiter == "local":
        return LocalIdentifyLimiter(limits, window_s=window, refresh=refresh)
    from shardmgr.identify_redis import RedisIdentifyLimiter

    limiter = RedisIdentifyLimiter(
        settings.identify_limiter, window_s=window, token=token
    )
    limiter.update(limits)
    return limiter


async def run_supervisor(
    settings: Settings,
    token: str,
    *,
    announce: Callable[[str], None] = print,
) -> int:
    async def discover() -> GatewayInfo:
        return await fetch_gateway_bot(
            settings.api_base,
            token,
            attempts=settings.discovery_attempts,
            backoff_base_s=settings.discovery_backoff_s,
        )

    async def refresh() -> SessionStartLimit:
        return (await discover()).limits

    async def replan(old: Plan) -> tuple[GatewayInfo, Plan] | None:
        gateway = await discover()
        if settings.total_shards is not None:
            log.error(
                "4011 (sharding required) with a fixed --total-shards: raise --total-shards on "
                "every host; this shard stays stopped",
                extra=fields(total_shards=settings.total_shards),
            )
            return None
        mc = gateway.limits.max_concurrency
        # Discord asked for more shards: take its new recommendation, and never fewer than
        # one more window's worth, so a stale recommendation cannot re-plan to the same count.
        total = max(
            auto_shard_count(gateway.recommended_shards, mc),
            auto_shard_count(old.total_shards + 1, mc),
        )
        return gateway, plan_for(settings, gateway, shards=str(total))

    pidfile.refuse_if_running(settings.pid_path)
    gateway = await discover()
    plan = plan_for(settings, gateway)
    announce(plan.describe())

    from shardmgr.metrics import Metrics

    metrics = Metrics()
    metrics.session_start_remaining(gateway.limits.remaining, gateway.limits.total)
    limiter = make_limiter(settings, token, gateway.limits, refresh)
    sessions = SessionStore()
    worker_env = dict(os.environ)
    if settings.sink:
        worker_env["SHARDMGR_SINK_URL"] = settings.sink

    supervisor = Supervisor(
        options=msgspec.structs.replace(settings, handler=effective_handler(settings)),
        token=token,
        gateway=gateway,
        plan=plan,
        limiter=limiter,
        metrics=metrics,
        sessions=sessions,
        replan=replan,
        worker_env=worker_env,
    )
    api = HttpApi(supervisor, metrics, admin_secret=settings.admin_secret)
    host, port = parse_http_address(settings.http)
    try:
        await api.start(host, port)
    except UserError:
        await limiter.aclose()
        raise
    # Only now that nothing can fail with a user error is the state file consumed.
    for shard_id, session in read_state(
        settings.state_path, token, plan.total_shards, settings.resume_window_s
    ).items():
        if shard_id in plan.shard_ids:
            sessions.put(shard_id, session)
    bound = f"{host}:{api.address[1] if api.address else port}"
    announce(f"http: {api.url}/metrics  {api.url}/status  (shardmgr status --http {bound})")
    loop = asyncio.get_running_loop()
    installed = _install_signals(loop, supervisor, settings.keep_sessions)
    pid_path = settings.pid_path
    pidfile.write_pid(pid_path)
    try:
        code = await supervisor.run()
        if supervisor.kept_sessions:
            saved = supervisor.sessions.snapshot()
            write_state(settings.state_path, token, supervisor.plan.total_shards, saved)
            log.info(
                "sessions saved for the next start",
                extra=fields(path=str(settings.state_path), sessions=len(saved)),
            )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        pidfile.remove_pid(pid_path)
        await api.stop()
    log.info("supervisor stopped")
    return code


def _install_signals(
    loop: asyncio.AbstractEventLoop, supervisor: Supervisor, keep_default: bool
) -> list[int]:
    handlers: dict[int, Callable[[], Any]] = {
        signal.SIGTERM: lambda: supervisor.request_stop(keep_default),
        signal.SIGINT: lambda: supervisor.request_stop(keep_default),
        # `shardmgr stop --keep-sessions`
        pidfile.KEEP_SIGNAL: lambda: supervisor.request_stop(True),
        signal.SIGHUP: supervisor.request_rolling_restart,
    }
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    return list(handlers)


def start(settings: Settings, token: str) -> int:
    check_handler(effective_handler(settings))
    try:
        return asyncio.run(run_supervisor(settings, token))
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()

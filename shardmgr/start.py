"""``shardmgr start``: discover, plan, then run the supervisor with its HTTP port and signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from shardmgr.config import ENV_PREFIX, TOKEN_ENV, Settings, parse_http_address, parse_shard_ids
from shardmgr.discovery import GatewayInfo, fetch_gateway_bot
from shardmgr.errors import UserError
from shardmgr.httpapi import HttpApi
from shardmgr.identify import (
    IdentifyLimiter,
    LocalIdentifyLimiter,
    RefreshLimits,
    SessionStartLimit,
)
from shardmgr.pidfile import PidFile
from shardmgr.plan import Plan, auto_shard_count, make_plan
from shardmgr.sessions import SessionStore, read_state, write_state
from shardmgr.stop import KEEP_SIGNAL
from shardmgr.supervisor import Supervisor
from workers.logsetup import fields
from workers.permits import HOLD_TIMEOUT_S

log = logging.getLogger(__name__)

SINK_HANDLER = "shardmgr.sinks.redis_stream:sink"
SINK_URL_ENV = "SHARDMGR_SINK_URL"
# SHARDMGR_* variables a worker reads itself; every other one (the admin secret, Redis URLs
# with passwords) stays in the supervisor.
WORKER_ENV_KEEP = frozenset({SINK_URL_ENV, "SHARDMGR_JSONL"})


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
    gateway: GatewayInfo,
    refresh: RefreshLimits,
    on_availability: Callable[[bool], None] | None = None,
) -> IdentifyLimiter:
    """The limiter named by --identify-limiter; each limiter pads the window itself."""
    limits = gateway.limits
    # A live worker reports every grant within its READY deadline plus its close handshake
    # (15 s + 2 s by default). A grant unreported for longer belongs to a worker that
    # stopped answering pings: it is killed by then, which settles the grant anyway.
    hold_s = max(HOLD_TIMEOUT_S, settings.ping_timeout_s + settings.ping_interval_s)
    if settings.identify_limiter == "local":
        return LocalIdentifyLimiter(
            limits, window_s=settings.identify_window_s, hold_timeout_s=hold_s, refresh=refresh
        )
    from shardmgr.identify_redis import RedisIdentifyLimiter

    limiter = RedisIdentifyLimiter(
        settings.identify_limiter,
        window_s=settings.identify_window_s,
        hold_timeout_s=hold_s,
        token=token,
        refresh=refresh,
        on_availability=on_availability,
    )
    limiter.update(limits)
    return limiter


def worker_environment(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """What a worker process inherits: no token (it travels in ``Start``), no admin secret,
    no supervisor settings that may carry credentials."""
    out = {
        k: v
        for k, v in env.items()
        if k != TOKEN_ENV and (not k.startswith(ENV_PREFIX) or k in WORKER_ENV_KEEP)
    }
    if settings.sink:
        out[SINK_URL_ENV] = settings.sink
    return out


def warn_if_unshared_slice(settings: Settings, plan: Plan) -> None:
    """A slice of a bigger bot means other hosts identify too; a local limiter cannot see
    their identifies, so together they can break the windows."""
    if settings.identify_limiter == "local" and len(plan.shard_ids) < plan.total_shards:
        log.warning(
            "this host runs only part of the bot's shards with the local identify limiter: "
            "other hosts' identifies are not counted; use --identify-limiter redis://... "
            "on every host",
            extra=fields(shards=len(plan.shard_ids), total_shards=plan.total_shards),
        )


def check_state_file(settings: Settings) -> None:
    """The sessions of a --keep-sessions stop must not be lost to an unwritable path."""
    parent = settings.state_path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"state file directory {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"state file directory {parent} is not writable")


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

    pidfile = PidFile(settings.pid_path)
    pidfile.acquire()
    try:
        return await _run(settings, token, discover, refresh, announce)
    finally:
        pidfile.release()


async def _run(
    settings: Settings,
    token: str,
    discover: Callable[[], Awaitable[GatewayInfo]],
    refresh: RefreshLimits,
    announce: Callable[[str], None],
) -> int:
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

    check_state_file(settings)
    gateway = await discover()
    plan = plan_for(settings, gateway)
    warn_if_unshared_slice(settings, plan)
    announce(plan.describe())

    from shardmgr.metrics import Metrics
    from shardmgr.restlimits import make_broker

    metrics = Metrics()
    metrics.session_start_remaining(gateway.limits.remaining, gateway.limits.total)
    limiter = make_limiter(
        settings, token, gateway, refresh, on_availability=metrics.identify_limiter_available
    )
    sessions = SessionStore()
    try:
        supervisor = Supervisor(
            options=msgspec.structs.replace(settings, handler=effective_handler(settings)),
            token=token,
            gateway=gateway,
            plan=plan,
            limiter=limiter,
            metrics=metrics,
            sessions=sessions,
            replan=replan,
            worker_env=worker_environment(settings, os.environ),
            announce=announce,
            rest=make_broker(settings, token),
        )
        api = HttpApi(supervisor, metrics, admin_secret=settings.admin_secret)
        host, port = parse_http_address(settings.http)
        await api.start(host, port)
    except BaseException:
        # supervisor.run() owns the limiter from here on; before that, we close it.
        await limiter.aclose()
        raise
    try:
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
        try:
            code = await supervisor.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        if supervisor.kept_sessions and not _save_sessions(settings, token, supervisor):
            code = 1
    finally:
        await api.stop()
    log.info("supervisor stopped")
    return code


def _save_sessions(settings: Settings, token: str, supervisor: Supervisor) -> bool:
    saved = supervisor.sessions.snapshot()
    path = settings.state_path
    try:
        write_state(path, token, supervisor.plan.total_shards, saved)
    except OSError as exc:
        log.error(
            "cannot save the suspended sessions; the next start identifies every shard",
            extra=fields(path=str(path), error=exc.strerror or str(exc), sessions=len(saved)),
        )
        return False
    log.info("sessions saved for the next start", extra=fields(path=str(path), sessions=len(saved)))
    return True


def _install_signals(
    loop: asyncio.AbstractEventLoop, supervisor: Supervisor, keep_default: bool
) -> list[int]:
    handlers: dict[int, Callable[[], Any]] = {
        signal.SIGTERM: lambda: supervisor.request_stop(keep_default),
        signal.SIGINT: lambda: supervisor.request_stop(keep_default),
        # `shardmgr stop --keep-sessions`
        KEEP_SIGNAL: lambda: supervisor.request_stop(True),
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

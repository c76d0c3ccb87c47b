"""``shardmgr start``: discover, plan, then run the supervisor with its HTTP port and signals."""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from shardmgr import addressfile, statefiles
from shardmgr.config import ENV_PREFIX, Settings, default_state_dir, validate
from shardmgr.discovery import GatewayInfo, fetch_gateway_bot
from shardmgr.errors import UserError
from shardmgr.httpapi import HttpApi
from shardmgr.identify import (
    IdentifyLimiter,
    LocalIdentifyLimiter,
    RefreshLimits,
    SessionStartLimit,
)
from shardmgr.ownership import OwnedLimiter, start_ownership
from shardmgr.pidfile import PidFile
from shardmgr.plan import Plan, budget_shortfall, make_plan, replan_total
from shardmgr.redisurl import check_redis, resolve_url_files
from shardmgr.resharder import Planner
from shardmgr.sessions import (
    SessionSaver,
    SessionStore,
    discard_state,
    read_state,
    write_state,
)
from shardmgr.settingvalues import LimiterKind
from shardmgr.stop import KEEP_SIGNAL
from shardmgr.supervisor import Supervisor
from shardmgr.token import TOKEN_ENV
from workers.hardening import ALLOW_CORE_DUMPS_ENV, protect_process
from workers.logsetup import announcer, fields
from workers.permits import HOLD_TIMEOUT_S

if TYPE_CHECKING:
    from workers.handlers import Handler

log = logging.getLogger(__name__)

# SHARDMGR_* variables a worker reads itself; every other one (the admin secret, Redis URLs
# with passwords: the sink's reaches workers over their pipe) stays in the supervisor.
WORKER_ENV_KEEP = frozenset({"SHARDMGR_JSONL"})


def use_app_dir(app_path: str) -> None:
    """Import handlers from ``app_path`` first, as uvicorn and gunicorn do with the working
    directory: ``--handler mybot:bot`` works from the folder that holds ``mybot.py``."""
    if app_path not in sys.path:
        sys.path.insert(0, app_path)


def check_handler(path: str, app_path: str | None = None) -> Handler:
    """Import the handler here, before any process starts, so a typo is one line and exit 2
    rather than every worker crash-looping."""
    from workers.handlers import HandlerLoadError, load_handler

    top = path.partition(":")[0].split(".")[0]
    if top and importlib.util.find_spec(top) is None:
        where = f"in {app_path} (the app dir) or " if app_path else ""
        raise UserError(
            f"--handler {path}: no module named {top!r} {where}on the Python path; run from "
            f"the folder that holds {top}.py or {top}/, or pass --app-dir DIR"
        )
    try:
        return load_handler(path)
    except HandlerLoadError as exc:
        raise UserError(f"--handler: {exc}") from None


def plan_for(settings: Settings, gateway: GatewayInfo, shards: str | None = None) -> Plan:
    host = None
    if settings.host_index is not None and settings.host_count is not None:
        host = (settings.host_index, settings.host_count)
    selection = settings.shard_selection
    return make_plan(
        shards=shards or settings.shards,
        recommended=gateway.recommended_shards,
        max_concurrency=gateway.limits.max_concurrency,
        total_shards=settings.total_shards,
        slice_ids=selection.ids if selection is not None else None,
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
    spec = settings.limiter
    if spec.kind is LimiterKind.LOCAL or spec.url is None:
        return LocalIdentifyLimiter(
            limits, window_s=settings.identify_window_s, hold_timeout_s=hold_s, refresh=refresh
        )
    from shardmgr.identify.redis import RedisIdentifyLimiter

    limiter = RedisIdentifyLimiter(
        spec.url,
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
    # A worker imports the handler too (``python -m workers`` has its own working directory
    # on the path, not --app-dir).
    pythonpath = out.get("PYTHONPATH")
    out["PYTHONPATH"] = os.pathsep.join([settings.app_path, *([pythonpath] if pythonpath else [])])
    if settings.allow_core_dumps:
        out[ALLOW_CORE_DUMPS_ENV] = "1"
    return out


def warn_if_unshared_slice(settings: Settings, plan: Plan) -> None:
    """A slice of a bigger bot means other hosts identify too; a local limiter cannot see
    their identifies, so together they can break the windows."""
    if settings.limiter.kind is LimiterKind.LOCAL and len(plan.shard_ids) < plan.total_shards:
        log.warning(
            "this host runs only part of the bot's shards with the local identify limiter: "
            "other hosts' identifies are not counted; use --identify-limiter redis://... "
            "on every host",
            extra=fields(shards=len(plan.shard_ids), total_shards=plan.total_shards),
        )


def with_url_files(settings: Settings) -> Settings:
    """The Redis URLs read from ``--identify-limiter-file`` / ``--sink-file``, checked like
    URLs given directly."""
    urls = resolve_url_files(
        identify_limiter=settings.identify_limiter,
        identify_limiter_file=settings.identify_limiter_file,
        sink=settings.sink,
        sink_file=settings.sink_file,
    )
    if urls.identify_limiter == settings.identify_limiter and urls.sink == settings.sink:
        return settings
    resolved = msgspec.structs.replace(
        settings, identify_limiter=urls.identify_limiter, sink=urls.sink
    )
    validate(resolved)
    return resolved


async def check_redis_urls(settings: Settings) -> None:
    """A Redis that refuses the credentials (or the TLS handshake) fails the start now, with
    one line, instead of identifies or events waiting forever."""
    if settings.limiter.url is not None:
        await check_redis(settings.limiter.url, "--identify-limiter")
    if settings.sink:
        from shardmgr.sinks.redis_stream import SinkConfig

        await check_redis(SinkConfig.parse(settings.sink).redis_url, "--sink")


def check_state_file(settings: Settings) -> None:
    """The sessions of a --keep-sessions stop must not be lost to an unwritable path."""
    statefiles.ensure_dir(settings.state_path.parent, "state file directory")


def check_port_free(settings: Settings) -> None:
    """A busy --http port fails the start before discovery and before the plan is printed.
    The real bind comes later (it needs the supervisor); binding with the same
    ``SO_REUSEADDR`` here finds a listener without holding the port."""
    host, port = settings.http_address
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UserError(f"--http {settings.http}: {exc.strerror or exc}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise UserError(
                f"--http {settings.http}: {reason} (another shardmgr running? pick another "
                "with --http HOST:PORT, or 127.0.0.1:0 for any free port)"
            ) from None


async def run_supervisor(
    settings: Settings,
    token: str,
    *,
    announce: Callable[[str], None] | None = None,
) -> int:
    announce = announce or announcer(settings.log_json)

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
        total = replan_total(
            old.total_shards, gateway.recommended_shards, gateway.limits.max_concurrency
        )
        return gateway, plan_for(settings, gateway, shards=str(total))

    # Everything that can fail before work starts fails before the plan is printed: the
    # local checks even before discovery spends a request.
    check_state_file(settings)
    check_port_free(settings)
    await check_redis_urls(settings)
    gateway = await discover()
    plan = plan_for(settings, gateway)
    warn_if_unshared_slice(settings, plan)

    from shardmgr.metrics import Metrics
    from shardmgr.restlimits import make_broker

    metrics = Metrics()
    metrics.session_start_remaining(gateway.limits.remaining, gateway.limits.total)
    limiter = make_limiter(
        settings, token, gateway, refresh, on_availability=metrics.identify_limiter_available
    )
    sessions = SessionStore()
    monitor = None
    if settings.sink:
        from shardmgr.sinks.monitor import SinkMonitor

        monitor = SinkMonitor(settings.sink, metrics)
    try:
        ownership = await start_ownership(settings, token, plan, metrics.registry)
        if ownership is not None:
            limiter = OwnedLimiter(limiter, ownership)
        supervisor = Supervisor(
            settings=settings,
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
            reshard_planner=Planner(
                discover=discover,
                plan=lambda gw, total: plan_for(settings, gw, shards=str(total)),
                fixed_total=settings.total_shards,
            )
            if settings.reshard_in_background
            else None,
        )
        if settings.limiter.url is not None and settings.limiter.kind is not LimiterKind.LOCAL:
            # The identify limiter's Redis also carries calls to other hosts' workers.
            from shardmgr.cluster_redis import RedisClusterLink
            from shardmgr.identify.redis import bot_id_from_token

            supervisor.router.remote = RedisClusterLink(
                settings.limiter.url, bot_id_from_token(token), supervisor.router.host_name
            )
        if ownership is not None:
            ownership.keep_leases = lambda: supervisor.kept_sessions
            supervisor.status_sections["ownership"] = ownership.status
            supervisor.owned_elsewhere = ownership.elsewhere.keys
            ownership.on_lost = supervisor.restart_shards
        api = HttpApi(supervisor, metrics, admin_secret=settings.admin_secret, sink=monitor)
        host, port = settings.http_address
        await api.start(host, port)
    except BaseException:
        # supervisor.run() owns the limiter from here on; before that, we close it.
        await limiter.aclose()
        if monitor is not None:
            await monitor.aclose()
        raise
    if monitor is not None:
        monitor.start()
    try:
        # Only now that nothing can fail with a user error is the state file consumed.
        for shard_id, session in read_state(
            settings.state_path, token, plan.total_shards, settings.resume_window_s
        ).items():
            if shard_id in plan.shard_ids and (ownership is None or ownership.may_resume(shard_id)):
                sessions.put(shard_id, session)
        # Announced only now that the saved sessions are known: they start without identifying.
        resuming = sessions.snapshot().keys()
        limits = gateway.limits
        budget = budget_shortfall(
            len(plan.shard_ids) - len(resuming),
            limits.remaining,
            settings.identify_reserve,
            limits.reset_after_s,
            time.time(),
        )
        announce(plan.describe(resuming, budget))
        bound = f"{settings.http_address.connect_host}:{api.address[1] if api.address else port}"
        recorded = _record_address(settings, bound)
        announce(f"http: {api.url}/metrics  {api.url}/status  (shardmgr status{recorded})")
        loop = asyncio.get_running_loop()
        installed = _install_signals(loop, supervisor, settings.keep_sessions)
        # Sessions are on disk all along, not only after a --keep-sessions stop: a kill -9
        # of this process must not cost every shard an identify.
        saver = SessionSaver(
            sessions,
            lambda saved: write_state(
                settings.state_path,
                token,
                supervisor.plan.total_shards,
                saved,
                supervisor.reshard.state(),
            ),
            settings.sessions_save_interval_s,
        )
        saver.start()
        try:
            code = await supervisor.run()
        finally:
            await saver.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)
            addressfile.remove_address(settings.state_dir, bound)
        if supervisor.kept_sessions:
            if not _save_sessions(settings, token, supervisor):
                code = 1
        else:
            discard_state(settings.state_path)  # the stop ended them (close 1000)
    finally:
        await api.stop()
        if monitor is not None:
            await monitor.aclose()
    log.info("supervisor stopped")
    return code


def _record_address(settings: Settings, bound: str) -> str:
    """Write the address where `status`, `presence` and `stop` look for it; returns the
    arguments those commands then need (none, or the state dir)."""
    try:
        addressfile.write_address(settings.state_dir, bound)
    except OSError as exc:
        log.warning(
            "cannot record the HTTP address; `shardmgr status` needs --http",
            extra=fields(state_dir=settings.state_dir, error=exc.strerror or str(exc)),
        )
        return f" --http {bound}"
    if os.path.abspath(settings.state_dir) == os.path.abspath(default_state_dir()):
        return ""
    return f" --state-dir {settings.state_dir}"


def _save_sessions(settings: Settings, token: str, supervisor: Supervisor) -> bool:
    saved = supervisor.sessions.snapshot()
    path = settings.state_path
    try:
        write_state(path, token, supervisor.plan.total_shards, saved)
    except (OSError, UserError) as exc:
        log.error(
            "cannot save the suspended sessions; the next start identifies every shard",
            extra=fields(path=str(path), error=str(exc), sessions=len(saved)),
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
    protect_process(settings.allow_core_dumps)
    settings = with_url_files(settings)
    use_app_dir(settings.app_path)
    check_handler(settings.handler_target, settings.app_path)
    try:
        return asyncio.run(run_supervisor(settings, token))
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()

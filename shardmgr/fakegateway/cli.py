"""``shardmgr fake-gateway``: run the fake gateway until SIGINT/SIGTERM. The first line of
stdout is the base URL it bound (tests parse it); logs go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from shardmgr.errors import UserError
from shardmgr.fakegateway.config import FakeConfig, make_token
from shardmgr.fakegateway.server import FakeGateway
from workers import logsetup, redact
from workers.protocol import parse_intents


def _intents(value: str) -> int:
    try:
        return parse_intents(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FakeConfig()
    a = parser.add_argument
    a("--host", default=d.host, help="address to bind (default %(default)s)")
    a("--port", type=int, default=d.port, help="port to bind; 0 picks a free one (default 0)")
    a(
        "--token",
        # From the environment too, so a token need not appear on the command line.
        default=os.environ.get("SHARDMGR_FAKE_TOKEN"),
        help="the only token accepted (default: $SHARDMGR_FAKE_TOKEN, else any well-formed "
        "token); 'generate' prints a fresh one to stderr",
    )
    a("--bot-id", type=int, default=d.bot_id, help="bot user id when --token is not given")
    a("--shards", type=int, default=d.shards, help="recommended shard count (/gateway/bot)")
    a("--max-concurrency", type=int, default=d.max_concurrency, help="identify buckets")
    a(
        "--identify-window",
        type=float,
        default=d.identify_window_s,
        help="seconds each bucket waits between identifies (default %(default)s)",
    )
    a(
        "--heartbeat-interval",
        type=float,
        default=d.heartbeat_interval_s,
        help="Hello's heartbeat interval in seconds (default %(default)s)",
    )
    a(
        "--heartbeat-timeout-slack",
        type=float,
        default=d.heartbeat_timeout_slack,
        help="seconds past interval*1.5 before a silent connection is closed",
    )
    a(
        "--heartbeat-timeout-code",
        type=int,
        default=d.heartbeat_timeout_code,
        help="close code for a connection that stopped heartbeating (default %(default)s)",
    )
    a("--guilds", type=int, default=None, help="guild count (default 10 per --shards)")
    a(
        "--unavailable-fraction",
        type=float,
        default=d.unavailable_fraction,
        help="fraction of guilds sent as unavailable after READY",
    )
    a("--event-rate", type=float, default=d.event_rate, help="dispatches/s per connected shard")
    a("--seed", type=int, default=d.seed, help="seed for guilds and traffic")
    a("--chaos", type=int, default=None, metavar="SEED", help="inject random faults (seeded)")
    a("--chaos-interval", type=float, default=d.chaos_interval_s, help="seconds between faults")
    a(
        "--session-ttl",
        type=float,
        default=d.session_ttl_s,
        help="seconds a disconnected session stays resumable",
    )
    a("--session-start-total", type=int, default=d.session_start_total)
    a("--session-start-remaining", type=int, default=None, help="default: the total")
    a("--reset-after", type=float, default=d.reset_after_s, help="budget window, seconds")
    a("--max-guilds-per-shard", type=int, default=d.max_guilds_per_shard, help="else 4011")
    a(
        "--privileged-intents",
        type=_intents,
        default=d.privileged_intents,
        help="intents enabled in the fake portal, e.g. GUILD_MEMBERS,MESSAGE_CONTENT or 0",
    )
    a(
        "--identify-violation-delay",
        type=float,
        default=d.invalid_session_delay_s,
        help="seconds before op 9 answers an identify-concurrency violation",
    )
    a(
        "--no-token-reset",
        action="store_true",
        help="at remaining == 0 answer identify with op 9 instead of resetting the token",
    )
    a("--replay-buffer", type=int, default=d.replay_buffer, help="dispatches kept per session")
    a("--large-bot-multiple", type=int, default=None, help="shard counts must be a multiple")
    a(
        "--zlib-chunk-bytes",
        type=int,
        default=d.zlib_chunk_bytes,
        help="split zlib-stream messages into frames of this size (0: off)",
    )
    a(
        "--reject-resume-on-main-url",
        action="store_true",
        help="refuse (op 9) a RESUME that does not use resume_gateway_url",
    )
    a("--bot-name", default=d.bot_name, help="the bot user's name (default %(default)s)")
    a(
        "--violation-is-free",
        action="store_true",
        help="a rejected (concurrency-violating) identify does not spend a session start",
    )
    a(
        "--expired-resume-code",
        type=int,
        default=d.expired_resume_close_code,
        help="close code for a RESUME of an expired session; 0 answers op 9 instead",
    )
    a(
        "--payload-compress-threshold",
        type=int,
        default=d.payload_compress_threshold,
        help="with Identify compress=true and no transport compression, zlib payloads "
        "larger than this many bytes",
    )
    a(
        "--reconnect-close-after",
        type=float,
        default=d.reconnect_close_after_s,
        help="seconds after op 7 before the server closes the socket itself",
    )
    a(
        "--request-members-window",
        type=float,
        default=d.request_members_window_s,
        help="seconds between all-member op 8 requests per guild (else RATE_LIMITED)",
    )
    a(
        "--close-timeout",
        type=float,
        default=d.close_timeout_s,
        help="seconds to wait for a client's close frame",
    )
    a("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")
    a("--log-json", action="store_true", help="JSON log lines")


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    token = args.token
    if token == "generate":
        token = make_token(args.bot_id)
        print(f"token: {token}", file=sys.stderr, flush=True)
    values = {
        "host": args.host,
        "port": args.port,
        "token": token,
        "bot_id": args.bot_id,
        "shards": args.shards,
        "max_concurrency": args.max_concurrency,
        "identify_window_s": args.identify_window,
        "heartbeat_interval_s": args.heartbeat_interval,
        "heartbeat_timeout_slack": args.heartbeat_timeout_slack,
        "heartbeat_timeout_code": args.heartbeat_timeout_code,
        "guilds": args.guilds,
        "unavailable_fraction": args.unavailable_fraction,
        "event_rate": args.event_rate,
        "seed": args.seed,
        "chaos_seed": args.chaos,
        "chaos_interval_s": args.chaos_interval,
        "session_ttl_s": args.session_ttl,
        "session_start_total": args.session_start_total,
        "session_start_remaining": args.session_start_remaining,
        "reset_after_s": args.reset_after,
        "max_guilds_per_shard": args.max_guilds_per_shard,
        "privileged_intents": args.privileged_intents,
        "invalid_session_delay_s": args.identify_violation_delay,
        "token_reset_on_exhaustion": not args.no_token_reset,
        "replay_buffer": args.replay_buffer,
        "large_bot_multiple": args.large_bot_multiple,
        "zlib_chunk_bytes": args.zlib_chunk_bytes,
        "reject_resume_on_main_url": args.reject_resume_on_main_url,
        "bot_name": args.bot_name,
        "violation_consumes_start": not args.violation_is_free,
        "expired_resume_close_code": args.expired_resume_code or None,
        "payload_compress_threshold": args.payload_compress_threshold,
        "reconnect_close_after_s": args.reconnect_close_after,
        "request_members_window_s": args.request_members_window,
        "close_timeout_s": args.close_timeout,
    }
    try:
        return FakeConfig(**values)
    except ValueError as exc:
        raise UserError(f"fake-gateway: {exc}") from None


async def _serve(config: FakeConfig) -> None:
    gateway = FakeGateway(config)
    try:
        await gateway.start()
    except OSError as exc:
        raise UserError(
            f"fake-gateway: cannot listen on {config.host}:{config.port} ({exc.strerror}); "
            "pick another --port"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(gateway.base_url, flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await gateway.stop()


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if str(args.log_level).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise UserError("fake-gateway: --log-level must be DEBUG, INFO, WARNING or ERROR")
    logsetup.configure(args.log_level, args.log_json)
    if config.token:
        redact.add_secret(config.token)
    import uvloop

    uvloop.run(_serve(config))
    return 0

"""``shardmgr`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from shardmgr.errors import UserError

# A secret typed on a command line is visible to everyone through ps.
_NO_FLAG = frozenset({"admin_secret"})
_BOOL_FLAGS = frozenset({"keep_sessions", "log_json"})
# on by default: --NAME / --no-NAME
_ON_BY_DEFAULT = frozenset({"heartbeat_ack_check"})

_HELP: dict[str, str] = {
    "shards": "'auto' (Discord's recommendation, rounded up to max_concurrency) or a count",
    "total_shards": "the bot's whole shard count, when this host runs only a slice",
    "shard_ids": "this host's slice A-B (inclusive), with --total-shards",
    "shards_per_worker": "shards per worker process (K)",
    "workers": "number of worker processes (W), instead of --shards-per-worker",
    "handler": "your event handler, module:attribute",
    "intents": "intent names (GUILDS,GUILD_MESSAGES), 'default', 'all' or an integer",
    "compress": "zlib-stream, zstd-stream, payload (per-message zlib, Identify compress) or none",
    "heartbeat_ack_check": "reconnect a zombie connection (no heartbeat ACK); "
    "--no-heartbeat-ack-check turns the check off",
    "identify_browser": "Identify properties.browser",
    "identify_device": "Identify properties.device",
    "presence_status": "initial status sent in Identify: online, dnd, idle or invisible",
    "presence_activity": "initial activity text sent in Identify",
    "presence_activity_type": "playing, streaming, listening, watching, custom or competing",
    "max_message_bytes": "largest inflated gateway message accepted (at least 1 MiB)",
    "api_base": "REST API base for discovery (point it at a fake gateway for tests)",
    "http": "metrics/status address HOST:PORT (port 0 picks a free one)",
    "token_file": "read the bot token from this file (instead of DISCORD_TOKEN)",
    "keep_sessions": "on SIGTERM/SIGINT, suspend sessions and save them for the next start",
    "identify_limiter": "'local' or a redis:// URL shared by several hosts",
    "sink": "a redis-stream:// URL to publish events to instead of a handler",
    "identify_window_s": "seconds per identify window (Discord: 5)",
    "identify_reserve": "session starts that restarts may never spend",
    "state_dir": "where the pid file and saved sessions live",
    "state_file": "saved sessions file (default STATE_DIR/sessions.json)",
    "host_index": "this host's index (0-based), with --host-count and --total-shards",
    "host_count": "number of hosts sharing --total-shards evenly",
    "large_threshold": "member count above which GUILD_CREATE omits offline members (50-250)",
    "discovery_attempts": "GET /gateway/bot attempts before giving up",
    "discovery_backoff_s": "base of the discovery retry backoff, seconds",
    "ping_interval_s": "seconds between IPC pings to each worker",
    "ping_timeout_s": "a worker silent this long is hung: stacks dumped, killed, restarted",
    "start_timeout_s": "seconds a new worker may take to report it started",
    "restart_backoff_base_s": "first delay of the restart backoff, seconds",
    "restart_backoff_cap_s": "longest restart delay, seconds",
    "restart_stable_s": "a run this long resets the restart backoff",
    "crash_loop_restarts": "quick failures in a row reported as a crash loop",
    "shutdown_timeout_s": "seconds a worker may take to close its shards before it is killed",
    "resume_window_s": "saved sessions older than this are not resumed",
    "log_level": "debug, info, warning or error",
    "log_json": "JSON log lines instead of key=value",
    "rest_global_limit": "REST requests per second for the whole bot (Discord's default: 50)",
    "rest_limiter": "'local' or a redis:// URL for REST limits (default: --identify-limiter)",
    "rest_invalid_limit": "401/403/429 answers per 10 minutes before REST refuses (max 9500)",
}


def _flag(name: str) -> str:
    return "--" + name.removesuffix("_s").replace("_", "-")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, all defaulting to None so that only typed flags override the
    environment and the TOML file."""
    from shardmgr.config import FIELD_TYPES

    parser.add_argument("--config", metavar="FILE", help="a TOML settings file")
    for name in FIELD_TYPES:
        if name in _NO_FLAG:
            continue
        if name in _ON_BY_DEFAULT:
            parser.add_argument(
                _flag(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_HELP.get(name),
            )
            continue
        if name in _BOOL_FLAGS:
            parser.add_argument(
                _flag(name), dest=name, action="store_true", default=None, help=_HELP.get(name)
            )
            continue
        parser.add_argument(
            _flag(name),
            dest=name,
            default=None,
            metavar=name.removesuffix("_s").upper(),
            help=_HELP.get(name),
        )


def _typed_flags(args: argparse.Namespace) -> dict[str, Any]:
    from shardmgr.config import FIELD_NAMES

    return {name: getattr(args, name, None) for name in FIELD_NAMES}


def _run_start(args: argparse.Namespace) -> int:
    from shardmgr import start
    from shardmgr.config import load_settings, load_token
    from workers import logsetup, redact

    settings = load_settings(_typed_flags(args), config_path=args.config)
    logsetup.configure(settings.log_level, settings.log_json)
    token = load_token(settings, args.token_file, os.environ)
    redact.add_secret(token)
    if settings.admin_secret:
        redact.add_secret(settings.admin_secret)
    return start.start(settings, token)


def _run_stop(args: argparse.Namespace) -> int:
    from shardmgr import stop
    from shardmgr.config import load_settings

    flags = {"state_dir": args.state_dir}
    settings = load_settings(flags, config_path=args.config)
    return stop.stop(settings.pid_path, keep_sessions=args.keep_sessions)


def _run_status(args: argparse.Namespace) -> int:
    from shardmgr import status
    from shardmgr.config import load_settings

    settings = load_settings({"http": args.http}, config_path=args.config)
    host, port = settings.http.rsplit(":", 1)
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return status.show(f"{host}:{port}")


def _run_presence(args: argparse.Namespace) -> int:
    from shardmgr import presence
    from shardmgr.config import load_settings

    settings = load_settings({"http": args.http}, config_path=args.config)
    host, port = settings.http.rsplit(":", 1)
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    print(presence.send(f"{host}:{port}", args.status, args.activity, args.activity_type, args.url))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from shardmgr import demo

    return demo.main(shards=args.shards, http=args.http)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shardmgr", description="Multi-process shard manager for Discord bots")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    start = sub.add_parser(
        "start",
        help="run the bot's shards (token from DISCORD_TOKEN or --token-file)",
        description="Settings come from flags, then SHARDMGR_* environment variables, then the "
        "TOML file, then defaults. The token comes from DISCORD_TOKEN or --token-file only.",
    )
    add_settings_arguments(start)
    start.set_defaults(run=_run_start)

    stop = sub.add_parser("stop", help="stop the running supervisor")
    stop.add_argument("--keep-sessions", action="store_true", help="suspend and save sessions")
    stop.add_argument("--state-dir", default=None, help="the supervisor's --state-dir")
    stop.add_argument("--config", metavar="FILE", help="a TOML settings file")
    stop.set_defaults(run=_run_stop)

    status = sub.add_parser("status", help="show the running supervisor's workers and shards")
    status.add_argument("--http", default=None, help="the supervisor's --http address")
    status.add_argument("--config", metavar="FILE", help="a TOML settings file")
    status.set_defaults(run=_run_status)

    presence = sub.add_parser(
        "presence",
        help="set every shard's status (needs SHARDMGR_ADMIN_SECRET)",
        description="Sends op 3 to every shard through the supervisor's POST /presence.",
    )
    presence.add_argument("--status", required=True, help="online, dnd, idle or invisible")
    presence.add_argument("--activity", default=None, metavar="TEXT", help="activity text")
    presence.add_argument(
        "--activity-type",
        default="playing",
        help="playing, streaming, listening, watching, custom or competing",
    )
    presence.add_argument("--url", default=None, help="stream URL (with --activity-type streaming)")
    presence.add_argument("--http", default=None, help="the supervisor's --http address")
    presence.add_argument("--config", metavar="FILE", help="a TOML settings file")
    presence.set_defaults(run=_run_presence)

    demo = sub.add_parser("demo", help="a fake gateway plus `shardmgr start` (`make run`)")
    demo.add_argument("--shards", type=int, default=16, help="the fake's recommended shard count")
    demo.add_argument("--http", default="127.0.0.1:9191", help="the supervisor's HTTP address")
    demo.set_defaults(run=_run_demo)

    from shardmgr.fakegateway import cli as fake_cli

    fake = sub.add_parser("fake-gateway", help="run a local fake Discord gateway for tests")
    fake_cli.add_arguments(fake)
    fake.set_defaults(run=fake_cli.run)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse that reports a user mistake as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except UserError as exc:
        print(f"shardmgr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

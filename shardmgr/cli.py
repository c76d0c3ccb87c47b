"""``shardmgr`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from shardmgr.errors import UserError

log = logging.getLogger("shardmgr")

# A secret typed on a command line is visible to everyone through ps.
_NO_FLAG = frozenset({"admin_secret"})

_HELP: dict[str, str] = {
    "shards": "'auto' (Discord's recommendation, rounded up to max_concurrency) or a count",
    "total_shards": "the bot's whole shard count, when this host runs only a slice",
    "shard_ids": "this host's slice A-B (inclusive), with --total-shards",
    "shards_per_worker": "shards per worker process (K)",
    "workers": "number of worker processes (W), instead of --shards-per-worker",
    "handler": "your event handler, module:attribute (module found in --app-dir first)",
    "app_dir": "import the handler's module from this directory first (default: the "
    "working directory, as uvicorn and gunicorn do)",
    "handler_backlog": "events queued per shard for the handler before the shard stops reading",
    "handler_batch": "events per handle_batch call, for handlers that define it",
    "drain_timeout_s": "on stop, seconds queued events may take to reach the handler",
    "intents": "intent names (GUILDS,GUILD_MESSAGES), 'default' (every non-privileged one), "
    "'all' or an integer; privileged ones need the developer portal too",
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
    "owner_lease_s": "with a redis limiter: seconds a shard's owner lease lasts (renewed "
    "every third); a dead host's shards move to another host after this",
    "state_dir": "where the pid file and saved sessions live",
    "state_file": "saved sessions file (default STATE_DIR/sessions.json)",
    "host_index": "this host's index (0-based), with --host-count and --total-shards",
    "host_count": "number of hosts sharing --total-shards evenly",
    "large_threshold": "member count above which GUILD_CREATE omits offline members (50-250)",
    "discovery_attempts": "GET /gateway/bot attempts before giving up",
    "discovery_backoff_s": "base of the discovery retry backoff, seconds",
    "ping_interval_s": "seconds between IPC pings to each worker",
    "ping_timeout_s": "a worker silent this long is hung: stacks dumped, killed, restarted",
    "loop_stall_s": "a worker's event loop blocked this long is logged with its stack "
    "(shorter than --ping-timeout-s)",
    "start_timeout_s": "seconds a new worker may take to report it started",
    "restart_backoff_base_s": "first delay of the restart backoff, seconds",
    "restart_backoff_cap_s": "longest restart delay, seconds",
    "restart_stable_s": "a run this long resets the restart backoff",
    "crash_loop_restarts": "quick failures in a row reported as a crash loop",
    "shutdown_timeout_s": "seconds a worker may take to close its shards before it is killed",
    "resume_window_s": "saved sessions older than this are not resumed",
    "log_level": "debug, info, warning or error",
    "reshard_in_background": "on 4011 or a bigger recommendation, start the new shard set "
    "beside the old one and switch over (--no-reshard-in-background: stop, then start)",
    "reshard_check_interval_s": "how often /gateway/bot is asked whether to reshard, seconds",
    "reshard_at_guilds": "reshard when the largest shard holds more guilds (Discord: 2500)",
    "reshard_timeout_s": "a new shard set not ready within this is given up (old set stays)",
    "reshard_overlap_s": "at the switch, held events this recent are delivered (duplicates)",
    "log_json": "JSON log lines instead of key=value",
    "rest_global_limit": "REST requests per second for the whole bot (Discord's default: 50)",
    "rest_limiter": "'local' or a redis:// URL for REST limits (default: --identify-limiter)",
    "rest_invalid_limit": "401/403/429 answers per 10 minutes before REST refuses (max 9500)",
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, all defaulting to None so that only typed flags override the
    environment and the TOML file. Booleans get ``--NAME`` and ``--no-NAME``."""
    from shardmgr.config import FIELD_TYPES, flag_name

    parser.add_argument("--config", metavar="FILE", help="a TOML settings file")
    for name, ftype in FIELD_TYPES.items():
        if name in _NO_FLAG:
            continue
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": _HELP.get(name)}
        if ftype is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = name.removesuffix("_s").upper()
        parser.add_argument(flag_name(name), **kwargs)


def _typed_flags(args: argparse.Namespace) -> dict[str, Any]:
    from shardmgr.config import FIELD_NAMES

    return {name: getattr(args, name, None) for name in FIELD_NAMES}


def _run_start(args: argparse.Namespace) -> int:
    from shardmgr import start
    from shardmgr.config import load_settings, unknown_env_warnings
    from shardmgr.token import check_token_shape, is_discord_api, load_token
    from workers import logsetup, redact

    settings = load_settings(_typed_flags(args), config_path=args.config)
    logsetup.configure(settings.log_level, settings.log_json)
    args.log_json_applied = settings.log_json
    for warning in unknown_env_warnings():
        log.warning(warning)
    token, source = load_token(args.token_file, settings.token_file, os.environ)
    redact.add_secret(token)
    try:
        check_token_shape(token, source)
    except UserError as exc:
        if is_discord_api(settings.api_base):
            raise
        # Other Discord-compatible servers (Spacebar issues JWTs) shape tokens their way.
        log.warning(f"{exc}; used anyway, since --api-base is not Discord's")
    if settings.admin_secret:
        redact.add_secret(settings.admin_secret)
    return start.start(settings, token)


def _find_supervisor(args: argparse.Namespace) -> str:
    """``--http`` if given, else the address the supervisor recorded in its state dir."""
    from shardmgr import addressfile
    from shardmgr.config import load_settings

    settings = load_settings(
        {"http": args.http, "state_dir": args.state_dir}, config_path=args.config
    )
    if args.http is None:
        recorded = addressfile.read_address(settings.state_dir)
        if recorded is None:
            raise UserError(
                "no running supervisor found (no address recorded at "
                f"{addressfile.address_path(settings.state_dir)}); pass the supervisor's "
                "--state-dir, or --http HOST:PORT"
            )
        return recorded
    address = settings.http_address
    return f"{address.connect_host}:{address.port}"


def _run_stop(args: argparse.Namespace) -> int:
    from shardmgr import stop
    from shardmgr.config import load_settings

    settings = load_settings({"state_dir": args.state_dir}, config_path=args.config)
    return stop.stop(settings.pid_path, keep_sessions=args.keep_sessions)


def _run_status(args: argparse.Namespace) -> int:
    from shardmgr import status

    return status.show(_find_supervisor(args))


def _run_presence(args: argparse.Namespace) -> int:
    from shardmgr import presence

    # Mistakes in the arguments are reported before looking for the supervisor.
    presence.build_body(args.status, args.activity, args.activity_type, args.url)
    presence.admin_secret()
    address = _find_supervisor(args)
    print(presence.send(address, args.status, args.activity, args.activity_type, args.url))
    return 0


def _run_dead_letters(args: argparse.Namespace) -> int:
    from shardmgr import deadletters_cli
    from shardmgr.config import load_settings

    if args.action == "list":
        settings = load_settings({"state_dir": args.state_dir}, config_path=args.config)
        return deadletters_cli.show(settings.state_dir, stacks=args.stacks)
    if args.target is None:
        raise UserError("dead-letters replay needs SHARD:SEQ (see dead-letters list)")
    deadletters_cli.parse_target(args.target)
    print(deadletters_cli.replay(_find_supervisor(args), args.target))
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from shardmgr.check import check

    print(check(args.handler, args.app_dir, args.start))
    return 0


def _run_reshard(args: argparse.Namespace) -> int:
    from shardmgr import presence, reshardcli

    presence.admin_secret()  # before looking for the supervisor
    print(reshardcli.request(_find_supervisor(args)))
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
        "TOML file, then defaults. The token comes from DISCORD_TOKEN or --token-file only. "
        "--handler mybot:handler imports mybot from the working directory (or --app-dir). "
        "Privileged intents (MESSAGE_CONTENT, GUILD_MEMBERS, GUILD_PRESENCES) must be enabled "
        "for the bot in the Discord developer portal and named in --intents, e.g. "
        "--intents GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT; without MESSAGE_CONTENT a message's "
        "content is empty.",
    )
    add_settings_arguments(start)
    start.set_defaults(run=_run_start)

    stop = sub.add_parser("stop", help="stop the running supervisor")
    stop.add_argument("--keep-sessions", action="store_true", help="suspend and save sessions")
    _add_supervisor_location(stop, http=False)
    stop.set_defaults(run=_run_stop)

    status = sub.add_parser("status", help="show the running supervisor's workers and shards")
    _add_supervisor_location(status)
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
    _add_supervisor_location(presence)
    presence.set_defaults(run=_run_presence)

    dead = sub.add_parser(
        "dead-letters",
        help="poison events delivered past (list), or hand one to the handler again (replay)",
    )
    dead.add_argument("action", choices=("list", "replay"))
    dead.add_argument("target", nargs="?", metavar="SHARD:SEQ", help="for replay")
    dead.add_argument("--stacks", action="store_true", help="list: show whole stacks")
    _add_supervisor_location(dead)
    dead.set_defaults(run=_run_dead_letters)
    check = sub.add_parser(
        "check",
        help="check that a handler imports and loads, as a rolling restart's canary does",
        description="Imports --handler, resolves it, instantiates a class and checks that it "
        "is an async function or has async on_<event> methods. Exit 0, or one line and exit 2.",
    )
    check.add_argument("--handler", required=True, metavar="MODULE:ATTR", help=_HELP["handler"])
    check.add_argument("--app-dir", default=".", metavar="DIR", help=_HELP["app_dir"])
    check.add_argument(
        "--start", action="store_true", help="also run the handler's start() (and close())"
    )
    check.set_defaults(run=_run_check)
    reshard = sub.add_parser(
        "reshard",
        help="reshard now if Discord recommends more shards (in the background, no downtime)",
        description="Asks the running supervisor (POST /reshard, SHARDMGR_ADMIN_SECRET) to "
        "start the recommended shard count beside the running one and switch over once it "
        "is ready.",
    )
    _add_supervisor_location(reshard)
    reshard.set_defaults(run=_run_reshard)

    demo = sub.add_parser("demo", help="a fake gateway plus `shardmgr start` (`make run`)")
    demo.add_argument("--shards", type=int, default=16, help="the fake's recommended shard count")
    demo.add_argument("--http", default="127.0.0.1:9191", help="the supervisor's HTTP address")
    demo.set_defaults(run=_run_demo)

    from shardmgr.fakegateway import cli as fake_cli

    fake = sub.add_parser("fake-gateway", help="run a local fake Discord gateway for tests")
    fake_cli.add_arguments(fake)
    fake.set_defaults(run=fake_cli.run)
    return parser


def _add_supervisor_location(parser: argparse.ArgumentParser, *, http: bool = True) -> None:
    parser.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="the supervisor's --state-dir (where it records its pid and HTTP address)",
    )
    if http:
        parser.add_argument(
            "--http",
            default=None,
            metavar="HOST:PORT",
            help="the supervisor's address (default: the one it recorded in --state-dir)",
        )
    parser.add_argument("--config", metavar="FILE", help="a TOML settings file")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a user mistake as one line and exit status 2. Abbreviations
    are off: ``--token VALUE`` must not quietly become ``--token-file VALUE``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        from workers import redact

        head, sep, extras = message.partition("unrecognized arguments: ")
        if sep:
            # Show only the unknown options, never the values after them: the value of a
            # mistyped ``--token`` is the token.
            names = [word.split("=", 1)[0] for word in extras.split() if word.startswith("-")]
            message = f"{head}{sep}{' '.join(names) or '(values not shown)'}"
            if "--token" in names:
                message += " (the token comes from DISCORD_TOKEN or --token-file FILE)"
        command = self.prog.removeprefix("shardmgr").strip()
        raise UserError(redact.redact(f"{command}: {message}" if command else message))


def _errors_as_json(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether ``--log-json`` is wanted, known before the settings are: the flag or
    ``SHARDMGR_LOG_JSON`` (a TOML ``log_json`` applies once the settings are loaded)."""
    for word in reversed(argv):
        if word in ("--log-json", "--no-log-json"):
            return word == "--log-json"
    return env.get("SHARDMGR_LOG_JSON", "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: Sequence[str] | None = None) -> int:
    from workers import logsetup

    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _errors_as_json(argv, os.environ)
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except UserError as exc:
        if getattr(args, "log_json_applied", as_json):
            print(logsetup.json_line(str(exc), "error"), file=sys.stderr, flush=True)
        else:
            print(f"shardmgr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not getattr(args, "log_json_applied", as_json):
            raise
        detail = "".join(traceback.format_exception(exc))
        print(
            logsetup.json_line(f"{type(exc).__name__}: {exc}", "critical", exc=detail),
            file=sys.stderr,
            flush=True,
        )
        return 1

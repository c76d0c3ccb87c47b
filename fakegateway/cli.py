"""The fake gateway's command line, generated from ``FakeConfig``: one flag per field
(``--`` + the name without ``_s``, dashes for underscores; booleans get ``--x``/``--no-x``),
plus the flags documented before it was generated, still accepted. ``to_argv`` is the
inverse (``spawn`` uses it). Run it as ``python -m fakegateway`` or ``shardmgr fake-gateway``:
the first line of stdout is the base URL it bound; logs go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final

from fakegateway.config import Bucket, FakeConfig, make_token
from fakegateway.server import FakeGateway
from workers import logsetup, redact
from workers.protocol import parse_intents

TOKEN_ENV: Final = "SHARDMGR_FAKE_TOKEN"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Flags users already rely on, kept beside the generated ones.
ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "chaos_seed": ("--chaos",),
    "invalid_session_delay_s": ("--identify-violation-delay",),
    "expired_resume_close_code": ("--expired-resume-code",),
}
# Old switches that turn off a boolean that is on by default.
OFF_SWITCHES: Final[dict[str, str]] = {
    "violation_consumes_start": "--violation-is-free",
    "token_reset_on_exhaustion": "--no-token-reset",
}
FIELDS: Final = tuple(dataclasses.fields(FakeConfig))
_HINTS: Final[dict[str, Any]] = typing.get_type_hints(FakeConfig)
_DEFAULTS: Final = FakeConfig()


class UsageError(Exception):
    """A bad flag or value: one line naming what to fix, exit status 2."""

    exit_code = 2


def flag(name: str) -> str:
    return "--" + name.removesuffix("_s").replace("_", "-")


def parse_bucket(text: str) -> Bucket:
    """``N/S``: N requests per S seconds."""
    count, sep, per = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return int(count), float(per)
    except ValueError:
        raise ValueError(f"{text!r} is not N/S (requests per seconds), e.g. 5/5") from None


def format_bucket(bucket: Bucket) -> str:
    return f"{bucket[0]}/{bucket[1]:g}"


def _expired_code(text: str) -> int | None:
    code = int(text)
    # 0 has always meant "answer op 9 instead of closing".
    return code or None


_PARSERS: Final[dict[str, Callable[[str], Any]]] = {
    "privileged_intents": parse_intents,
    "rest_message_bucket": parse_bucket,
    "rest_route_bucket": parse_bucket,
    "expired_resume_close_code": _expired_code,
}
_FORMATTERS: Final[dict[str, Callable[[Any], str]]] = {
    "rest_message_bucket": format_bucket,
    "rest_route_bucket": format_bucket,
}


def _is_optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _value_type(name: str) -> Callable[[str], Any]:
    hint = _HINTS[name]
    optional = _is_optional(hint)
    base: Callable[[str], Any] = _PARSERS.get(name) or (
        next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    )

    def convert(text: str) -> Any:
        if optional and text.strip().lower() in ("", "none"):
            return None
        try:
            return base(text)
        except ValueError as exc:
            detail = str(exc) if name in _PARSERS else f"{text!r} is not a valid value"
            raise argparse.ArgumentTypeError(detail) from None

    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``FakeConfig`` field; one not given leaves no attribute (the field's
    default applies), so that an explicit ``none`` can still mean None."""
    for field in FIELDS:
        name = field.name
        text = field.metadata.get("help", "")
        shown = "from env or any" if name == "token" else getattr(_DEFAULTS, name)
        if isinstance(shown, tuple):
            shown = format_bucket(shown)
        help_text = f"{text} (default {shown})".replace("%", "%%")
        if _HINTS[name] is bool:
            parser.add_argument(
                flag(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            if name in OFF_SWITCHES:
                parser.add_argument(
                    OFF_SWITCHES[name],
                    dest=name,
                    action="store_const",
                    const=False,
                    default=argparse.SUPPRESS,
                    help=f"same as --no-{flag(name)[2:]}",
                )
            continue
        parser.add_argument(
            flag(name),
            *ALIASES.get(name, ()),
            dest=name,
            type=_value_type(name),
            default=argparse.SUPPRESS,
            metavar=name.removesuffix("_s").upper(),
            help=help_text,
        )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")
    parser.add_argument("--log-json", action="store_true", help="JSON log lines")


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    values = {f.name: getattr(args, f.name) for f in FIELDS if hasattr(args, f.name)}
    token = values.get("token") or os.environ.get(TOKEN_ENV)
    if token == "generate":
        token = make_token(values.get("bot_id", _DEFAULTS.bot_id))
        print(f"token: {token}", file=sys.stderr, flush=True)
    values["token"] = token
    try:
        return FakeConfig(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def to_argv(config: FakeConfig) -> list[str]:
    """The flags that make ``config`` (the inverse of ``config_from_args``), except the
    token, which must travel in ``$SHARDMGR_FAKE_TOKEN``: on argv, ``ps`` would show it."""
    out: list[str] = []
    for field in FIELDS:
        name = field.name
        value = getattr(config, name)
        if name == "token" or value == getattr(_DEFAULTS, name):
            continue
        if isinstance(value, bool):
            out.append(flag(name) if value else f"--no-{flag(name)[2:]}")
        elif value is None:
            out += [flag(name), "none"]
        else:
            out += [flag(name), _FORMATTERS.get(name, str)(value)]
    return out


async def _serve(config: FakeConfig) -> None:
    gateway = FakeGateway(config)
    try:
        await gateway.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {config.host}:{config.port} ({exc.strerror}); pick another --port"
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
    if str(args.log_level).upper() not in LOG_LEVELS:
        raise UsageError("--log-level must be DEBUG, INFO, WARNING or ERROR")
    logsetup.configure(args.log_level, args.log_json)
    if config.token:
        redact.add_secret(config.token)
    import uvloop

    uvloop.run(_serve(config))
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fakegateway", description="A local fake Discord (REST and gateway) for tests"
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fakegateway``: the same as ``shardmgr fake-gateway``."""
    try:
        return run(build_parser().parse_args(argv))
    except UsageError as exc:
        print(f"fakegateway: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

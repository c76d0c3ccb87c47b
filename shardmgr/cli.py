"""``shardmgr`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shardmgr.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a user mistake as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shardmgr", description="Multi-process shard manager for Discord bots")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from shardmgr.fakegateway import cli as fake_cli

    fake = sub.add_parser("fake-gateway", help="run a local fake Discord gateway for tests")
    fake_cli.add_arguments(fake)
    fake.set_defaults(run=fake_cli.run)
    return parser


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

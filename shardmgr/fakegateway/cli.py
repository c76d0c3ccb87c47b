"""``shardmgr fake-gateway``: the fake's generated command line (``fakegateway.cli``), its
mistakes reported the way every shardmgr command reports them (one line, exit 2)."""

from __future__ import annotations

import argparse

from fakegateway import cli as _cli
from shardmgr.errors import UserError

add_arguments = _cli.add_arguments


def run(args: argparse.Namespace) -> int:
    try:
        return _cli.run(args)
    except _cli.UsageError as exc:
        raise UserError(f"fake-gateway: {exc}") from None

"""``shardmgr check --handler mod:attr``: the import check a rolling restart's canary does,
offline, for CI and deploy scripts. Exit 0 with one line saying what was loaded, or one line
saying what is wrong and exit 2."""

from __future__ import annotations

import asyncio
import os

from shardmgr.errors import UserError
from shardmgr.start import check_handler, use_app_dir
from workers.gateway import Gateway
from workers.handlercheck import describe, start_failure
from workers.handlers import Handler


def check(path: str, app_dir: str, run_start: bool) -> str:
    """The success line; raises ``UserError`` with the failure's one line."""
    app_path = os.path.abspath(app_dir)
    if not os.path.isdir(app_path):
        raise UserError(f"--app-dir {app_dir} is not a directory")
    use_app_dir(app_path)
    handler = check_handler(path, app_path)
    line = f"ok: {path} is {describe(handler)}"
    if run_start:
        asyncio.run(_start_and_close(path, handler))
        line += "; its start() returned"
    return line


async def _start_and_close(path: str, handler: Handler) -> None:
    try:
        # No shards: start() may keep the gateway, but nothing connects here.
        await handler.start(Gateway({}, 1))
    except Exception as exc:
        raise UserError(start_failure(path, exc)) from None
    try:
        await handler.close()
    except Exception as exc:
        raise UserError(f"handler {path!r}: close() raised {exc!r}") from None

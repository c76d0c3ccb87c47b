"""``python -m workers --ipc-fd FD``: one worker process, started by the supervisor."""

from __future__ import annotations

import argparse
import os
import sys

import uvloop

from workers.hardening import core_dumps_allowed, protect_process
from workers.ipc_client import serve_fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", allow_abbrev=False)
    parser.add_argument(
        "--ipc-fd", type=int, required=True, help="the worker's end of the supervisor socketpair"
    )
    args = parser.parse_args(argv)
    # Before the token arrives (in Start, over the pipe).
    protect_process(core_dumps_allowed(os.environ))
    return uvloop.run(serve_fd(args.ipc_fd))


if __name__ == "__main__":
    sys.exit(main())

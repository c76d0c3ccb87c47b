"""``python -m workers --ipc-fd FD``: one worker process, started by the supervisor."""

from __future__ import annotations

import argparse
import sys

import uvloop

from workers.ipc_client import serve_fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", allow_abbrev=False)
    parser.add_argument(
        "--ipc-fd", type=int, required=True, help="the worker's end of the supervisor socketpair"
    )
    args = parser.parse_args(argv)
    return uvloop.run(serve_fd(args.ipc_fd))


if __name__ == "__main__":
    sys.exit(main())

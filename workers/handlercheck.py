"""What a handler check says, in one line each: the canary of a rolling restart and
``shardmgr check`` load a handler the same way and report its failure the same way."""

from __future__ import annotations

import traceback

from workers.handlers import Handler, _event_methods


def failure_line(exc: BaseException) -> str:
    """The exception's last traceback line (``ValueError: no such table``)."""
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type(exc).__name__


def start_failure(path: str, exc: BaseException) -> str:
    return f"handler {path!r}: start() raised {failure_line(exc)}"


def describe(handler: Handler) -> str:
    """What was loaded, for the success line of ``shardmgr check``."""
    if handler.function is not None:
        return "an async function"
    methods = sorted(_event_methods(handler.target))
    parts = [*methods, *(["handle_batch"] if handler.batch is not None else [])]
    return "an object with " + ", ".join(parts)

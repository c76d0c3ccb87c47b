"""Structured, token-safe logging for both processes: ``key=value`` text or JSON lines."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Final, TextIO

from workers import redact

# A worker's stderr line longer than this is cut into pieces (a runaway print must not grow
# the supervisor's buffers); each piece still becomes one JSON line.
STDERR_LINE_BYTES: Final = 64 * 1024

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def fields(**kw: Any) -> dict[str, Any]:
    """``log.info("shard resumed", extra=fields(shard=3, seq=12))``."""
    return {"extra_fields": kw}


class KeyValueFormatter(logging.Formatter):
    def __init__(self, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        extra: dict[str, Any] = dict(getattr(record, "extra_fields", {}) or {})
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "extra_fields":
                extra[key] = value
        ts = _timestamp(record.created)
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if self.as_json:
            doc: dict[str, Any] = {
                "ts": ts,
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
                **{k: _plain(v) for k, v in extra.items()},
            }
            if exc:
                doc["exc"] = exc
            return redact.redact(json.dumps(doc, default=str))
        parts = [ts, record.levelname.lower(), record.name, _quote(record.getMessage())]
        parts += [f"{k}={_quote(str(_plain(v)))}" for k, v in extra.items()]
        line = " ".join(parts)
        if exc:
            line += "\n" + exc
        return redact.redact(line)


def _timestamp(created: float) -> str:
    ms = int((created % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def json_line(msg: str, level: str = "info", logger: str = "shardmgr", **extra: Any) -> str:
    """One log line in the JSON formatter's shape, for text that does not pass through
    logging (the plan, errors raised before logging is set up, a worker's raw stderr)."""
    doc: dict[str, Any] = {"ts": _timestamp(time.time()), "level": level, "logger": logger}
    doc["msg"] = msg
    doc.update({k: _plain(v) for k, v in extra.items()})
    return redact.redact(json.dumps(doc))


def announcer(as_json: bool, out: TextIO | None = None) -> Callable[[str], None]:
    """Prints what the operator must see whatever the log level (the plan, the address):
    plain text, or with ``--log-json`` one JSON object per announcement."""

    def announce(text: str) -> None:
        stream = out or sys.stdout
        print(json_line(text) if as_json else text, file=stream, flush=True)

    return announce


def wrap_stderr_line(raw: bytes, worker_id: int) -> str:
    """A line a worker wrote to stderr outside logging (a traceback before its logging was
    set up, a faulthandler stack dump, a handler's ``print``), as one JSON log line; a line
    that already is a JSON object (the worker's own log) passes through unchanged."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if text.startswith("{") and text.endswith("}"):
        try:
            if isinstance(json.loads(text), dict):
                return redact.redact(text)
        except ValueError:
            pass
    return json_line(text, level="warning", logger="workers.stderr", worker=worker_id)


async def forward_stderr(
    reader: asyncio.StreamReader, worker_id: int, as_json: bool, out: TextIO | None = None
) -> None:
    """Copy a worker's stderr pipe to ours until EOF, each line wrapped as JSON when
    ``as_json`` (the supervisor starts the worker with ``stderr=PIPE`` and runs this as a task
    it owns); pieces of at most ``STDERR_LINE_BYTES``, so memory stays bounded."""
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial
            if not raw:
                return
        except asyncio.LimitOverrunError as exc:
            raw = await reader.read(min(exc.consumed, STDERR_LINE_BYTES) or STDERR_LINE_BYTES)
        stream = out or sys.stderr
        if as_json:
            print(wrap_stderr_line(raw, worker_id), file=stream, flush=True)
        else:
            stream.write(redact.redact(raw.decode("utf-8", "replace")))
            stream.flush()


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _quote(text: str) -> str:
    return f'"{text}"' if (" " in text or not text) else text


def configure(level: str = "INFO", as_json: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(as_json))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # KeyValueFormatter redacts the whole finished line (extra fields included); records are
    # also scrubbed as they are created, for any handler the bot adds with its own format.
    redact.install()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

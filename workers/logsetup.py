"""Structured, token-safe logging for both processes: ``key=value`` text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from workers import redact

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
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
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

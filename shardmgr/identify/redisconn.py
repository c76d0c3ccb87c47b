"""Redis plumbing shared by the identify limiter and the stream sink: URL checks, clients,
passwords kept out of logs, and one report per outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from shardmgr.errors import UserError
from workers import redact
from workers.backoff import Backoff
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

log = logging.getLogger(__name__)

SCHEMES: Final = ("redis", "rediss", "unix")
# Repeat the "still unavailable" warning this often during a long outage.
OUTAGE_REMINDER_S: Final = 30.0


def safe_url(url: str) -> str:
    """The URL without its password, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def connect(
    url: str,
    *,
    socket_timeout_s: float,
    what: str,
    on_connect: Callable[[Any], Awaitable[None]] | None = None,
) -> Any:
    """A redis.asyncio client for ``redis://``, ``rediss://`` or ``unix://`` URLs; a bad URL
    is a UserError naming ``what`` (the flag it came from). ``on_connect`` replaces the
    handshake of every new connection (it must call ``conn.on_connect()`` itself)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise UserError(
            f"{what}: {safe_url(url)!r} is not a Redis URL "
            "(expected redis://host:port/db, rediss://... or unix:///path)"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise UserError(f"{what}: bad port in {safe_url(url)!r}") from exc
    if parts.password:
        redact.add_secret(parts.password)
    # Imported here: the rest of this module (safe_url) must work without the redis extra.
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        return aioredis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            # One quick retry covers a pooled connection that Redis closed while idle; real
            # outages are handled (and reported) by the caller's own backoff.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            redis_connect_func=on_connect,
        )
    except ValueError as exc:
        raise UserError(f"{what}: {exc} in {safe_url(url)!r}") from exc


class Outage:
    """Availability of one Redis user: one warning when calls start failing, a reminder
    every ``OUTAGE_REMINDER_S``, one line when it works again, the retry delays (capped
    exponential backoff with jitter), and an optional push callback for metrics."""

    def __init__(
        self,
        *,
        lost: str,
        still: str,
        back: str,
        retry_base_s: float,
        retry_cap_s: float,
        clock: Clock = REAL_CLOCK,
        on_availability: Callable[[bool], None] | None = None,
    ) -> None:
        self._lost = lost
        self._still = still
        self._back = back
        self._clock = clock
        self._backoff = Backoff(base_s=retry_base_s, cap_s=retry_cap_s, clock=clock)
        self._on_availability = on_availability
        self.available = True
        self.since: float | None = None  # wall clock, for /status
        self._started = 0.0
        self._last_reminder = 0.0
        self.count = 0

    def failed(self, exc: BaseException, **extra: Any) -> float:
        """Note a failed call; returns how long to wait before the next try."""
        now = self._clock.monotonic()
        if self.available:
            self.available = False
            self.since = time.time()
            self._started = self._last_reminder = now
            self.count += 1
            if self._on_availability is not None:
                self._on_availability(False)
            log.warning(self._lost, extra=fields(error=str(exc) or type(exc).__name__, **extra))
        elif now - self._last_reminder >= OUTAGE_REMINDER_S:
            self._last_reminder = now
            log.warning(self._still, extra=fields(waited_s=round(now - self._started, 1), **extra))
        return self._backoff.next_delay()

    def succeeded(self, **extra: Any) -> None:
        if self.available:
            return
        waited = self._clock.monotonic() - self._started
        self.available = True
        self.since = None
        self._backoff.attempt = 0
        log.info(self._back, extra=fields(outage_s=round(waited, 2), **extra))
        if self._on_availability is not None:
            self._on_availability(True)

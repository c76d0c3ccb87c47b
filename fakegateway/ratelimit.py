"""Discord's REST rate limits as the fake enforces them: a global limit per bot (a window of
one second) and per-route buckets keyed by the route's bucket id and its top-level ids
(channel, guild, webhook/interaction + token). Pure bookkeeping on an injected clock: the
REST middleware asks ``decide`` before a request and turns the answer into headers.

Windows are fixed and start at the first request after the previous one ended, as Discord's
``X-RateLimit-Reset-After`` describes them; a request refused with 429 spends nothing."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Final

from workers.clock import Clock

GLOBAL_WINDOW_S: Final = 1.0
# Buckets whose window ended are dropped once the table grows past this.
MAX_BUCKETS: Final = 10_000
# Route templates whose requests are interaction responses: not under the global limit.
GLOBAL_EXEMPT_PREFIXES: Final = ("/interactions/", "/webhooks/")
MESSAGE_SEND_ROUTE: Final = "POST /channels/{channel_id}/messages"
MAJOR_PARAMS: Final = ("channel_id", "guild_id", "webhook_id", "interaction_id")


def bucket_id(route: str) -> str:
    """An opaque id per route (Discord's ``X-RateLimit-Bucket`` is a hash too)."""
    return hashlib.sha256(route.encode()).hexdigest()[:16]


class Window:
    """``limit`` requests per ``per_s`` seconds, counted from the window's first request."""

    __slots__ = ("limit", "per_s", "reset_at", "used")

    def __init__(self, limit: int, per_s: float) -> None:
        self.limit = limit
        self.per_s = per_s
        self.used = 0
        self.reset_at = 0.0

    def refresh(self, now: float) -> None:
        if now >= self.reset_at:
            self.used = 0
            self.reset_at = now + self.per_s

    def exhausted(self, now: float) -> bool:
        self.refresh(now)
        return self.used >= self.limit

    def spend(self, now: float) -> None:
        self.refresh(now)
        self.used += 1


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter says about one request, and the headers' values."""

    allowed: bool
    # "global" or "user" when refused.
    scope: str | None
    retry_after: float
    bucket: str
    limit: int
    remaining: int
    reset_after: float
    bucket_exhausted: bool
    global_exhausted: bool


class RateLimits:
    """Every bucket of one bot, and the global window."""

    def __init__(
        self,
        clock: Clock,
        global_limit: int,
        message_bucket: tuple[int, float],
        route_bucket: tuple[int, float],
    ) -> None:
        self._clock = clock
        # 0: no global limit.
        self.global_limit = global_limit
        self._global = Window(max(1, global_limit), GLOBAL_WINDOW_S)
        self._message_bucket = message_bucket
        self._route_bucket = route_bucket
        self._buckets: collections.OrderedDict[tuple[str, str], Window] = collections.OrderedDict()

    def _shape(self, route: str) -> tuple[int, float]:
        return self._message_bucket if route == MESSAGE_SEND_ROUTE else self._route_bucket

    def _window(self, route: str, major: str) -> Window:
        key = (route, major)
        window = self._buckets.get(key)
        if window is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._evict()
            window = Window(*self._shape(route))
            self._buckets[key] = window
        return window

    def _evict(self) -> None:
        now = self._clock.monotonic()
        for key in [k for k, w in self._buckets.items() if w.reset_at <= now]:
            del self._buckets[key]
        while len(self._buckets) >= MAX_BUCKETS:
            self._buckets.popitem(last=False)

    def decide(self, route: str, major: str) -> Decision:
        """Check one request of ``route`` (``"POST /channels/{channel_id}/messages"``) on the
        top-level resource ``major``; spend from its buckets when it is allowed."""
        now = self._clock.monotonic()
        window = self._window(route, major)
        exempt = self.global_limit <= 0 or route.split(" ", 1)[-1].startswith(
            GLOBAL_EXEMPT_PREFIXES
        )
        global_exhausted = not exempt and self._global.exhausted(now)
        bucket_exhausted = window.exhausted(now)
        scope: str | None = None
        retry_after = 0.0
        if global_exhausted:
            scope, retry_after = "global", self._global.reset_at - now
        elif bucket_exhausted:
            scope, retry_after = "user", window.reset_at - now
        else:
            window.spend(now)
            if not exempt:
                self._global.spend(now)
        return Decision(
            allowed=scope is None,
            scope=scope,
            retry_after=max(0.0, retry_after),
            bucket=bucket_id(route),
            limit=window.limit,
            remaining=max(0, window.limit - window.used),
            reset_after=max(0.0, window.reset_at - now),
            bucket_exhausted=bucket_exhausted,
            global_exhausted=global_exhausted,
        )


class RestCounters:
    """Behind ``GET /_fake/rest``: what the REST side served."""

    def __init__(self) -> None:
        self.requests = 0
        self.by_route: collections.Counter[str] = collections.Counter()
        self.rate_limited = 0
        self.limit_violations = 0
        self.global_violations = 0
        self.invalid_requests = 0

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "rate_limited": self.rate_limited,
            "limit_violations": self.limit_violations,
            "global_violations": self.global_violations,
            "invalid_requests": self.invalid_requests,
        }

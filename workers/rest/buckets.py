"""Rate-limit decisions as pure functions of (state, headers, now): what to wait before a
send, what a response teaches, what to do after it. The client performs them; the tests
are tables. Times are the injected clock's monotonic seconds."""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Mapping
from typing import Final

import msgspec

# 5xx answers are retried this many times with backoff (0.5, 1, 2 s ... capped).
SERVER_RETRIES: Final = 3
BACKOFF_BASE_S: Final = 0.5
BACKOFF_CAP_S: Final = 8.0
# 429s are retried (after their retry_after) this many times before RateLimited.
RATE_LIMIT_RETRIES: Final = 3
# Discord bans an IP after 10,000 401/403/429 answers in 10 minutes.
INVALID_WINDOW_S: Final = 600.0
DISCORD_INVALID_LIMIT: Final = 10_000
# A global-limit token may be sent only within this long after it was granted; the ledger
# counts a grant against the window W = 1 s + LEASE_S + MARGIN_S, so that the sends of any
# one second, as they reach Discord (MARGIN_S absorbs the jitter of writes and transit),
# never exceed the limit.
LEASE_S: Final = 0.04
MARGIN_S: Final = 0.04
GLOBAL_WINDOW_S: Final = 1.0 + LEASE_S + MARGIN_S


class Scope(enum.StrEnum):
    USER = "user"
    GLOBAL = "global"
    SHARED = "shared"


class Headers(msgspec.Struct, frozen=True):
    """The rate-limit headers of one answer (None: absent or unreadable)."""

    bucket: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    is_global: bool = False
    scope: Scope | None = None
    retry_after: float | None = None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = float(value)
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) and parsed >= 0 else None


def _int(value: str | None) -> int | None:
    parsed = _float(value)
    return int(parsed) if parsed is not None else None


def parse_headers(headers: Mapping[str, str]) -> Headers:
    """Header names are case-insensitive in aiohttp's mapping; bad values are ignored."""
    scope_text = headers.get("X-RateLimit-Scope")
    try:
        scope = Scope(scope_text) if scope_text else None
    except ValueError:
        scope = None
    bucket = headers.get("X-RateLimit-Bucket")
    return Headers(
        bucket=bucket[:64] if bucket else None,
        limit=_int(headers.get("X-RateLimit-Limit")),
        remaining=_int(headers.get("X-RateLimit-Remaining")),
        reset_after=_float(headers.get("X-RateLimit-Reset-After")),
        is_global=headers.get("X-RateLimit-Global", "").lower() == "true",
        scope=scope,
        retry_after=_float(headers.get("Retry-After")),
    )


class BucketState(msgspec.Struct):
    limit: int
    remaining: int
    reset_at: float


def wait_before_send(state: BucketState | None, now: float) -> float:
    """Seconds to wait before the next request on this bucket may go (0: now). An unknown
    bucket (None) goes at once: the caller sends one request at a time on it."""
    if state is None or state.remaining > 0 or state.reset_at <= now:
        return 0.0
    return state.reset_at - now


def spend(state: BucketState | None, now: float) -> None:
    """One request leaves on the bucket."""
    if state is None:
        return
    if state.reset_at <= now:
        state.remaining = state.limit  # a new window began while we were not looking
        state.reset_at = now + 1.0  # until the answer tells the real reset
    state.remaining = max(0, state.remaining - 1)


def learn(headers: Headers, now: float) -> BucketState | None:
    """What an answer says about its bucket (None: it carries no bucket headers)."""
    if headers.limit is None or headers.remaining is None or headers.reset_after is None:
        return None
    return BucketState(headers.limit, headers.remaining, now + headers.reset_after)


class Outcome(enum.Enum):
    DONE = "done"  # a success: return the body
    FAIL = "fail"  # raise the typed error
    RETRY = "retry"  # wait ``delay`` and send again


class Decision(msgspec.Struct, frozen=True):
    outcome: Outcome
    delay: float = 0.0
    scope: Scope | None = None  # for a 429
    counts_invalid: bool = False  # counts toward Cloudflare's invalid-request limit


def retry_after(headers: Headers, body_retry_after: float | None) -> float:
    """The body's ``retry_after`` is finer than the header; both missing: one second."""
    if body_retry_after is not None and math.isfinite(body_retry_after):
        return max(0.0, body_retry_after)
    if headers.retry_after is not None:
        return headers.retry_after
    return 1.0


def backoff(attempt: int) -> float:
    """Capped exponential delay before the ``attempt``-th retry (1-based) of a 5xx."""
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1)))


def decide(
    status: int,
    headers: Headers,
    body_retry_after: float | None,
    body_global: bool,
    attempt: int,
) -> Decision:
    """What to do with an answer; ``attempt`` counts sends of this request, from 1."""
    if status < 400:
        return Decision(Outcome.DONE)
    if status == 429:
        scope = headers.scope
        if scope is None:
            scope = Scope.GLOBAL if headers.is_global or body_global else Scope.USER
        invalid = scope is not Scope.SHARED
        if attempt > RATE_LIMIT_RETRIES:
            return Decision(Outcome.FAIL, scope=scope, counts_invalid=invalid)
        delay = retry_after(headers, body_retry_after)
        return Decision(Outcome.RETRY, delay, scope=scope, counts_invalid=invalid)
    if status >= 500 and status != 501:
        if attempt > SERVER_RETRIES:
            return Decision(Outcome.FAIL)
        return Decision(Outcome.RETRY, backoff(attempt))
    return Decision(Outcome.FAIL, counts_invalid=status in (401, 403))


class InvalidRequests:
    """401/403/429 answers (not shared-scope 429s) over a 10-minute sliding window.
    Bounded: it never holds more than ``limit`` timestamps, since at ``limit`` sends stop."""

    def __init__(self, limit: int, window_s: float = INVALID_WINDOW_S) -> None:
        if not 0 < limit <= DISCORD_INVALID_LIMIT:
            raise ValueError(f"invalid-request limit must be 1..{DISCORD_INVALID_LIMIT}")
        self.limit = limit
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque(maxlen=limit)

    def count(self, now: float) -> int:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        return len(self._times)

    def add(self, now: float) -> None:
        self.count(now)
        self._times.append(now)

    def refuse_for(self, now: float) -> float:
        """0 when sending is allowed; else seconds until the oldest counted answer ages out."""
        if self.count(now) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now


class GlobalLedger:
    """Grants of the global limit over a sliding window: at most ``limit`` tokens granted
    in any ``window_s``. A token is only good for ``LEASE_S`` after its grant (see
    GLOBAL_WINDOW_S), so sends never exceed ``limit`` in any second."""

    def __init__(self, limit: int, window_s: float = GLOBAL_WINDOW_S) -> None:
        if limit < 1:
            raise ValueError("the global limit must be at least 1 request per second")
        self.limit = limit
        self.window_s = window_s
        self._grants: collections.deque[tuple[float, int]] = collections.deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        while self._grants and self._grants[0][0] <= now - self.window_s:
            self._used -= self._grants.popleft()[1]

    def available(self, now: float) -> int:
        self._expire(now)
        return self.limit - self._used

    def take(self, now: float, want: int) -> int:
        """Grant up to ``want`` tokens now (possibly 0)."""
        granted = min(max(0, want), self.available(now))
        if granted:
            self._grants.append((now, granted))
            self._used += granted
        return granted

    def next_free_in(self, now: float) -> float:
        """Seconds until a token frees (0 if one is free now)."""
        if self.available(now) > 0:
            return 0.0
        return self._grants[0][0] + self.window_s - now

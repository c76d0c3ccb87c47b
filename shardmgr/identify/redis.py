"""Identify coordination for supervisors on several hosts, through one Redis.

Every supervisor of one bot shares three things in Redis, all under one hash tag
(``{<prefix>:<bot id>}``) so a Redis Cluster keeps them in one slot and the Lua scripts
stay atomic:

``identify:bucket:<n>``
    The lease of bucket ``n`` (``shard_id % max_concurrency``). Holding it *is* the
    permission to identify. A grant takes it (``SET NX``) with the holder's id for up to
    ``hold_timeout_s``: Discord times the window from when it reads the IDENTIFY, so the
    lease lasts until the worker reports that the gateway answered it (``sent``), which
    resets it to expire one window later.
    A grant that will not be used (``release``) shortens it to one window from the grant.
    Nobody deletes a lease that was used; it simply expires, so a supervisor that dies while
    holding one blocks the bucket for one window after the send, or ``hold_timeout_s`` if it
    died before the send was reported.
``identify:budget``
    ``session_start_limit.remaining``, with the key's TTL as ``reset_after``. The first
    supervisor seeds it from discovery; every grant decrements it in the same script that
    takes the lease, so several hosts together never spend more than Discord allows.
``identify:epoch``
    A random id written once per Redis lifetime. A supervisor that finds it missing or
    changed knows Redis lost its data (a restart without persistence, a flush) and that a
    lease granted just before may have vanished: it fences every bucket for one window
    before anyone identifies again.
    A restart from an AOF/RDB snapshot, or a failover to a lagging replica, keeps the epoch
    but loses the newest leases; Redis' ``run_id`` tells (``redisrestart.py``). Every new
    connection checks it before it runs anything, and so does every sync (at least every
    ``RECHECK_S`` while identifying): a changed run_id, a server younger than a window at
    our first look, an INFO we may not read, or a reconnect after an outage fences every
    bucket for one window, on that connection, before our next grant.
``identify:grants``
    A capped stream with one entry per grant (shard, bucket, holder, remaining); the entry
    ids are Redis' own clock, so operators and tests can audit identify timing.

Waiting barely polls: a busy bucket answers with its lease's remaining TTL and the waiter
sleeps exactly that long (plus a little jitter), so each waiter asks Redis about once per
window. Only a lease still waiting for its answer (usually one round trip) is asked again every
tenth of a window, since its expiry will move. Within one process, waiters of a bucket queue
FIFO behind a local lock and only the head talks to Redis; this process's own ``sent`` and
``release`` wake it at once.

If Redis cannot be reached, ``acquire`` keeps waiting (never grants without Redis), logs
one warning, exposes ``redis_available``/``waiting_since`` for metrics, and retries with
capped exponential backoff and jitter until Redis answers again. Connected shards are not
affected: RESUME never goes through the limiter. An exhausted budget is waited out too:
when its key expires it is seeded again (from ``refresh`` when given).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec
from redis.exceptions import RedisError, ResponseError

from shardmgr.errors import UserError
from shardmgr.identify import redis_scripts as scripts
from shardmgr.identify.limiter import (
    MIN_BUDGET_WAIT_S,
    BudgetExhausted,
    BudgetWait,
    RefreshLimits,
    SessionStartLimit,
)
from shardmgr.identify.redisconn import Outage, connect, safe_url
from shardmgr.identify.redisrestart import Run, watched_client
from shardmgr.token import bot_id_from_token as _bot_id
from workers.clock import REAL_CLOCK, Clock, wait_event
from workers.logsetup import fields
from workers.permits import HOLD_TIMEOUT_S

__all__ = ["RedisIdentifyLimiter", "bot_id_from_token", "connect", "grant_log", "safe_url"]

log = logging.getLogger(__name__)

# Discord refills session starts 24 h after the first identify of a window; when our copy of
# reset_after has run out we assume a fresh full day, which can only make us more careful.
DAY_MS: Final = 24 * 3600 * 1000
GRANT_LOG_LEN: Final = 1000
# Look at Redis' run_id this often while identifying, beside every new connection: a
# failover behind a proxy can keep our connection open.
RECHECK_S: Final = 30.0


def bot_id_from_token(token: str) -> str:
    """The bot's user id (the key namespace), or a UserError for a malformed token."""
    bot_id = _bot_id(token)
    if bot_id is None:
        raise UserError("the bot token is malformed: its first part is not a base64 user id")
    return str(bot_id)


class _Outcome(msgspec.Struct, frozen=True):
    code: int
    value: int = 0
    ttl_ms: int = 0


class _Hold:
    """One of our grants whose IDENTIFY is not reported sent yet."""

    __slots__ = ("bucket", "granted_at", "holder", "until")

    def __init__(self, bucket: int, holder: str, granted_at: float, until: float) -> None:
        self.bucket = bucket
        self.holder = holder
        self.granted_at = granted_at
        self.until = until


class RedisIdentifyLimiter:
    """``IdentifyLimiter`` shared by every supervisor of one bot through Redis.

    ``url``: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    ``window_s``: the identify window per bucket (5 s on Discord).
    ``margin_s``: added to every lease. Timing from the gateway's answer is already late
    rather than early; the margin is a reserve for clock rounding in Redis' PX expiry and
    for Discord's own accounting. Default: 2% of the window, between
    20 ms and 100 ms.
    ``hold_timeout_s``: how long a grant may wait for ``sent`` or ``release`` (at least one
    lease); after that its lease expires and the bucket moves on.
    ``bot_id`` or ``token``: namespaces the keys so bots sharing one Redis never collide.
    ``on_availability``: called with False when Redis stops answering and True when it is
    back (the same transitions as ``redis_available``), for metrics that want a push.
    ``refresh``: a discovery call for the real numbers once the shared budget has expired.
    """

    def __init__(
        self,
        url: str,
        *,
        window_s: float,
        margin_s: float | None = None,
        hold_timeout_s: float = HOLD_TIMEOUT_S,
        key_prefix: str = "shardmgr",
        bot_id: str | None = None,
        token: str | None = None,
        clock: Clock = REAL_CLOCK,
        retry_base_s: float = 0.1,
        retry_cap_s: float = 2.0,
        socket_timeout_s: float = 2.0,
        on_availability: Callable[[bool], None] | None = None,
        refresh: RefreshLimits | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if bot_id is None:
            if token is None:
                raise ValueError("RedisIdentifyLimiter needs bot_id or token")
            bot_id = bot_id_from_token(token)
        self.url = safe_url(url)
        if margin_s is None:
            margin_s = min(max(0.02 * window_s, 0.02), 0.1)
        if margin_s < 0:
            raise ValueError("margin_s must not be negative")
        self.window_s = window_s
        # Every lease, fence and own-grant memory uses the padded window.
        self.lease_s = window_s + margin_s
        self._lease_ms = max(1, math.ceil(self.lease_s * 1000))
        self.hold_timeout_s = max(hold_timeout_s, self.lease_s)
        self._hold_ms = max(self._lease_ms, math.ceil(self.hold_timeout_s * 1000))
        # A lease waiting for its send is asked about again this often.
        self._hold_poll_s = max(0.01, min(0.25, self.lease_s / 10))
        self.namespace = f"{{{key_prefix}:{bot_id}}}:identify"
        self._clock = clock
        self._refresh = refresh
        self._watch, self._client = watched_client(
            url,
            what="identify",
            young_s=self.lease_s,
            on_restart=self._fence,
            reconnecting=lambda: not self._outage.available,
            socket_timeout_s=socket_timeout_s,
        )
        self._fence_script = scripts.FENCE_LUA
        # A restart seen before our first sync: the sync fences.
        self._fence_due = False
        self._next_sync = 0.0
        self._acquire_script = self._client.register_script(scripts.ACQUIRE_LUA)
        self._sync_script = self._client.register_script(scripts.SYNC_LUA)
        self._refund_script = self._client.register_script(scripts.REFUND_LUA)
        self._sent_script = self._client.register_script(scripts.SENT_LUA)
        self._release_script = self._client.register_script(scripts.RELEASE_LUA)
        self._holder_prefix = f"{socket.gethostname()}:{os.getpid()}"

        self._limits: SessionStartLimit | None = None
        self._limits_ready = asyncio.Event()
        self._push_limits = False
        self._known_remaining = 0
        self._reset_deadline = 0.0
        self._epoch: str | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        # Our own grants (or their sends), per bucket: they still bind us if Redis forgets.
        self._last_grant: dict[int, float] = {}
        self._holds: dict[int, _Hold] = {}
        # Set (and replaced) when one of our holds ends, to wake that bucket's head waiter.
        self._wakes: dict[int, asyncio.Event] = {}
        self._waiting = 0
        self._refunds: set[asyncio.Task[None]] = set()
        self._closed = False

        self._outage = Outage(
            lost="cannot reach redis for identify coordination; new identifies wait until "
            "it is back (connected shards are not affected)",
            still="still waiting for redis; identifies are on hold",
            back="redis reachable again; identifies resume",
            retry_base_s=retry_base_s,
            retry_cap_s=retry_cap_s,
            clock=clock,
            on_availability=on_availability,
        )
        self.grants = 0

    # ------------------------------------------------------------------ interface

    def update(self, limits: SessionStartLimit) -> None:
        if limits.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._limits = limits
        self._known_remaining = limits.remaining
        self._reset_deadline = self._clock.monotonic() + max(0.0, limits.reset_after_s)
        self._push_limits = True
        self._limits_ready.set()

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def redis_available(self) -> bool:
        """False from the first failed Redis call until one succeeds again."""
        return self._outage.available

    @property
    def available(self) -> bool:
        return self._outage.available

    @property
    def waiting_since(self) -> float | None:
        """Wall-clock time (``time.time()``) at which Redis became unreachable, or None."""
        return self._outage.since

    @property
    def outages(self) -> int:
        return self._outage.count

    @property
    def remaining(self) -> int:
        """The shared budget as last seen in Redis (for metrics)."""
        return self._known_remaining

    async def acquire(
        self, shard_id: int, *, reserve: int = 0, on_budget_wait: BudgetWait | None = None
    ) -> None:
        if self._closed:
            raise RuntimeError("identify limiter is closed")
        self._waiting += 1
        try:
            await self._limits_ready.wait()
            assert self._limits is not None
            bucket = shard_id % self._limits.max_concurrency
            lock = self._locks.setdefault(bucket, asyncio.Lock())
            async with lock:
                await self._acquire_bucket(shard_id, bucket, reserve, on_budget_wait)
        finally:
            self._waiting -= 1

    async def sent(self, shard_id: int) -> None:
        hold = self._holds.pop(shard_id, None)
        if hold is not None:
            bucket, holder = hold.bucket, hold.holder
        elif self._limits is not None:
            bucket, holder = shard_id % self._limits.max_concurrency, ""
        else:
            return
        self._last_grant[bucket] = self._clock.monotonic()
        self._wake(bucket)
        try:
            await self._sent_script(keys=[self._bucket_key(bucket)], args=[holder, self._lease_ms])
        except RedisError as exc:
            # The lease still expires on its own once the hold times out; until then the
            # bucket stays closed, which is the safe side.
            log.warning(
                "could not record an identify's send in redis",
                extra=fields(shard=shard_id, bucket=bucket, error=str(exc)),
            )

    async def release(self, shard_id: int) -> None:
        hold = self._holds.pop(shard_id, None)
        if hold is None:
            return
        self._wake(hold.bucket)
        elapsed_ms = (self._clock.monotonic() - hold.granted_at) * 1000
        left_ms = math.ceil(self._lease_ms - elapsed_ms)
        try:
            await self._release_script(
                keys=[self._bucket_key(hold.bucket)], args=[hold.holder, left_ms]
            )
        except RedisError as exc:
            log.warning(
                "could not hand back an unused identify grant",
                extra=fields(shard=shard_id, bucket=hold.bucket, error=str(exc)),
            )

    async def aclose(self) -> None:
        self._closed = True
        if self._refunds:
            # Refunds are one short script each; let them finish so no bucket stays blocked.
            await asyncio.wait(set(self._refunds), timeout=2.0)
            for task in self._refunds:
                task.cancel()
            await asyncio.gather(*self._refunds, return_exceptions=True)
        await self._client.aclose()

    # ------------------------------------------------------------------ internals

    async def _acquire_bucket(
        self, shard_id: int, bucket: int, reserve: int, on_budget_wait: BudgetWait | None
    ) -> None:
        told = False
        while True:
            if await self._wait_own_hold(bucket):
                continue
            last = self._last_grant.get(bucket)
            if last is not None:
                left = last + self.lease_s - self._clock.monotonic()
                if left > 0:
                    await self._clock.sleep(left)
                    continue
            try:
                if (
                    self._epoch is None
                    or self._push_limits
                    or self._clock.monotonic() >= self._next_sync
                ):
                    await self._sync()
                holder = (
                    f"{scripts.HELD_PREFIX}{self._holder_prefix}:{shard_id}:{uuid.uuid4().hex[:12]}"
                )
                outcome = await self._try_grant(holder, shard_id, bucket, reserve)
            except RedisError as exc:
                await self._clock.sleep(
                    self._outage.failed(exc, redis=self.url, queued=self._waiting)
                )
                continue
            self._outage.succeeded(redis=self.url)
            if outcome.code == scripts.GRANTED:
                now = self._clock.monotonic()
                self._last_grant[bucket] = now
                self._holds[shard_id] = _Hold(bucket, holder, now, now + self.hold_timeout_s)
                self._note_budget(outcome.value, outcome.ttl_ms)
                self.grants += 1
                log.debug(
                    "identify granted",
                    extra=fields(shard=shard_id, bucket=bucket, remaining=outcome.value),
                )
                return
            if outcome.code == scripts.BUSY:
                wait_s = self._busy_wait_s(outcome.ttl_ms)
                if outcome.value:
                    wait_s = min(wait_s, self._hold_poll_s)
                await wait_event(self._wake_event(bucket), wait_s, self._clock)
            elif outcome.code == scripts.EXHAUSTED:
                # Wait for the shared budget to expire (its TTL is reset_after), then it is
                # seeded afresh; never fail the identify for a budget that will refill.
                self._note_budget(outcome.value, outcome.ttl_ms)
                left_s = max(0, outcome.ttl_ms) / 1000
                if not told:
                    told = True
                    if on_budget_wait is not None:
                        on_budget_wait(BudgetExhausted(outcome.value, reserve, left_s))
                await self._clock.sleep(max(left_s, MIN_BUDGET_WAIT_S))
            elif outcome.code == scripts.NEED_BUDGET:
                await self._refresh_limits()
                self._push_limits = True
            elif outcome.code == scripts.EPOCH_CHANGED:
                log.warning(
                    "redis lost the identify coordination state; fencing every bucket "
                    "for one window before identifying again",
                    extra=fields(redis=self.url),
                )
                self._push_limits = True
            else:
                raise RuntimeError(f"unexpected reply from the identify script: {outcome}")

    async def _wait_own_hold(self, bucket: int) -> bool:
        """Wait (once) while one of our grants of this bucket waits for its send; True if
        there was one, so the caller looks again."""
        now = self._clock.monotonic()
        holds = [(s, h) for s, h in self._holds.items() if h.bucket == bucket]
        if not holds:
            return False
        expired = [s for s, h in holds if h.until <= now]
        for shard_id in expired:
            del self._holds[shard_id]
            log.warning(
                "an identify permit was neither used nor released in time; its bucket's "
                "lease expires on its own",
                extra=fields(shard=shard_id, bucket=bucket, hold_timeout_s=self.hold_timeout_s),
            )
        if not expired:
            until = min(h.until for _, h in holds)
            await wait_event(self._wake_event(bucket), until - now, self._clock)
        return True

    def _wake_event(self, bucket: int) -> asyncio.Event:
        return self._wakes.setdefault(bucket, asyncio.Event())

    def _wake(self, bucket: int) -> None:
        event = self._wakes.pop(bucket, None)
        if event is not None:
            event.set()

    def _bucket_key(self, bucket: int) -> str:
        return f"{self.namespace}:bucket:{bucket}"

    def _busy_wait_s(self, ttl_ms: int) -> float:
        # A lease without a TTL cannot be ours; waiting a window keeps us safe either way.
        base = ttl_ms / 1000 if ttl_ms >= 0 else self.lease_s
        if ttl_ms == -2:
            base = 0.0
        # Small jitter so waiters on several hosts do not all hit Redis in the same ms.
        return base + random.uniform(0.0, min(0.01, self.window_s * 0.02))

    async def _try_grant(self, holder: str, shard_id: int, bucket: int, reserve: int) -> _Outcome:
        call = asyncio.ensure_future(self._run_acquire(holder, shard_id, bucket, reserve))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # The script may have granted on the server already; hand that grant back so
            # the cancelled waiter spends nothing and does not block its bucket.
            refund = asyncio.ensure_future(self._refund(call, holder, bucket))
            self._refunds.add(refund)
            refund.add_done_callback(self._refunds.discard)
            raise

    async def _run_acquire(self, holder: str, shard_id: int, bucket: int, reserve: int) -> _Outcome:
        ns = self.namespace
        reply = await self._acquire_script(
            keys=[f"{ns}:epoch", f"{ns}:budget", f"{ns}:bucket:{bucket}", f"{ns}:grants"],
            args=[
                self._epoch or "",
                holder,
                self._hold_ms,
                reserve,
                shard_id,
                bucket,
                GRANT_LOG_LEN,
            ],
        )
        return _Outcome(*(int(x) for x in reply))

    async def _refund(self, call: asyncio.Future[_Outcome], holder: str, bucket: int) -> None:
        try:
            outcome = await call
        except (RedisError, asyncio.CancelledError):
            return
        if outcome.code != scripts.GRANTED:
            return
        ns = self.namespace
        try:
            await self._refund_script(keys=[f"{ns}:bucket:{bucket}", f"{ns}:budget"], args=[holder])
        except RedisError as exc:
            # The lease still expires on its own after one window; only the start is lost.
            log.warning(
                "could not hand back an unused identify grant",
                extra=fields(bucket=bucket, error=str(exc)),
            )

    async def _fence(self, run: Run, reason: str) -> None:
        """Redis may have lost a lease given just before: close every bucket for a window.
        Before our first sync nothing can be granted, so the sync fences then."""
        if self._limits is None or self._epoch is None:
            self._fence_due = True
            return
        await self._apply_fence(run, reason)

    async def _apply_fence(self, run: Run, reason: str) -> None:
        assert self._limits is not None
        keys = [self._bucket_key(b) for b in range(self._limits.max_concurrency)]
        await run("EVAL", self._fence_script, len(keys), *keys, self._lease_ms)
        self._fence_due = False
        log.info(
            "identify buckets fenced for one window",
            extra=fields(redis=self.url, reason=reason),
        )

    async def _sync(self) -> None:
        """Make sure the epoch exists and the shared budget knows our latest numbers, and
        look at Redis' run_id (a restart our connections did not see)."""
        assert self._limits is not None
        try:
            info = await self._client.info("server")
        except ResponseError:
            # INFO denied (ACLs on managed Redis): assume the worst, it costs one window.
            info = {}
        run = self._client.execute_command
        await self._watch.observe(info, run)
        if self._fence_due:
            await self._apply_fence(run, "seen before the first sync")
        self._next_sync = self._clock.monotonic() + RECHECK_S
        remaining, reset_ms = self._seed_values()
        ns = self.namespace
        mc = self._limits.max_concurrency
        reply = await self._sync_script(
            keys=[f"{ns}:epoch", f"{ns}:budget", *(f"{ns}:bucket:{b}" for b in range(mc))],
            args=[
                self._epoch or "",
                uuid.uuid4().hex,
                remaining,
                reset_ms,
                self._lease_ms,
                # a fresh or restarted Redis is fenced by the run_id check above
                "0",
            ],
        )
        epoch, fenced, budget, ttl_ms = reply
        self._epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        self._push_limits = False
        self._note_budget(int(budget), int(ttl_ms))
        if int(fenced):
            log.info("identify buckets fenced for one window", extra=fields(redis=self.url))

    def _seed_values(self) -> tuple[int, int]:
        assert self._limits is not None
        left_s = self._reset_deadline - self._clock.monotonic()
        if left_s > 0:
            return self._known_remaining, max(1, math.ceil(left_s * 1000))
        return self._limits.total, DAY_MS

    def _note_budget(self, remaining: int, ttl_ms: int) -> None:
        self._known_remaining = remaining
        if ttl_ms > 0:
            self._reset_deadline = self._clock.monotonic() + ttl_ms / 1000

    async def _refresh_limits(self) -> None:
        """The shared budget expired: ask discovery for the real numbers before seeding it
        (without ``refresh``, a full day's budget is assumed)."""
        if self._refresh is None or self._reset_deadline > self._clock.monotonic():
            return
        try:
            self.update(await self._refresh())
        except Exception as exc:
            log.warning(
                "cannot refresh the session start budget; assuming it refilled",
                extra=fields(error=str(exc) or type(exc).__name__),
            )


async def grant_log(client: Any, namespace: str) -> Sequence[tuple[int, int, int]]:
    """The audit stream as ``(redis_time_ms, shard, bucket)`` tuples, oldest first."""
    rows = await client.xrange(f"{namespace}:grants")
    out: list[tuple[int, int, int]] = []
    for entry_id, data in rows:
        raw_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        out.append((int(raw_id.split("-", 1)[0]), int(data[b"shard"]), int(data[b"bucket"])))
    return out

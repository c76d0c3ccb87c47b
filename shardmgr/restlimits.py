"""The supervisor's side of the REST limits: the shared ledger of the token's global limit
and of who owns which rate-limit key, for every worker of this host (and, with
``restlimits_redis``, the global limit of every host).

Global limit: a worker asks for as many tokens as it has requests waiting; asks are served
in arrival order from a ``GlobalSource`` (a sliding window of grants), so N workers together
never exceed it, at one IPC round trip per batch rather than per request.

Keys: one worker at a time owns a key (a channel, guild or webhook) and sends on it with
no IPC at all while nobody else wants it. A claim for a key someone else owns queues, and
the owner is asked to yield after its request in flight; the release carries the buckets'
state to the next owner. A worker that dies loses its keys (their state becomes unknown,
so the next owner sends one request at a time until it learns them)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields
from workers.rest.buckets import GlobalLedger

log = logging.getLogger(__name__)

Owner = tuple[int, int]  # (worker id, generation)
Send = Callable[[ipc.ToWorker], Awaitable[bool]]
MAX_STATES: Final = 65536
SEND_TIMEOUT_S: Final = 5.0
DISCORD_API: Final = "https://discord.com/api/v10"


class GlobalSource(Protocol):
    async def take(self, want: int) -> tuple[int, float]:
        """Wait until at least one token is granted; (tokens, monotonic time no later than
        the grant)."""
        ...

    async def aclose(self) -> None: ...


class KeySource(Protocol):
    """Who holds which key across hosts (``restlimits_redis.RedisKeys``): a host holds a
    key before any of its workers may own it, and hands it over with its state."""

    renew_interval_s: float

    async def acquire(self, key: str) -> tuple[bool, ipc.RestKeyState | None, float]:
        """(held now, the last holder's state, seconds to wait before asking again)."""
        ...

    async def renew(self, keys: list[str]) -> tuple[list[str], list[str]]:
        """Keep holding ``keys``: (those another host waits for, those no longer ours)."""
        ...

    async def release(self, key: str, state: ipc.RestKeyState | None) -> None: ...


def age_state(state: ipc.RestKeyState, age_s: float) -> ipc.RestKeyState:
    """``state`` as it stands ``age_s`` later: a bucket whose reset has passed is in a new
    window, so it is unknown again rather than stale."""
    buckets = [
        ipc.RestBucket(b.bucket, b.limit, b.remaining, b.reset_after_s - age_s)
        for b in state.buckets
        if b.reset_after_s > age_s
    ]
    return ipc.RestKeyState(buckets=buckets, routes=state.routes)


class LocalGlobal:
    """The global limit of one host: a ``GlobalLedger`` on the supervisor's clock."""

    def __init__(self, limit: int, clock: Clock = REAL_CLOCK) -> None:
        self.ledger = GlobalLedger(limit)
        self._clock = clock

    async def take(self, want: int) -> tuple[int, float]:
        while True:
            now = self._clock.monotonic()
            granted = self.ledger.take(now, want)
            if granted:
                return granted, now
            await self._clock.sleep(self.ledger.next_free_in(now))

    async def aclose(self) -> None:
        return None


class RestBroker:
    def __init__(
        self,
        source: GlobalSource,
        clock: Clock = REAL_CLOCK,
        *,
        api_base: str = DISCORD_API,
        invalid_limit: int = 8000,
        keys: KeySource | None = None,
    ) -> None:
        self.source = source
        # Across hosts: a key must be held by this host before a worker may own it.
        self._keys = keys
        self._held: set[str] = set()
        self._acquiring: set[str] = set()
        self._remote_wanted: set[str] = set()
        # releases on their way to Redis: a new acquire of the key waits for its release,
        # or the late release would free the key we just took again
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._renewer: asyncio.Task[None] | None = None
        # what each worker's config carries: where REST goes, its share of the guard
        self.api_base = api_base
        self.invalid_limit = invalid_limit
        self._clock = clock
        self._global_lock = asyncio.Lock()
        self._owners: dict[str, Owner] = {}
        self._queues: dict[str, collections.deque[Owner]] = {}
        self._sends: dict[Owner, Send] = {}
        # key -> (state, when it was released), for the next owner of a key nobody holds
        self._states: collections.OrderedDict[str, tuple[ipc.RestKeyState, float]] = (
            collections.OrderedDict()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.granted = 0

    def spent(self, requests: int) -> None:
        """Requests the supervisor itself sent (discovery) count against the limit too."""
        self._spawn(self._spend(requests))

    async def _spend(self, requests: int) -> None:
        async with self._global_lock:
            left = requests
            while left > 0:
                got, _ = await self.source.take(left)
                left -= got

    def worker_invalid_limit(self, workers: int) -> int:
        """Each worker's share of the invalid-request guard: together they stay below it."""
        return max(1, self.invalid_limit // max(1, workers))

    @property
    def owned_keys(self) -> int:
        return len(self._owners)

    def handle(self, owner: Owner, msg: ipc.ToSupervisor, send: Send) -> bool:
        """Apply one REST message from ``owner``; False if it is not one."""
        self._sends[owner] = send
        if isinstance(msg, ipc.RestGlobalAsk):
            self._spawn(self._grant(owner, msg, self._clock.monotonic()))
        elif isinstance(msg, ipc.RestClaim):
            self._claim(owner, msg.key)
        elif isinstance(msg, ipc.RestRelease):
            self._release(owner, msg.key, msg.state)
        else:
            return False
        return True

    def gone(self, owner: Owner) -> None:
        """The process has exited: its keys pass on with unknown state, its claims drop."""
        self._sends.pop(owner, None)
        for queue in self._queues.values():
            with contextlib.suppress(ValueError):
                queue.remove(owner)
        for key in [k for k, o in self._owners.items() if o == owner]:
            self._states.pop(key, None)
            self._pass_on(key, None)

    async def aclose(self) -> None:
        if self._keys is not None and self._held:
            # Workers are gone by now: give the keys back at once, so another host does
            # not wait for their leases to run out.
            releases = [self._keys.release(k, self._state(k)) for k in sorted(self._held)]
            self._held.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*releases, return_exceptions=True), SEND_TIMEOUT_S
                )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.source.aclose()

    # ---------------------------------------------------------------- global limit

    async def _grant(self, owner: Owner, msg: ipc.RestGlobalAsk, received: float) -> None:
        async with self._global_lock:
            if owner not in self._sends:
                return  # gone while queued
            try:
                tokens, granted_at = await self.source.take(max(1, msg.want))
            except Exception:
                # The worker's ask stays unanswered; its requests wait, never overshoot.
                log.exception("REST global limiter failed", extra=fields(worker=owner[0]))
                return
        self.granted += tokens
        waited = max(0.0, granted_at - received)
        await self._post(
            owner,
            ipc.RestGlobalGrant(gen=owner[1], nonce=msg.nonce, tokens=tokens, waited_s=waited),
        )

    # ---------------------------------------------------------------- key ownership

    def _claim(self, owner: Owner, key: str) -> None:
        if self._keys is not None and key not in self._held:
            self._enqueue(owner, key)
            self._acquire(key)
            return
        current = self._owners.get(key)
        if current is None:
            self._owners[key] = owner
            self._spawn(
                self._post(owner, ipc.RestOwned(gen=owner[1], key=key, state=self._state(key)))
            )
            return
        if current == owner:
            # It asks again, so it gave the key up and the release has not arrived yet, or
            # it lost track: either way it is the owner; nothing else is known here.
            self._spawn(self._post(owner, ipc.RestOwned(gen=owner[1], key=key, state=None)))
            return
        if self._enqueue(owner, key) == 1:
            self._spawn(self._post(current, ipc.RestYield(gen=current[1], key=key)))

    def _enqueue(self, owner: Owner, key: str) -> int:
        queue = self._queues.setdefault(key, collections.deque())
        if owner not in queue:
            queue.append(owner)
        return len(queue)

    def _release(self, owner: Owner, key: str, state: ipc.RestKeyState) -> None:
        if self._owners.get(key) != owner:
            return  # stale: it was passed on when its process died
        self._pass_on(key, state)

    def _pass_on(self, key: str, state: ipc.RestKeyState | None) -> None:
        if self._keys is not None and (key in self._remote_wanted or key not in self._held):
            # Another host waits (it goes first, or a busy host would keep the key for
            # ever), or the hold was lost: hand over through Redis; ours queue again.
            self._owners.pop(key, None)
            self._hand_over(key, state)
            if self._queues.get(key):
                self._acquire(key)
            return
        queue = self._queues.get(key)
        while queue:
            nxt = queue.popleft()
            if nxt in self._sends:
                self._owners[key] = nxt
                self._spawn(self._post(nxt, ipc.RestOwned(gen=nxt[1], key=key, state=state)))
                if queue:
                    self._spawn(self._post(nxt, ipc.RestYield(gen=nxt[1], key=key)))
                else:
                    del self._queues[key]
                return
        self._queues.pop(key, None)
        self._owners.pop(key, None)
        if state is not None:
            self._states[key] = (state, self._clock.monotonic())
            self._states.move_to_end(key)
            while len(self._states) > MAX_STATES:
                self._states.popitem(last=False)

    def _state(self, key: str) -> ipc.RestKeyState | None:
        kept = self._states.pop(key, None)
        if kept is None:
            return None
        state, released = kept
        return age_state(state, self._clock.monotonic() - released)

    # ---------------------------------------------------------------- keys across hosts

    def _acquire(self, key: str) -> None:
        if key not in self._acquiring:
            self._acquiring.add(key)
            self._spawn(self._acquire_loop(key))

    async def _acquire_loop(self, key: str) -> None:
        assert self._keys is not None
        try:
            releasing = self._releasing.get(key)
            if releasing is not None:
                await asyncio.wait([releasing])
            while True:
                queue = self._queues.get(key)
                if not queue or not any(o in self._sends for o in queue):
                    self._queues.pop(key, None)
                    return  # nobody here wants it any more
                try:
                    held, state, retry_s = await self._keys.acquire(key)
                except Exception:
                    log.exception("REST key coordination failed", extra=fields(key=key))
                    held, state, retry_s = False, None, 0.5
                if held:
                    break
                await self._clock.sleep(retry_s)
        finally:
            self._acquiring.discard(key)
        self._held.add(key)
        self._states.pop(key, None)  # the last holder's state is the newer one
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_loop())
            self._tasks.add(self._renewer)
            self._renewer.add_done_callback(self._tasks.discard)
        if key not in self._owners:  # else its owner's release passes it on
            self._pass_on(key, state)

    async def _renew_loop(self) -> None:
        assert self._keys is not None
        while self._held:
            await self._clock.sleep(self._keys.renew_interval_s)
            try:
                wanted, lost = await self._keys.renew(sorted(self._held))
            except Exception:
                log.exception("REST key coordination failed to renew holds")
                continue
            for key in lost:
                # Redis forgot us (an outage longer than the lease): whoever owns it here
                # finishes its request, then everyone asks Redis again.
                self._held.discard(key)
                self._remote_wanted.discard(key)
                self._states.pop(key, None)
            for key in [*wanted, *lost]:
                owner = self._owners.get(key)
                if key in self._held:
                    self._remote_wanted.add(key)
                if owner is None:
                    self._hand_over(key, self._state(key))
                elif key not in self._queues:
                    # (with local claimants queued, the owner was asked already)
                    self._spawn(self._post(owner, ipc.RestYield(gen=owner[1], key=key)))

    def _hand_over(self, key: str, state: ipc.RestKeyState | None) -> None:
        self._remote_wanted.discard(key)
        if key in self._held and self._keys is not None:
            self._held.discard(key)
            task = asyncio.ensure_future(self._release_key(key, state))
            self._releasing[key] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _release_key(self, key: str, state: ipc.RestKeyState | None) -> None:
        assert self._keys is not None
        try:
            await self._keys.release(key, state)
        except Exception:
            # Its lease ends on its own; the next host waits for that.
            log.exception("REST key coordination failed to release", extra=fields(key=key))
        finally:
            if self._releasing.get(key) is asyncio.current_task():
                del self._releasing[key]

    # ---------------------------------------------------------------- plumbing

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, owner: Owner, msg: ipc.ToWorker) -> None:
        send = self._sends.get(owner)
        if send is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(send(msg), SEND_TIMEOUT_S)


class RestSettings(Protocol):
    """The settings ``make_broker`` reads (``shardmgr.config.Settings`` satisfies it)."""

    @property
    def api_base(self) -> str: ...
    @property
    def identify_limiter(self) -> str: ...
    @property
    def rest_limiter(self) -> str | None: ...
    @property
    def rest_global_limit(self) -> int: ...
    @property
    def rest_invalid_limit(self) -> int: ...


def make_broker(settings: RestSettings, token: str, clock: Clock = REAL_CLOCK) -> RestBroker:
    """The broker for ``--rest-limiter`` (default: the ``--identify-limiter`` URL, so one
    Redis URL coordinates everything several hosts share). Call it in the event loop, right
    after discovery."""
    url = settings.rest_limiter or settings.identify_limiter
    source: GlobalSource
    keys: KeySource | None = None
    if url == "local":
        source = LocalGlobal(settings.rest_global_limit, clock)
    else:
        from shardmgr.restlimits_redis import RedisRest

        what = "--rest-limiter" if settings.rest_limiter else "--identify-limiter"
        source = keys = RedisRest(
            url, settings.rest_global_limit, token=token, clock=clock, what=what
        )
    broker = RestBroker(
        source,
        clock,
        api_base=settings.api_base,
        invalid_limit=settings.rest_invalid_limit,
        keys=keys,
    )
    # Made right after discovery, whose GET /gateway/bot counts against the global limit.
    broker.spent(1)
    return broker

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
    ) -> None:
        self.source = source
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
        queue = self._queues.setdefault(key, collections.deque())
        if owner not in queue:
            queue.append(owner)
        if len(queue) == 1:
            self._spawn(self._post(current, ipc.RestYield(gen=current[1], key=key)))

    def _release(self, owner: Owner, key: str, state: ipc.RestKeyState) -> None:
        if self._owners.get(key) != owner:
            return  # stale: it was passed on when its process died
        self._pass_on(key, state)

    def _pass_on(self, key: str, state: ipc.RestKeyState | None) -> None:
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
        del self._owners[key]
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
        age = self._clock.monotonic() - released
        # A bucket whose reset has passed is in a new window: unknown again, not stale.
        buckets = [
            ipc.RestBucket(b.bucket, b.limit, b.remaining, b.reset_after_s - age)
            for b in state.buckets
            if b.reset_after_s > age
        ]
        return ipc.RestKeyState(buckets=buckets, routes=state.routes)

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
    Redis URL coordinates everything several hosts share)."""
    url = settings.rest_limiter or settings.identify_limiter
    source: GlobalSource
    if url == "local":
        source = LocalGlobal(settings.rest_global_limit, clock)
    else:
        from shardmgr.restlimits_redis import RedisGlobal

        what = "--rest-limiter" if settings.rest_limiter else "--identify-limiter"
        source = RedisGlobal(url, settings.rest_global_limit, token=token, clock=clock, what=what)
    return RestBroker(
        source,
        clock,
        api_base=settings.api_base,
        invalid_limit=settings.rest_invalid_limit,
    )

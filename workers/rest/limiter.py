"""Who may send: the global limit's tokens and the ownership of rate-limit keys.

``Coordinator`` is what the client needs; ``LocalCoordinator`` serves a single process,
``RemoteCoordinator`` asks the supervisor over the IPC pipe (which shares it with every
worker, and through Redis with every host). ``GlobalGate`` turns batched grants into one
token per request: a worker asks once for all its waiting requests, not once per request."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import Protocol

import msgspec

from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.rest.buckets import LEASE_S, GlobalLedger

YieldHandler = Callable[[str], None]


class Coordinator(Protocol):
    async def take_global(self, want: int) -> tuple[int, float]:
        """Up to ``want`` tokens (at least one) and the monotonic deadline to send them by."""
        ...

    def try_take_global(self, want: int) -> tuple[int, float] | None:
        """The same without waiting, when the answer is at hand (None: ask ``take_global``)."""
        ...

    async def claim(self, key: str) -> ipc.RestKeyState | None:
        """Return once this worker owns ``key``, with the previous owner's state."""
        ...

    def release(self, key: str, state: ipc.RestKeyState) -> None: ...

    def on_yield(self, handler: YieldHandler) -> None:
        """``handler(key)`` is called when another worker waits for a key we own."""
        ...

    def report(self, stats: ipc.RestStats) -> None: ...


class LocalCoordinator:
    """One process alone on the token: every key is ours, the global ledger is here."""

    def __init__(self, global_limit: int, clock: Clock = REAL_CLOCK) -> None:
        self._ledger = GlobalLedger(global_limit)
        self._clock = clock
        self.reports: collections.deque[ipc.RestStats] = collections.deque(maxlen=16)

    async def take_global(self, want: int) -> tuple[int, float]:
        while True:
            got = self.try_take_global(want)
            if got is not None:
                return got
            now = self._clock.monotonic()
            await self._clock.sleep(self._ledger.next_free_in(now))

    def try_take_global(self, want: int) -> tuple[int, float] | None:
        now = self._clock.monotonic()
        granted = self._ledger.take(now, want)
        return (granted, now + LEASE_S) if granted else None

    async def claim(self, key: str) -> ipc.RestKeyState | None:
        return None

    def release(self, key: str, state: ipc.RestKeyState) -> None:
        return None

    def on_yield(self, handler: YieldHandler) -> None:
        return None

    def report(self, stats: ipc.RestStats) -> None:
        self.reports.append(stats)


Send = Callable[[ipc.ToSupervisor], None]


class RemoteCoordinator:
    """The supervisor's ledger over IPC. ``send`` writes one message to the pipe; the read
    loop passes ``RestGlobalGrant`` / ``RestOwned`` / ``RestYield`` to ``deliver``."""

    def __init__(self, send: Send, gen: int, clock: Clock = REAL_CLOCK) -> None:
        self._send = send
        self._gen = gen
        self._clock = clock
        self._nonces = itertools.count(1)
        self._asks: dict[int, tuple[float, asyncio.Future[tuple[int, float]]]] = {}
        self._claims: dict[str, asyncio.Future[ipc.RestKeyState | None]] = {}
        # keys whose claim nobody waits for any more (the caller was cancelled)
        self._abandoned: set[str] = set()
        self._yield: YieldHandler = lambda key: None

    async def take_global(self, want: int) -> tuple[int, float]:
        nonce = next(self._nonces)
        future: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        # The ask leaves before the supervisor grants, so "asked + waited" is no later than
        # the grant: the deadline never outlives the lease the ledger counted.
        self._asks[nonce] = (self._clock.monotonic(), future)
        self._send(ipc.RestGlobalAsk(gen=self._gen, nonce=nonce, want=want))
        try:
            return await future
        finally:
            self._asks.pop(nonce, None)

    def try_take_global(self, want: int) -> tuple[int, float] | None:
        return None  # always a round trip to the supervisor

    async def claim(self, key: str) -> ipc.RestKeyState | None:
        while True:
            future = self._claims.get(key)
            if future is None:
                future = asyncio.get_running_loop().create_future()
                self._claims[key] = future
                self._send(ipc.RestClaim(gen=self._gen, key=key))
            self._abandoned.discard(key)
            try:
                # shield: the claim outlives a cancelled caller (the next caller, or the
                # grant's arrival, settles it)
                state = await asyncio.shield(future)
            except asyncio.CancelledError:
                if self._claims.get(key) is future:
                    if future.done():
                        del self._claims[key]
                        self._give_back(key, future)
                    else:
                        self._abandoned.add(key)
                raise
            if self._claims.get(key) is future:
                del self._claims[key]
                return state

    def release(self, key: str, state: ipc.RestKeyState) -> None:
        self._send(ipc.RestRelease(gen=self._gen, key=key, state=state))

    def on_yield(self, handler: YieldHandler) -> None:
        self._yield = handler

    def report(self, stats: ipc.RestStats) -> None:
        self._send(msgspec.structs.replace(stats, gen=self._gen))

    def deliver(self, msg: ipc.RestGlobalGrant | ipc.RestOwned | ipc.RestYield) -> None:
        if isinstance(msg, ipc.RestGlobalGrant):
            entry = self._asks.get(msg.nonce)
            if entry is not None and not entry[1].done():
                asked, future = entry
                future.set_result((msg.tokens, asked + msg.waited_s + LEASE_S))
        elif isinstance(msg, ipc.RestOwned):
            claim = self._claims.get(msg.key)
            if claim is None or claim.done() or msg.key in self._abandoned:
                # Nobody here waits for it any more: give it straight back.
                if claim is not None and not claim.done():
                    del self._claims[msg.key]
                    self._abandoned.discard(msg.key)
                self.release(msg.key, msg.state or ipc.RestKeyState())
            else:
                claim.set_result(msg.state)
        else:
            self._yield(msg.key)

    def _give_back(self, key: str, claim: asyncio.Future[ipc.RestKeyState | None]) -> None:
        state = None if claim.cancelled() or claim.exception() else claim.result()
        self.release(key, state or ipc.RestKeyState())

    def fail_all(self) -> None:
        """The pipe is gone: waiters get an error instead of hanging."""
        for _, future in self._asks.values():
            if not future.done():
                future.set_exception(ConnectionError("supervisor pipe closed"))
        for claim in self._claims.values():
            if not claim.done():
                claim.set_exception(ConnectionError("supervisor pipe closed"))


class GlobalGate:
    """Hands out global-limit tokens one per request, FIFO; asks the coordinator for as
    many as are waiting, one ask at a time. A global 429 pauses everything here."""

    def __init__(self, coordinator: Coordinator, clock: Clock = REAL_CLOCK) -> None:
        self._coordinator = coordinator
        self._clock = clock
        self._tokens = 0
        self._until = 0.0
        self._paused_until = 0.0
        self._waiters: collections.deque[asyncio.Future[float]] = collections.deque()
        self._pump: asyncio.Task[None] | None = None

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)
        self._tokens = 0

    async def acquire(self) -> float:
        """Wait for one token; returns the monotonic deadline to send it by."""
        now = self._clock.monotonic()
        if not self._waiters and self._paused_until <= now:
            if self._tokens <= 0 or now >= self._until:
                # Nobody queued: take straight from the coordinator if it can answer now
                # (no pump task, no extra loop turns on the quiet path).
                got = self._coordinator.try_take_global(1)
                if got is not None:
                    self._tokens, self._until = got
            if self._tokens > 0 and now < self._until:
                self._tokens -= 1
                return self._until
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run(), name="rest-global")
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result() == self._until:
                # granted but not used: the next request may have it (only while it is
                # still of the current grant, which the ledger counted)
                self._tokens += 1
            raise
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    async def _run(self) -> None:
        while self._waiters:
            now = self._clock.monotonic()
            if self._paused_until > now:
                await self._clock.sleep(self._paused_until - now)
                continue
            if self._tokens > 0 and now < self._until:
                while self._tokens > 0 and self._waiters:
                    future = self._waiters.popleft()
                    if not future.done():
                        self._tokens -= 1
                        future.set_result(self._until)
                continue
            self._tokens = 0
            live = sum(1 for f in self._waiters if not f.done())
            if live == 0:
                self._waiters.clear()
                return
            try:
                self._tokens, self._until = await self._coordinator.take_global(live)
            except Exception as exc:
                for future in self._waiters:
                    if not future.done():
                        future.set_exception(exc)
                self._waiters.clear()
                return

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        for future in self._waiters:
            future.cancel()
        self._waiters.clear()

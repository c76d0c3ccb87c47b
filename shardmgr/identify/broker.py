"""Identify permits for worker processes: each ``IdentifyRequest`` waits in the
``IdentifyLimiter`` and is answered with a grant (or a refusal when the limiter itself fails).
A grant holds its bucket until the worker reports that the gateway answered the IDENTIFY
(``IdentifySent``, the window starts then) or that it was never sent (``IdentifyRelease``),
or until its process is gone.

Every identify, a shard's first of a start included, leaves ``reserve`` starts of the daily
session-start budget alone: they are what later restarts and re-identifies live on, and a
start that spent them would leave a crash at the end of it with nothing to reconnect with.
While an identify waits for the budget to refill, ``exhausted`` says why (for logs, /status
and metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from shardmgr.identify.limiter import BudgetExhausted, IdentifyLimiter
from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

log = logging.getLogger(__name__)

Send = Callable[[ipc.ToWorker], Awaitable[bool]]
Wanted = Callable[[], bool]


class PermitMetrics(Protocol):
    """The part of ``shardmgr.metrics.Metrics`` the broker feeds."""

    def identify_queue(self, depth: int) -> None: ...
    def identify_waited(self, seconds: float) -> None: ...
    def budget_exhausted(self, reason: str | None) -> None: ...
    def session_start_remaining(self, remaining: int, total: int | None = None) -> None: ...


class _Pending:
    __slots__ = ("nonce", "task")

    def __init__(self, nonce: int, task: asyncio.Task[None]) -> None:
        self.nonce = nonce
        self.task = task


class PermitBroker:
    """Owns every pending identify wait and every grant not yet reported settled, keyed by
    (generation, shard): a shard has at most one of each; a newer request from the same
    process replaces the older one."""

    def __init__(
        self,
        limiter: IdentifyLimiter,
        metrics: PermitMetrics,
        *,
        reserve: int,
        send_timeout_s: float,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.limiter = limiter
        self._metrics = metrics
        self._reserve = reserve
        self._send_timeout = send_timeout_s
        self._clock = clock
        self._pending: dict[tuple[int, int], _Pending] = {}
        # Grants whose IDENTIFY is not reported sent yet: (gen, shard) -> nonce.
        self._held: dict[tuple[int, int], int] = {}
        self._replies: set[asyncio.Task[None]] = set()
        self._limiter_calls: set[asyncio.Task[None]] = set()
        self._budget_waits: set[asyncio.Task[None]] = set()
        self.exhausted: str | None = None
        self.granted = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def held(self) -> int:
        """Grants whose IDENTIFY is not reported sent (or released) yet."""
        return len(self._held)

    def request(self, msg: ipc.IdentifyRequest, *, send: Send, wanted: Wanted) -> None:
        """Start waiting for a permit. ``wanted()`` is asked once the permit is granted: a
        process that is going away gets no grant (the start is spent, but never used twice)."""
        key = (msg.gen, msg.shard_id)
        older = self._pending.pop(key, None)
        if older is not None:
            log.warning(
                "a second identify request for the same shard replaces the first",
                extra=fields(gen=msg.gen, shard=msg.shard_id, nonce=msg.nonce),
            )
            older.task.cancel()
        if key in self._held:
            # The worker asks again, so the connection of the grant it had is over and its
            # report went missing: whatever became of that IDENTIFY, the gateway has read
            # all it ever will of it, so the window counts from now.
            del self._held[key]
            self._call_limiter(self.limiter.sent(msg.shard_id))
        task = asyncio.create_task(
            self._grant(msg, send, wanted), name=f"identify-{msg.gen}-{msg.shard_id}"
        )
        self._pending[key] = _Pending(msg.nonce, task)
        self._metrics.identify_queue(self.limiter.queue_depth + 1)

    def refuse(self, msg: ipc.IdentifyRequest, reason: str, *, send: Send) -> None:
        reply = ipc.IdentifyRefused(
            gen=msg.gen, shard_id=msg.shard_id, nonce=msg.nonce, reason=reason
        )
        task = asyncio.create_task(self._send(send, reply), name="identify-refusal")
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def release(self, gen: int, shard_id: int, nonce: int) -> None:
        """The worker gave up this request: a wait leaves the queue, a grant it will not use
        frees its bucket (one window after the grant)."""
        key = (gen, shard_id)
        pending = self._pending.get(key)
        if pending is not None and pending.nonce == nonce:
            del self._pending[key]
            pending.task.cancel()
        if self._held.get(key) == nonce:
            del self._held[key]
            self._call_limiter(self.limiter.release(shard_id))

    def sent(self, gen: int, shard_id: int, nonce: int) -> None:
        """The gateway answered the granted IDENTIFY: the bucket's next window counts from
        now."""
        key = (gen, shard_id)
        held = self._held.get(key)
        if held is not None and held != nonce:
            return  # a newer grant of this shard is out: this report is stale
        # Also for a grant no longer held: a late answer still bounds the next IDENTIFY.
        self._held.pop(key, None)
        self._call_limiter(self.limiter.sent(shard_id))

    def cancel_generation(self, gen: int) -> None:
        """The process is going away: its waits give up their places unspent. Its grants
        stay held: it may still send an IDENTIFY until it is gone (``generation_gone``)."""
        for key in [k for k in self._pending if k[0] == gen]:
            self._pending.pop(key).task.cancel()
        self._metrics.identify_queue(self.limiter.queue_depth)

    def generation_gone(self, gen: int) -> None:
        """The process has exited. A grant it held may have been sent just before it died,
        so its bucket's window counts from now (nothing more can reach the gateway), not
        from the grant: at most one window lost per crash, never a violation."""
        self.cancel_generation(gen)
        for key in [k for k in self._held if k[0] == gen]:
            del self._held[key]
            self._call_limiter(self.limiter.sent(key[1]))

    async def aclose(self) -> None:
        if self._limiter_calls:
            # Sends and releases are one short limiter call each; a shared limiter should
            # hear of them before it closes.
            await asyncio.wait(set(self._limiter_calls), timeout=self._send_timeout)
        tasks = [p.task for p in self._pending.values()] + list(self._replies)
        tasks += list(self._limiter_calls)
        self._pending.clear()
        self._held.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _call_limiter(self, call: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._report(call), name="identify-report")
        self._limiter_calls.add(task)
        task.add_done_callback(self._limiter_calls.discard)

    @staticmethod
    async def _report(call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except Exception:
            # A hold the limiter never hears about ends with its timeout.
            log.exception("identify limiter failed to record a send or release")

    async def _send(self, send: Send, reply: ipc.ToWorker) -> None:
        # A worker that stopped reading its pipe must not keep this task alive forever; its
        # ping timeout deals with the worker itself.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(send(reply), self._send_timeout)

    async def _grant(self, msg: ipc.IdentifyRequest, send: Send, wanted: Wanted) -> None:
        me = asyncio.current_task()
        assert me is not None
        asked = self._clock.monotonic()
        reply: ipc.ToWorker | None = None
        try:
            reply = await self._acquire(msg, me, asked, wanted)
            if reply is not None:
                await self._send(send, reply)
        finally:
            # Only now, with the reply sent, is this wait over (and no task left unowned).
            key = (msg.gen, msg.shard_id)
            pending = self._pending.get(key)
            if pending is not None and pending.task is me:
                del self._pending[key]
            self._budget_wait_over(me, granted=isinstance(reply, ipc.IdentifyGrant))
            self._metrics.identify_queue(self.limiter.queue_depth)

    async def _acquire(
        self,
        msg: ipc.IdentifyRequest,
        me: asyncio.Task[None],
        asked: float,
        wanted: Wanted,
    ) -> ipc.ToWorker | None:
        def on_budget_wait(short: BudgetExhausted) -> None:
            self._budget_waits.add(me)
            self._on_exhausted(str(short), msg.shard_id)

        try:
            await self.limiter.acquire(
                msg.shard_id, reserve=self._reserve, on_budget_wait=on_budget_wait
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # A shared limiter that fails must not silently hang the shard: the worker is
            # told no, and its shard reports the stop.
            log.exception("identify limiter failed", extra=fields(shard=msg.shard_id))
            return ipc.IdentifyRefused(
                gen=msg.gen,
                shard_id=msg.shard_id,
                nonce=msg.nonce,
                reason="identify limiter unavailable",
            )
        self._metrics.identify_waited(self._clock.monotonic() - asked)
        self._metrics.session_start_remaining(self.limiter.remaining)
        if not wanted():
            log.info(
                "identify permit granted to a process that is going away; not used",
                extra=fields(gen=msg.gen, shard=msg.shard_id),
            )
            self._call_limiter(self.limiter.release(msg.shard_id))
            return None
        self.granted += 1
        # Held from before the grant is sent: a release racing the grant must find it.
        self._held[(msg.gen, msg.shard_id)] = msg.nonce
        return ipc.IdentifyGrant(gen=msg.gen, shard_id=msg.shard_id, nonce=msg.nonce)

    def _on_exhausted(self, reason: str, shard_id: int) -> None:
        if self.exhausted is None:
            log.error(
                "identifies are on hold until the session start budget refills (the reserve "
                "is kept for restarts); shards that cannot resume wait",
                extra=fields(reason=reason, shard=shard_id),
            )
        self.exhausted = reason
        self._metrics.budget_exhausted(reason)

    def _budget_wait_over(self, task: asyncio.Task[None], *, granted: bool) -> None:
        if task not in self._budget_waits:
            return
        self._budget_waits.discard(task)
        if self._budget_waits or self.exhausted is None:
            return
        if granted:
            log.warning("session start budget available again; identifies resume")
        else:
            log.info("no identify waits for the session start budget any more")
        self.exhausted = None
        self._metrics.budget_exhausted(None)

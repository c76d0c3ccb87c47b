"""Resharding without downtime (issue 19), the runner: start the new shard set in new
workers beside the old ones (worker ids of their own, holding their events), identify it
in the background through the same identify limiter and budget, switch over once every new
shard is READY (the new set delivers, the old one closes with 1000 and its workers exit),
or give up and leave the old plan running. ``shardmgr.reshard`` decides; this performs."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shardmgr.config import Settings
from shardmgr.discovery import GatewayInfo
from shardmgr.identify import IdentifyLimiter
from shardmgr.plan import Plan
from shardmgr.reshard import (
    WAIT,
    NewSet,
    Outcome,
    Phase,
    Step,
    StoppedShard,
    Trigger,
    Verdict,
    budget_refusal,
    decide,
    slice_refusal,
    target_shards,
)
from shardmgr.reshardmetrics import ReshardMetrics
from shardmgr.restarts import RestartPolicy
from shardmgr.sessions import SessionStore
from shardmgr.shardtable import ShardTable
from shardmgr.workerslot import WorkerSlot, retire
from workers import ipc
from workers.clock import Clock
from workers.ipc import ShardState
from workers.logsetup import fields

log = logging.getLogger(__name__)

CONNECTED = ShardState.CONNECTED.value
STOPPED = ShardState.STOPPED.value
# How often the guild count of the largest shard is looked at (the recommendation is asked
# every reshard_check_interval_s): the stats arrive every second, a reshard takes minutes.
GUILD_CHECK_S = 60.0


@dataclass(frozen=True)
class Planner:
    """How the supervisor learns the new shard count and groups it, wired in by
    ``shardmgr.start``; ``fixed_total`` is ``--total-shards`` (a slice: never reshard alone)."""

    discover: Callable[[], Awaitable[GatewayInfo]]
    plan: Callable[[GatewayInfo, int], Plan]
    fixed_total: int | None = None


class Answer(enum.Enum):
    STARTED = 202
    NOTHING_TO_DO = 200
    BUSY = 409
    REFUSED = 422


@dataclass(frozen=True)
class Request:
    answer: Answer
    from_shards: int
    to_shards: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"from": self.from_shards, "to": self.to_shards}
        if self.reason is not None:
            doc["reason" if self.answer is Answer.NOTHING_TO_DO else "error"] = self.reason
        return doc


class NewSetBooks:
    """The new shard set while it starts beside the old one: its own slots, shard table and
    sessions (its shard ids collide with the old set's), adopted by the supervisor at the
    switch."""

    def __init__(
        self, plan: Plan, gateway: GatewayInfo, first_worker: int, settings: Settings, clock: Clock
    ) -> None:
        self.plan = plan
        self.gateway = gateway
        self.shards = ShardTable(plan.groups, first_worker)
        self.sessions = SessionStore()
        self.holding = True
        self.slots: dict[int, WorkerSlot] = {}
        for index, group in enumerate(plan.groups):
            policy = RestartPolicy(
                base_s=settings.restart_backoff_base_s,
                cap_s=settings.restart_backoff_cap_s,
                stable_s=settings.restart_stable_s,
                crash_loop_after=settings.crash_loop_restarts,
                clock=clock,
            )
            wid = first_worker + index
            self.slots[wid] = WorkerSlot(wid, list(group), policy)

    def state_reports(self) -> list[tuple[int, ipc.ShardStateChanged]]:
        """Each new shard's state as a worker report, for the metrics at the switch (they
        showed the old set until then)."""
        return [
            (
                view.worker_id,
                ipc.ShardStateChanged(
                    gen=self.slots[view.worker_id].gen,
                    shard_id=view.shard_id,
                    state=ShardState(view.state),
                    at=time.time(),
                ),
            )
            for view in self.shards.views()
        ]

    def progress(self, *, crash_limit: int, elapsed_s: float, timeout_s: float) -> NewSet:
        views = self.shards.views()
        return NewSet(
            total=len(views),
            connected=sum(1 for v in views if v.state == CONNECTED),
            stopped=[
                StoppedShard(v.shard_id, v.stop_reason, v.close_code)
                for v in views
                if v.state == STOPPED
            ],
            crashes=sum(s.restarts for s in self.slots.values()),
            crash_limit=crash_limit,
            elapsed_s=elapsed_s,
            timeout_s=timeout_s,
        )


class ReshardHost(Protocol):
    """What the resharder needs of the supervisor."""

    plan: Plan
    shards: ShardTable
    limiter: IdentifyLimiter

    @property
    def stopping(self) -> bool: ...
    def worker_ids(self) -> list[int]: ...
    def start_slot(self, slot: WorkerSlot) -> None: ...
    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> bool: ...
    def adopt(self, books: NewSetBooks) -> list[WorkerSlot]: ...


class Resharder:
    def __init__(
        self,
        host: ReshardHost,
        *,
        settings: Settings,
        planner: Planner | None,
        metrics: ReshardMetrics,
        clock: Clock,
    ) -> None:
        self._host = host
        self._settings = settings
        self._planner = planner
        self._metrics = metrics
        self._clock = clock
        self.phase = Phase.IDLE
        self._books: NewSetBooks | None = None
        # the old set's slots once the new set is adopted, until they are gone
        self._leaving: list[WorkerSlot] | None = None
        self._trigger: Trigger | None = None
        self._from = 0
        self._to = 0
        self._started_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last: dict[str, Any] | None = None
        self.duplicates = 0
        self.succeeded = 0

    # ------------------------------------------------------------------ the supervisor's hooks

    @property
    def wired(self) -> bool:
        return self._planner is not None

    @property
    def busy(self) -> bool:
        return self.phase is not Phase.IDLE

    def books(self, worker_id: int) -> NewSetBooks | None:
        """The new set's books when ``worker_id`` is one of its workers."""
        books = self._books
        return books if books is not None and worker_id in books.slots else None

    def on_delivering(self, msg: ipc.Delivering) -> None:
        self.duplicates += msg.released
        self._metrics.duplicates.inc(msg.released)

    def start(self) -> None:
        if self._planner is not None:
            self._spawn(self._check_loop(), "reshard-check")

    def request_soon(self, trigger: Trigger) -> None:
        """``request`` from synchronous code (a worker's 4011 report)."""
        self._spawn(self.request(trigger), f"reshard-{trigger}")

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ requests

    async def request(self, trigger: Trigger) -> Request:
        """Start a reshard in the background if there is one to do; says what happened."""
        current = self._host.plan.total_shards
        if self.busy:
            return Request(Answer.BUSY, self._from, self._to, "a reshard is already running")
        if self._planner is None or self._host.stopping:
            return Request(Answer.NOTHING_TO_DO, current, current, "resharding is not wired in")
        if self._planner.fixed_total is not None:
            return self._refuse(trigger, current, current, slice_refusal(current))
        self.phase = Phase.STARTING  # taken before the first await: one request at a time
        try:
            gateway = await self._planner.discover()
        except asyncio.CancelledError:
            self.phase = Phase.IDLE
            raise
        except Exception as exc:
            self.phase = Phase.IDLE
            return self._refuse(trigger, current, current, f"discovery failed: {exc}")
        self.phase = Phase.IDLE
        largest = max((v.guilds for v in self._host.shards.views()), default=0)
        target = target_shards(
            trigger,
            current=current,
            recommended=gateway.recommended_shards,
            max_concurrency=gateway.limits.max_concurrency,
            largest_guilds=largest,
            at_guilds=self._settings.reshard_at_guilds,
        )
        if target is None:
            log.info(
                "no reshard needed",
                extra=fields(shards=current, recommended=gateway.recommended_shards),
            )
            return Request(Answer.NOTHING_TO_DO, current, current)
        refusal = budget_refusal(
            target, self._host.limiter.remaining, self._settings.identify_reserve
        )
        if refusal is not None:
            return self._refuse(trigger, current, target, refusal)
        plan = self._planner.plan(gateway, target)
        first_worker = max(self._host.worker_ids(), default=-1) + 1
        self._begin(trigger, NewSetBooks(plan, gateway, first_worker, self._settings, self._clock))
        self._spawn(self._run(), "reshard")
        return Request(Answer.STARTED, current, target)

    def _refuse(self, trigger: Trigger, current: int, target: int, reason: str) -> Request:
        log.error(reason, extra=fields(trigger=trigger, shards=current, target=target))
        self._metrics.outcomes.labels(Outcome.REFUSED.value).inc()
        self._record(Outcome.REFUSED, trigger, current, target, reason, None)
        return Request(Answer.REFUSED, current, target, reason)

    def _record(
        self,
        outcome: Outcome,
        trigger: Trigger,
        current: int,
        target: int,
        reason: str | None,
        duration_s: float | None,
    ) -> None:
        self.last = {
            "outcome": outcome.value,
            "trigger": trigger.value,
            "from": current,
            "to": target,
            "reason": reason,
            "duration_s": None if duration_s is None else round(duration_s, 3),
            "at": round(time.time(), 3),
        }

    # ------------------------------------------------------------------ the reshard

    def _begin(self, trigger: Trigger, books: NewSetBooks) -> None:
        self.phase = Phase.STARTING
        self._books = books
        self._trigger = trigger
        self._from = self._host.plan.total_shards
        self._to = books.plan.total_shards
        self._started_at = self._clock.monotonic()
        self._metrics.started(self._to)
        log.warning(
            "resharding in the background: the new shard set starts beside the running one",
            extra=fields(
                trigger=trigger,
                old_shards=self._from,
                new_shards=self._to,
                workers=len(books.plan.groups),
            ),
        )
        for slot in books.slots.values():
            self._host.start_slot(slot)

    def _progress(self, books: NewSetBooks) -> NewSet:
        return books.progress(
            crash_limit=self._settings.crash_loop_restarts,
            elapsed_s=self._clock.monotonic() - self._started_at,
            timeout_s=self._settings.reshard_timeout_s,
        )

    async def _run(self) -> None:
        books = self._books
        assert books is not None and self._trigger is not None
        step: Step = WAIT
        try:

            def settled() -> bool:
                nonlocal step
                progress = self._progress(books)
                if progress.total:
                    self._metrics.progress.set(progress.connected / progress.total)
                step = decide(progress)
                return step.verdict is not Verdict.WAIT or self._host.stopping

            while not await self._host.wait_for(settled, self._settings.reshard_timeout_s):
                pass
            if self._host.stopping:
                step = Step(Verdict.ABANDON, "the supervisor is stopping")
            if step.verdict is Verdict.SWITCH:
                await self._switch(books)
                self._finish(Outcome.SUCCEEDED, None)
                return
            log.error(
                "reshard given up; the old plan keeps running",
                extra=fields(reason=step.reason, old_shards=self._from, new_shards=self._to),
            )
            await retire(list(books.slots.values()))
            self._finish(Outcome.FAILED, step.reason)
        except asyncio.CancelledError:
            # The supervisor's shutdown: whichever set it does not own closes here (the new
            # one before the switch, the old one after it).
            leaving = self._leaving if self._leaving is not None else list(books.slots.values())
            with contextlib.suppress(Exception):
                await asyncio.shield(retire(leaving))
            raise
        finally:
            self._books = None
            self._leaving = None
            self.phase = Phase.IDLE

    async def _switch(self, books: NewSetBooks) -> None:
        """The new set delivers, then the supervisor adopts it and the old set closes (1000):
        both deliver for a moment, so events around the switch arrive at least once."""
        self.phase = Phase.SWITCHING
        self._metrics.phase.set(Phase.SWITCHING)
        log.info("reshard: every new shard is ready; switching", extra=fields(shards=self._to))
        books.holding = False
        overlap = self._settings.reshard_overlap_s
        sends = [
            slot.proc.send(ipc.Deliver(gen=slot.proc.gen, overlap_s=overlap))
            for slot in books.slots.values()
            if slot.proc is not None
        ]
        await asyncio.gather(*sends)
        old = self._host.adopt(books)
        self._leaving = old
        self.succeeded += 1  # the new plan runs from here (status counts it as a re-plan)
        log.warning(
            "reshard: the new shard set delivers; closing the old one",
            extra=fields(old_shards=self._from, new_shards=self._to, old_workers=len(old)),
        )
        await retire(old)

    def _finish(self, outcome: Outcome, reason: str | None) -> None:
        assert self._trigger is not None
        duration = self._clock.monotonic() - self._started_at
        if outcome is Outcome.SUCCEEDED:
            log.warning(
                "reshard finished",
                extra=fields(
                    old_shards=self._from, new_shards=self._to, duration_s=round(duration, 2)
                ),
            )
        self._metrics.finished(outcome, duration)
        self._record(outcome, self._trigger, self._from, self._to, reason, duration)

    async def _check_loop(self) -> None:
        """Ask /gateway/bot every ``reshard_check_interval_s``; look at the largest shard's
        guild count more often (both only while no reshard runs)."""
        interval = self._settings.reshard_check_interval_s
        tick = min(interval, GUILD_CHECK_S)
        last_asked = self._clock.monotonic()
        guilds_tried = False
        while True:
            # wake for the next guild look, or exactly when the recommendation is due
            now = self._clock.monotonic()
            await self._clock.sleep(max(0.001, min(tick, last_asked + interval - now)))
            now = self._clock.monotonic()
            if self.busy or self._host.stopping:
                continue
            largest = max((v.guilds for v in self._host.shards.views()), default=0)
            crowded = largest > self._settings.reshard_at_guilds
            trigger: Trigger | None = None
            if crowded and not guilds_tried:
                trigger = Trigger.GUILDS  # at once, then (if it did not help) every interval
            elif now - last_asked >= interval:
                trigger = Trigger.GUILDS if crowded else Trigger.RECOMMENDATION
            guilds_tried = crowded
            if trigger is None:
                continue
            last_asked = now
            try:
                await self.request(trigger)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reshard check failed", extra=fields(trigger=trigger))

    # ------------------------------------------------------------------ status

    def state(self) -> dict[str, int | str] | None:
        """What the state file says of a reshard in progress (None: none runs)."""
        if not self.busy or self._trigger is None:
            return None
        return {"phase": self.phase.name.lower(), "from": self._from, "to": self._to}

    def as_dict(self) -> dict[str, Any]:
        books = self._books
        doc: dict[str, Any] = {
            "phase": self.phase.name.lower(),
            "reshards": self.succeeded,
            "duplicates": self.duplicates,
            "last": self.last,
        }
        if self.busy and books is not None:
            progress = self._progress(books)
            doc.update(
                trigger=None if self._trigger is None else self._trigger.value,
                to=self._to,
                ready=progress.connected,
                elapsed_s=round(progress.elapsed_s, 3),
            )
            doc["from"] = self._from
        return doc

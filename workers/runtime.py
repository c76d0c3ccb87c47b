"""``WorkerRuntime``: the K shards of one worker process, their handler deliveries and the
stats collector, started and stopped together. One bad shard never disturbs the others:
each runs in its own task and a crash in one is logged and contained."""

from __future__ import annotations

import asyncio
import functools
import logging
import random

import aiohttp

from workers import gateway as gateway_api
from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.cluster import Cluster
from workers.handlers import Delivery, Handler, as_handler
from workers.holding import HeldEvents
from workers.inflight import InFlightFile, OnSkip
from workers.members import MemberWaits
from workers.permits import IdentifyPermit
from workers.reporter import Reporter, ShardCounters, StatsCollector
from workers.rest.client import RestClient
from workers.rest.limiter import Coordinator, LocalCoordinator
from workers.shard import Shard

log = logging.getLogger(__name__)


class WorkerRuntime:
    def __init__(
        self,
        config: ipc.WorkerConfig,
        permits: IdentifyPermit,
        reporter: Reporter,
        handler: Handler | object | str | None = None,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
        rest_coordinator: Coordinator | None = None,
        cluster: Cluster | None = None,
        inflight: InFlightFile | None = None,
        on_skip: OnSkip | None = None,
    ) -> None:
        self.config = config
        self.permits = permits
        self.reporter = reporter
        self.handler: Handler = as_handler(config.handler if handler is None else handler)
        self.clock = clock
        self._rng = rng or random.Random()
        # What each shard's handler is inside, for the supervisor (poison events).
        self.inflight = inflight
        self._on_skip = on_skip
        self.shards: dict[int, Shard] = {}
        self._shard_tasks: dict[int, asyncio.Task[None]] = {}
        self._delivery_tasks: list[asyncio.Task[None]] = []
        self._stats_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.collector = StatsCollector(
            lambda: self.shards.values(), reporter, config.report_interval_s, clock
        )
        self._closed = False
        # Alone (no supervisor), the worker keeps Discord's default global limit itself.
        self.rest = RestClient(
            config.token,
            config.api_base,
            rest_coordinator or LocalCoordinator(50, clock),
            invalid_limit=config.rest_invalid_limit,
            clock=clock,
        )
        # gateway.cluster (None without a supervisor) and the member requests that wait
        self.cluster = cluster
        self.members = MemberWaits()
        # a reshard's new set: each shard's events, held until ``deliver`` (the switch)
        self._held: dict[int, HeldEvents] = {}

    async def start(self) -> None:
        await self.prepare()
        self.start_shards(self.config.shards)

    async def prepare(self) -> None:
        """The handler's side of a start: everything a canary proves before any shard of
        the old worker is handed over."""
        # Filled in by start_shards; the handler may keep it and use it once shards are up.
        planned = [a.shard_id for a in self.config.shards]
        self.gateway = gateway_api.Gateway(
            self.shards,
            self.config.num_shards,
            planned,
            rest=self.rest,
            cluster=self.cluster,
            members=self.members,
        )
        gateway_api.install(self.gateway)
        self.handler.check_intents(self.config.intents)
        await self.handler.start(self.gateway)

    def start_shards(self, assignments: list[ipc.ShardAssignment]) -> None:
        """Connect the shards (resuming the sessions they carry)."""
        # aiohttp's default connector allows 100 connections per session: a worker with more
        # shards than that would leave the rest waiting for a slot until their connect
        # timeout, forever. Every shard holds exactly one websocket, so no cap here.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        loop = asyncio.get_running_loop()
        for index, assignment in enumerate(assignments):
            sid = assignment.shard_id
            delivery = Delivery(
                sid,
                self.handler,
                ShardCounters(),
                self.config.handler_backlog,
                self.config.handler_batch,
            )
            if self.inflight is not None:
                skip = assignment.skip
                delivery.inflight = self.inflight.slot(
                    index, None if skip is None else (skip.first_seq, skip.last_seq), self._on_skip
                )
            shard = Shard(
                sid,
                self.config,
                permits=self.permits,
                reporter=self.reporter,
                delivery=delivery,
                http=self._http,
                session=assignment.session,
                clock=self.clock,
                rng=random.Random(self._rng.random()),
            )
            self.shards[sid] = shard
            if self.config.hold_delivery:
                held = HeldEvents(self.config.handler_backlog, self.clock)
                self._held[sid] = held
                shard.route_events(held.push)
            delivery_task = loop.create_task(delivery.run())
            delivery_task.add_done_callback(functools.partial(self._task_done, sid, "delivery"))
            self._delivery_tasks.append(delivery_task)
            task = loop.create_task(shard.run())
            task.add_done_callback(functools.partial(self._task_done, sid, "shard"))
            self._shard_tasks[sid] = task
        self._stats_task = loop.create_task(self.collector.run())

    def _task_done(self, sid: int, what: str, task: asyncio.Task[None]) -> None:
        """A shard or delivery task ended on its own. A delivery task only returns when
        cancelled by ``_close``; ending any other way leaves the shard connected but
        delivering nothing, so it is reported as a crash for the supervisor to restart the
        worker and resume from the checkpoint (nothing in flight is lost)."""
        if self._closed:
            return
        if task.cancelled():
            if what == "shard":
                return
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = task.exception()
            if exc is None and what == "shard":
                return  # stopped, suspended or fatal: already reported by the shard
        log.error("%s task crashed", what, extra={"shard": sid}, exc_info=exc)
        shard = self.shards.get(sid)
        session = shard.checkpoint_session() if shard is not None else None
        self.reporter.stopped(sid, "crashed", None, False, session)

    def deliver(self, overlap_s: float) -> tuple[int, int]:
        """The reshard's switch: deliver from now on, and the held events that arrived
        within ``overlap_s``; returns (released, dropped) over every shard."""
        released = dropped = 0
        for sid, held in self._held.items():
            shard = self.shards[sid]
            shard.route_events(shard.delivery.push)
            r, d = held.release(overlap_s, shard.delivery.push)
            released += r
            dropped += d
        self._held.clear()
        return released, dropped

    async def stop(self) -> None:
        """Close every shard with 1000 (sessions end)."""
        await asyncio.gather(*(s.stop() for s in self.shards.values()), return_exceptions=True)
        await self._close()

    async def suspend(self) -> dict[int, ipc.SessionInfo]:
        """Close every shard keeping its session; returns the sessions (seq = checkpoint)."""
        results = await asyncio.gather(
            *(s.suspend() for s in self.shards.values()), return_exceptions=True
        )
        sessions: dict[int, ipc.SessionInfo] = {}
        for sid, result in zip(self.shards, results, strict=True):
            if isinstance(result, ipc.SessionInfo):
                sessions[sid] = result
            elif isinstance(result, BaseException):
                log.error("suspend failed", extra={"shard": sid}, exc_info=result)
        await self._close()
        return sessions

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [*self._shard_tasks.values(), *self._delivery_tasks]
        if self._stats_task is not None:
            tasks.append(self._stats_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            # One last report so the final counters and checkpoints are not lost.
            self.collector.flush()
        except Exception:
            log.exception("final stats report failed")
        if self._http is not None:
            await self._http.close()
        try:
            await self.handler.close()
        except Exception:
            log.exception("handler close failed")
        await self.rest.aclose()

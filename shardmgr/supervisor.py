"""The supervisor: runs one worker process per shard group, grants identify permits, keeps
sessions, restarts dead or hung workers, rolls restarts, re-plans on 4011, shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol

import msgspec

from shardmgr.commandrelay import CommandRelay
from shardmgr.config import Settings
from shardmgr.discovery import GatewayInfo
from shardmgr.fatal import EXIT_FATAL, FatalStops
from shardmgr.identify import IdentifyLimiter
from shardmgr.identify.broker import PermitBroker
from shardmgr.plan import Plan
from shardmgr.poison import PoisonTracker, ReplayOutcome, Replays
from shardmgr.reshard import Trigger
from shardmgr.resharder import NewSetBooks, Planner, Resharder
from shardmgr.reshardmetrics import reshard_metrics
from shardmgr.restarts import RestartPolicy
from shardmgr.restlimits import LocalGlobal, RestBroker
from shardmgr.rolling import RollingTracker
from shardmgr.rollingrestart import rolling_restart
from shardmgr.routing import ClusterRouter, host_name
from shardmgr.sessions import SessionStore
from shardmgr.shardtable import ShardTable
from shardmgr.startprogress import StartProgress
from shardmgr.statusdoc import status_document
from shardmgr.workerconfig import worker_config
from shardmgr.workerproc import SpawnedWorker
from shardmgr.workerreports import apply_report
from shardmgr.workerslot import RestartReason, SlotRunner, WorkerSlot, retire
from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.ipc import ShardState
from workers.logsetup import fields
from workers.protocol import CloseCode

log = logging.getLogger(__name__)

CONNECTED = ShardState.CONNECTED.value
STOPPED = ShardState.STOPPED.value


class MetricsSink(Protocol):
    """The part of ``shardmgr.metrics.Metrics`` the supervisor feeds."""

    def set_plan(self, shards_planned: int, workers: dict[int, list[int]]) -> None: ...
    def on_worker_message(self, worker_id: int, msg: ipc.ToSupervisor) -> None: ...
    def worker_up(self, worker_id: int, up: bool) -> None: ...
    def worker_restarted(self, worker_id: int, reason: str) -> None: ...
    def identify_queue(self, depth: int) -> None: ...
    def identify_waited(self, seconds: float) -> None: ...
    def budget_exhausted(self, reason: str | None) -> None: ...
    def session_start_remaining(self, remaining: int, total: int | None = None) -> None: ...
    def render(self) -> tuple[bytes, str]: ...
    def rolling_restart_outcome(self, failed: bool) -> None: ...


Replan = Callable[[Plan], Awaitable[tuple[GatewayInfo, Plan] | None]]


class Supervisor:
    def __init__(
        self,
        *,
        settings: Settings,
        token: str,
        gateway: GatewayInfo,
        plan: Plan,
        limiter: IdentifyLimiter,
        metrics: MetricsSink,
        sessions: SessionStore | None = None,
        replan: Replan | None = None,
        worker_env: Mapping[str, str] | None = None,
        clock: Clock = REAL_CLOCK,
        announce: Callable[[str], None] = print,
        rest: RestBroker | None = None,
        reshard_planner: Planner | None = None,
    ) -> None:
        """``replan(old_plan)`` is awaited after a 4011 and returns the fresh discovery and
        the plan for the new shard count, or None to keep the current plan. ``announce``
        shows the operator a new plan. With ``reshard_planner`` a 4011 (or a bigger
        recommendation) reshards in the background instead (``shardmgr.resharder``)."""
        self.settings = settings
        self._token = token
        self.gateway = gateway
        self.plan = plan
        self.limiter = limiter
        self.metrics = metrics
        self.sessions = sessions if sessions is not None else SessionStore()
        self.poison = PoisonTracker(settings.state_dir)
        self.replays = Replays(settings.state_dir, settings.ping_timeout_s)
        self._replan_fn = replan
        self._clock = clock
        self._announce = announce
        self.permits = PermitBroker(
            limiter,
            metrics,
            reserve=settings.identify_reserve,
            send_timeout_s=settings.ping_timeout_s,
            clock=clock,
        )
        self._runner = SlotRunner(
            self,
            settings=settings,
            permits=self.permits,
            metrics=metrics,
            clock=clock,
            worker_env=worker_env,
        )
        self.commands = CommandRelay(lambda: self._slots.values(), settings.ping_timeout_s)
        # REST limits shared by the workers (issue 14): Discord's default global limit
        self.rest = rest if rest is not None else RestBroker(LocalGlobal(50, clock), clock)
        self._slots: dict[int, WorkerSlot] = {}
        # cluster calls and commands for other workers' shards (issue 16)
        self.router = ClusterRouter(
            self,
            host_name=host_name(settings),
            max_bytes=settings.call_max_bytes,
            registry=getattr(metrics, "registry", None),
        )
        self._progress: asyncio.Task[None] | None = None
        self.shards = ShardTable([])
        self._commands: asyncio.Queue[RestartReason] = asyncio.Queue()
        self._queued: set[RestartReason] = set()
        self._changed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._keep_sessions = False
        self.stale_messages = 0
        self.roll = RollingTracker(metrics)
        self.fatal = FatalStops(settings.intents_mask)
        self._exit_code = 0
        self.replans = 0
        self._started_wall = time.time()
        # More /status sections from outside the supervisor (e.g. shard ownership).
        self.status_sections: dict[str, Callable[[], Any]] = {}
        # Planned shards another host runs (they wait here, and count as done for the
        # start's progress and for /readyz, or a rolling update would wait on them).
        self.owned_elsewhere: Callable[[], Collection[int]] = tuple
        self.reshard = Resharder(
            self,
            settings=settings,
            planner=reshard_planner,
            metrics=reshard_metrics(metrics),
            clock=clock,
        )

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Start every worker and supervise until ``request_stop``; returns the exit status."""
        self._apply_plan(self.plan)
        await self.router.start()
        control = asyncio.create_task(self._control_loop(), name="supervisor-control")
        self.reshard.start()
        try:
            await self._stop_requested.wait()
        finally:
            control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await control
            await self._shutdown()
        return self._exit_code

    @property
    def exhausted(self) -> str | None:
        """Why identifies are waiting for the session start budget, or None."""
        return self.permits.exhausted

    @property
    def identifies_granted(self) -> int:
        return self.permits.granted

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def message_errors(self) -> int:
        """Worker reports whose handling raised (our bug; the worker is not blamed)."""
        return self._runner.message_errors

    @property
    def kept_sessions(self) -> bool:
        """Whether the stop suspended the sessions (the caller then saves ``sessions``)."""
        return self._keep_sessions

    @property
    def slots(self) -> Mapping[int, WorkerSlot]:
        return self._slots

    def _queue(self, command: RestartReason) -> bool:
        if command in self._queued:
            return False
        self._queued.add(command)
        self._commands.put_nowait(command)
        return True

    def request_stop(self, keep_sessions: bool) -> None:
        if not self._stop_requested.is_set():
            log.info("stopping", extra=fields(keep_sessions=keep_sessions))
            self._keep_sessions = keep_sessions
            self._stop_requested.set()
            for slot in self._slots.values():
                slot.wake.set()

    def request_rolling_restart(self) -> bool:
        """Queue a rolling restart; False when one is already running or we are stopping."""
        if self.stopping or self.rolling:
            return False
        return self._queue(RestartReason.ROLLING)

    def _apply_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.shards = ShardTable(plan.groups)
        self.fatal = FatalStops(self.settings.intents_mask)
        self._slots = {}
        for wid, group in enumerate(plan.groups):
            policy = RestartPolicy(
                base_s=self.settings.restart_backoff_base_s,
                cap_s=self.settings.restart_backoff_cap_s,
                stable_s=self.settings.restart_stable_s,
                crash_loop_after=self.settings.crash_loop_restarts,
                clock=self._clock,
            )
            self._slots[wid] = WorkerSlot(wid, list(group), policy)
        self.metrics.set_plan(len(plan.shard_ids), {w: list(g) for w, g in enumerate(plan.groups)})
        for slot in self._slots.values():
            self._runner.start(slot)
        progress = StartProgress(
            plan,
            {sid for sid in plan.shard_ids if self.sessions.get(sid) is not None},
            window_s=self.settings.identify_window_s,
            started_at=self._clock.monotonic(),
        )
        if self._progress is not None:
            self._progress.cancel()
        self._progress = asyncio.create_task(self._report_start(progress), name="start-progress")

    async def _report_start(self, progress: StartProgress) -> None:
        """A line every ``progress_interval_s`` until every shard is up (or stopped for
        good), then one line saying how long the start took."""

        def settled() -> bool:
            return self.shards.all_in(self._runs_here(), CONNECTED, STOPPED)

        while not await self.wait_for(settled, self.settings.progress_interval_s):
            ready = self.shards.ids_in(CONNECTED)
            log.info(progress.line(ready, budget_wait=self.exhausted is not None))
        stopped = self.shards.count(STOPPED)
        log.info(progress.done_line(self._clock.monotonic(), stopped=stopped))

    async def _control_loop(self) -> None:
        """Rolling restarts and re-plans run one at a time, never interleaved."""
        while True:
            command = await self._commands.get()
            self._queued.discard(command)
            try:
                if command is RestartReason.ROLLING:
                    await rolling_restart(self, self._runner)
                elif command is RestartReason.REPLAN:
                    await self._replan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor command failed", extra=fields(command=command))

    async def _shutdown(self) -> None:
        await self.reshard.aclose()  # a new shard set still starting closes too
        if self._progress is not None:
            self._progress.cancel()
            await asyncio.gather(self._progress, return_exceptions=True)
        slots = list(self._slots.values())
        for slot in slots:
            slot.ask_replace(RestartReason.SHUTDOWN)
        tasks = [s.task for s in slots if s.task is not None]
        if tasks:
            # Each worker loop bounds its own wait by shutdown_timeout_s and then kills.
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.permits.aclose()
        await self.router.aclose()
        with contextlib.suppress(Exception):
            await self.rest.aclose()
        self.poison.close()
        with contextlib.suppress(Exception):
            await self.limiter.aclose()

    def process_gone(self, slot: WorkerSlot, gen: int) -> None:
        """A worker process of ``slot`` is reaped: its REST keys go back, and if it was the
        slot's current one, its shards have no connection whatever it last reported."""
        self.rest.gone((slot.worker_id, gen))
        if slot.gen != gen:
            return
        # Only the table of the set the slot belongs to: a reshard's new set and a retired old
        # set share shard ids with the plan that delivers.
        books = self.reshard.books(slot.worker_id)
        if books is not None and books.slots.get(slot.worker_id) is slot:
            books.shards.worker_gone(slot.shard_ids)
        elif self._slots.get(slot.worker_id) is slot:
            self.shards.worker_gone(slot.shard_ids)

    # ---------------------------------------------------------------- worker reports

    def handle_message(self, worker_id: int, msg: ipc.ToSupervisor) -> bool:
        """Apply one report (``shardmgr.workerreports``); False if it comes from a stale
        generation."""
        return apply_report(self, self._clock, worker_id, msg)

    def stale(self, worker_id: int, msg: ipc.ToSupervisor) -> None:
        self.stale_messages += 1
        log.debug(
            "ignoring a message from a stale generation",
            extra=fields(worker=worker_id, gen=msg.gen, kind=type(msg).__name__),
        )

    def worker_died(self, slot: WorkerSlot, proc: SpawnedWorker, hung: bool) -> None:
        self.poison.process_ended(proc.inflight_file, slot.shard_ids, hung, self.sessions.get)

    def discard_inflight(self, path: str | None) -> None:
        self.poison.discard(path)

    def on_shard_stopped(self, slot: WorkerSlot, msg: ipc.ShardStopped) -> None:
        """A shard of the delivering set stopped: 4011 re-plans (or reshards), and the last
        shard to stop for good ends the supervisor with ``EXIT_FATAL``."""
        if msg.close_code == CloseCode.SHARDING_REQUIRED and not self.stopping:
            log.warning(
                "shard closed with 4011 (sharding required); re-planning",
                extra=fields(shard=msg.shard_id, worker=slot.worker_id),
            )
            if self.reshard.wired:
                self.reshard.request_soon(Trigger.SHARDING_REQUIRED)
            else:
                self._queue(RestartReason.REPLAN)
        elif msg.fatal and not self.stopping:
            log.error(
                "shard stopped for good",
                extra=fields(shard=msg.shard_id, reason=msg.reason, close_code=msg.close_code),
            )
            if self.fatal.all_stopped(self.plan.shard_ids):
                # Nothing is left running, and a restart would be refused the same way.
                log.error(
                    f"every shard stopped for good; exiting with status {EXIT_FATAL}: "
                    + self.fatal.explain()
                )
                self._exit_code = EXIT_FATAL
                self.request_stop(keep_sessions=False)

    # ---------------------------------------------------------------- rolling restart, re-plan

    @property
    def rolling(self) -> bool:
        return self.roll.running

    async def _replan(self) -> None:
        if self._replan_fn is None:
            log.error("a shard needs re-planning (4011) but no discovery is wired in")
            return
        old = self.plan
        outcome = await self._replan_fn(old)
        if outcome is None or self.stopping:
            return
        gateway, plan = outcome
        self.replans += 1
        log.warning(
            "re-planning after 4011",
            extra=fields(old_shards=old.total_shards, new_shards=plan.total_shards),
        )
        slots = list(self._slots.values())
        await retire(slots)
        if self.stopping:
            return
        # Sessions belong to the old shard count and cannot be resumed under the new one.
        self.sessions.clear()
        self.gateway = gateway
        self.limiter.update(gateway.limits)
        self._announce(plan.describe())
        for slot in slots:
            self.metrics.worker_restarted(slot.worker_id, RestartReason.REPLAN)
        self._apply_plan(plan)

    # ---------------------------------------------------------------- status

    def pulse(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> bool:
        """Wait until ``predicate()`` holds after some state change, or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            # asyncio.wait, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # races the event, and a shutdown waits for the tasks it cancels.
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({changed}, timeout=min(left, 1.0))
            finally:
                changed.cancel()
        return True

    def worker_config(self, slot: WorkerSlot) -> ipc.WorkerConfig:
        """What a new process for ``slot`` is started with (its shards resume if they can)."""
        elsewhere = self.owned_elsewhere()
        books = self.reshard.books(slot.worker_id)
        sessions = books.sessions if books is not None else self.sessions
        config = worker_config(
            self.settings,
            worker_id=slot.worker_id,
            token=self._token,
            gateway_url=(books.gateway if books is not None else self.gateway).url,
            num_shards=(books.plan if books is not None else self.plan).total_shards,
            shards=[
                # A shard another host took over must identify (and so wait for it) here.
                ipc.ShardAssignment(
                    shard_id=sid, session=session, skip=self.poison.skip_for(sid, session)
                )
                for sid in slot.shard_ids
                for session in (None if sid in elsewhere else sessions.get(sid),)
            ],
            hold_delivery=books is not None and books.holding,
        )
        # Each worker guards its share, so that together they stay under the bot's guard.
        share = self.rest.worker_invalid_limit(len(self._slots))
        inflight = self.poison.inflight_file(slot.worker_id, len(slot.shard_ids))
        return msgspec.structs.replace(config, rest_invalid_limit=share, inflight_file=inflight)

    # ---------------------------------------------------------------- reshard hooks

    def worker_ids(self) -> list[int]:
        return list(self._slots)

    def start_slot(self, slot: WorkerSlot) -> None:
        self._runner.start(slot)

    def adopt(self, books: NewSetBooks) -> list[WorkerSlot]:
        """The reshard's switch: the new set becomes the plan; returns the old set's slots
        (no longer this supervisor's: their reports are stale from now on)."""
        old = list(self._slots.values())
        self._slots = dict(books.slots)
        self.plan = books.plan
        self.shards = books.shards
        # Not limiter.update: the limits were read before the new set spent its identifies.
        self.gateway = books.gateway
        self.sessions.clear()
        for sid, session in books.sessions.snapshot().items():
            self.sessions.put(sid, session)
        self.metrics.set_plan(
            len(books.plan.shard_ids), {w: s.shard_ids for w, s in books.slots.items()}
        )
        for worker_id, report in books.state_reports():
            self.metrics.on_worker_message(worker_id, report)
        self._announce(books.plan.describe())
        self.pulse()
        return old

    # ---------------------------------------------------------------- operator commands

    def restart_shards(self, shard_ids: Collection[int]) -> None:
        """Replace the processes running these shards (their other shards resume)."""
        for slot in self._slots.values():
            if not slot.retired and any(sid in slot.shard_ids for sid in shard_ids):
                slot.ask_replace(RestartReason.ROLLING)

    def runs_shard(self, shard_id: int) -> bool:
        """Whether this supervisor's plan includes ``shard_id`` (running or not)."""
        return any(shard_id in slot.shard_ids for slot in self._slots.values())

    async def send_command(self, shard_id: int, op: int, d: bytes) -> bool:
        """``CommandRelay.send``: False when no live worker runs ``shard_id`` right now."""
        return await self.commands.send(shard_id, op, d)

    async def broadcast_command(self, op: int, d: bytes) -> tuple[int, int]:
        """``send_command`` to every planned shard: (shards reached, shards planned)."""
        return await self.commands.broadcast(op, d)

    async def replay_dead_letter(self, shard_id: int, seq: int) -> tuple[ReplayOutcome, str]:
        """``shardmgr dead-letters replay``: the stored event to its shard's handler again."""
        return await self.replays.replay(self._slots.values(), shard_id, seq)

    def healthy(self) -> bool:
        return bool(self._slots) and all(s.up for s in self._slots.values())

    def _runs_here(self) -> list[int]:
        elsewhere = self.owned_elsewhere()
        return [sid for sid in self.plan.shard_ids if sid not in elsewhere]

    def ready(self) -> bool:
        return len(self.shards) > 0 and self.shards.all_in(self._runs_here(), CONNECTED)

    def not_ready_reason(self) -> str:
        """Why ``ready()`` is False, for the body of a 503 /readyz."""
        if self.fatal:
            return "stopped for good: " + self.fatal.explain()
        return f"{self.shards.count(CONNECTED)} of {len(self.shards)} shards connected"

    def status(self) -> dict[str, Any]:
        return status_document(self, self._started_wall)

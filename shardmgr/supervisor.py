"""The supervisor: runs one worker process per shard group, grants identify permits, keeps
sessions, restarts dead or hung workers, rolls restarts, re-plans on 4011, shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from shardmgr.discovery import GatewayInfo
from shardmgr.identify import IdentifyLimiter
from shardmgr.permits import PermitBroker
from shardmgr.plan import Plan
from shardmgr.restarts import RestartPolicy
from shardmgr.restlimits import LocalGlobal, RestBroker
from shardmgr.sessions import SessionStore
from shardmgr.shardtable import ShardTable
from shardmgr.workerproc import WorkerProcess
from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields
from workers.protocol import CloseCode
from workers.shard import ShardState

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


class SupervisorOptions(Protocol):
    """The settings the supervisor reads (``shardmgr.config.Settings`` satisfies it)."""

    @property
    def handler(self) -> str: ...
    @property
    def compress(self) -> str: ...
    @property
    def large_threshold(self) -> int: ...
    @property
    def identify_reserve(self) -> int: ...
    @property
    def ping_interval_s(self) -> float: ...
    @property
    def ping_timeout_s(self) -> float: ...
    @property
    def start_timeout_s(self) -> float: ...
    @property
    def restart_backoff_base_s(self) -> float: ...
    @property
    def restart_backoff_cap_s(self) -> float: ...
    @property
    def restart_stable_s(self) -> float: ...
    @property
    def crash_loop_restarts(self) -> int: ...
    @property
    def shutdown_timeout_s(self) -> float: ...
    @property
    def log_level(self) -> str: ...
    @property
    def log_json(self) -> bool: ...
    @property
    def intents_mask(self) -> int: ...
    @property
    def max_message_bytes(self) -> int: ...
    @property
    def heartbeat_ack_check(self) -> bool: ...
    @property
    def identify_properties(self) -> dict[str, str]: ...
    @property
    def presence(self) -> dict[str, object] | None: ...


Replan = Callable[[Plan], Awaitable[tuple[GatewayInfo, Plan] | None]]


class WorkerSlot:
    """One planned worker: its shards, its current process (if any) and its history."""

    def __init__(self, worker_id: int, shard_ids: list[int], policy: RestartPolicy) -> None:
        self.worker_id = worker_id
        self.shard_ids = shard_ids
        self.policy = policy
        self.proc: WorkerProcess | None = None
        self.gen = 0
        self.up = False
        self.state = "pending"
        self.restarts = 0
        self.last_exit: str | None = None
        self.last_pong = 0.0
        self.spawned_at = 0.0
        self.task: asyncio.Task[None] | None = None
        # set by whoever wants the current process replaced gracefully: the reason
        self.replace: asyncio.Future[str] | None = None
        self.retired = False
        # cuts a restart backoff short when the slot is retired or the supervisor stops
        self.wake = asyncio.Event()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.worker_id,
            "pid": self.proc.pid if self.proc and self.proc.returncode is None else None,
            "gen": self.gen,
            "up": self.up,
            "state": self.state,
            "restarts": self.restarts,
            "crash_looping": self.policy.crash_looping,
            "last_exit": self.last_exit,
            "shards": list(self.shard_ids),
        }


class Supervisor:
    def __init__(
        self,
        *,
        options: SupervisorOptions,
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
    ) -> None:
        """``replan(old_plan)`` is awaited after a 4011 and returns the fresh discovery and
        the plan for the new shard count, or None to keep the current plan. ``announce``
        shows the operator a new plan."""
        self.options = options
        self._token = token
        self.gateway = gateway
        self.plan = plan
        self.limiter = limiter
        self.metrics = metrics
        self.sessions = sessions if sessions is not None else SessionStore()
        self._replan_fn = replan
        self._worker_env = dict(worker_env) if worker_env is not None else None
        self._clock = clock
        self._announce = announce
        self.permits = PermitBroker(
            limiter,
            metrics,
            reserve=options.identify_reserve,
            send_timeout_s=options.ping_timeout_s,
            clock=clock,
        )
        # REST limits shared by the workers (issue 14): Discord's default global limit
        self.rest = rest if rest is not None else RestBroker(LocalGlobal(50, clock), clock)
        self._gens = itertools.count(1)
        self._slots: dict[int, WorkerSlot] = {}
        self.shards = ShardTable([])
        self._commands: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._changed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._keep_sessions = False
        self.stale_messages = 0
        self.message_errors = 0
        self.rolling = False
        self.replans = 0
        self._started_wall = time.time()

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Start every worker and supervise until ``request_stop``; returns the exit status."""
        self._apply_plan(self.plan)
        control = asyncio.create_task(self._control_loop(), name="supervisor-control")
        try:
            await self._stop_requested.wait()
        finally:
            control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await control
            await self._shutdown()
        return 0

    @property
    def exhausted(self) -> str | None:
        """Why identifies are waiting for the session start budget, or None."""
        return self.permits.exhausted

    @property
    def identifies_granted(self) -> int:
        return self.permits.granted

    @property
    def _stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def kept_sessions(self) -> bool:
        """Whether the stop suspended the sessions (the caller then saves ``sessions``)."""
        return self._keep_sessions

    def _queue(self, command: str) -> bool:
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
        if self._stopping or self.rolling:
            return False
        return self._queue("rolling")

    def _apply_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.permits.new_plan()
        self.shards = ShardTable(plan.groups)
        self._slots = {}
        for wid, group in enumerate(plan.groups):
            policy = RestartPolicy(
                base_s=self.options.restart_backoff_base_s,
                cap_s=self.options.restart_backoff_cap_s,
                stable_s=self.options.restart_stable_s,
                crash_loop_after=self.options.crash_loop_restarts,
                clock=self._clock,
            )
            self._slots[wid] = WorkerSlot(wid, list(group), policy)
        self.metrics.set_plan(len(plan.shard_ids), {w: list(g) for w, g in enumerate(plan.groups)})
        for slot in self._slots.values():
            name = f"worker-{slot.worker_id}"
            slot.task = asyncio.create_task(self._worker_loop(slot), name=name)

    async def _control_loop(self) -> None:
        """Rolling restarts and re-plans run one at a time, never interleaved."""
        while True:
            command = await self._commands.get()
            self._queued.discard(command)
            try:
                if command == "rolling":
                    await self._rolling_restart()
                elif command == "replan":
                    await self._replan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor command failed", extra=fields(command=command))

    async def _shutdown(self) -> None:
        slots = list(self._slots.values())
        for slot in slots:
            self._ask_replace(slot, "shutdown")
        tasks = [s.task for s in slots if s.task is not None]
        if tasks:
            # Each worker loop bounds its own wait by shutdown_timeout_s and then kills.
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.permits.aclose()
        with contextlib.suppress(Exception):
            await self.rest.aclose()
        with contextlib.suppress(Exception):
            await self.limiter.aclose()

    # ---------------------------------------------------------------- one worker slot

    def _ask_replace(self, slot: WorkerSlot, reason: str) -> None:
        if slot.replace is not None and not slot.replace.done():
            slot.replace.set_result(reason)
        if slot.retired or reason in ("shutdown", "replan"):
            slot.wake.set()

    async def _worker_loop(self, slot: WorkerSlot) -> None:
        """Start the slot's process, supervise it, restart it with backoff, until retired."""
        reason = "start"
        while not self._stopping and not slot.retired:
            if reason not in ("start", "rolling"):
                delay = slot.policy.next_delay()
                slot.restarts += 1
                self.metrics.worker_restarted(slot.worker_id, reason)
                if slot.policy.crash_looping:
                    log.error(
                        "worker is crash looping; restarts slowed down",
                        extra=fields(
                            worker=slot.worker_id,
                            failures=slot.policy.failures,
                            delay_s=round(delay, 2),
                            last_exit=slot.last_exit,
                        ),
                    )
                else:
                    log.warning(
                        "restarting worker",
                        extra=fields(worker=slot.worker_id, reason=reason, delay_s=round(delay, 2)),
                    )
                if delay > 0:
                    slot.state = "backoff"
                    self._pulse()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(slot.wake.wait(), delay)
                    if self._stopping or slot.retired:
                        break
            elif reason == "rolling":
                slot.restarts += 1
                self.metrics.worker_restarted(slot.worker_id, "rolling")
            try:
                reason = await self._run_process(slot)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("worker start failed", extra=fields(worker=slot.worker_id))
                slot.last_exit = f"start failed: {exc}"
                reason = "exit"
            if reason in ("shutdown", "replan"):
                break
        slot.state = "stopped"
        self._pulse()

    async def _run_process(self, slot: WorkerSlot) -> str:
        """One process lifetime. Returns why it ended: "exit", "hung", or the replace reason."""
        gen = next(self._gens)
        slot.gen = gen
        slot.replace = asyncio.get_running_loop().create_future()
        slot.state = "starting"
        slot.up = False
        config = self.worker_config(slot)
        resuming = sum(1 for a in config.shards if a.session is not None)
        proc = await WorkerProcess.spawn(worker_id=slot.worker_id, gen=gen, env=self._worker_env)
        slot.proc = proc
        slot.spawned_at = self._clock.monotonic()
        slot.last_pong = slot.spawned_at
        log.info(
            "worker started",
            extra=fields(
                worker=slot.worker_id,
                gen=gen,
                pid=proc.pid,
                shards=len(slot.shard_ids),
                resuming=resuming,
            ),
        )
        reader = asyncio.create_task(self._read_loop(slot, proc), name=f"read-{slot.worker_id}")
        pinger = asyncio.create_task(self._ping_loop(slot, proc), name=f"ping-{slot.worker_id}")
        replace = slot.replace
        try:
            await proc.send(ipc.Start(gen=gen, config=config))
            waiting: set[asyncio.Future[Any]] = {reader, pinger, replace}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if replace.done():
                why = replace.result()
                keep = why == "rolling" or (why == "shutdown" and self._keep_sessions)
                await self._graceful_stop(slot, proc, reader, keep)
                result = why
            elif pinger.done() and not reader.done():
                await self._kill_hung(slot, proc)
                result = "hung"
            else:
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    log.error(
                        "reading the worker's pipe failed",
                        exc_info=reader.exception(),
                        extra=fields(worker=slot.worker_id, gen=gen),
                    )
                code = await proc.stop(1.0)
                slot.last_exit = f"exit status {code}"
                log.warning(
                    "worker exited",
                    extra=fields(worker=slot.worker_id, gen=gen, pid=proc.pid, status=code),
                )
                result = "exit"
        finally:
            for task in (reader, pinger):
                task.cancel()
            await asyncio.gather(reader, pinger, return_exceptions=True)
            if not replace.done():
                replace.cancel()
            await proc.kill()
            self._worker_gone(slot, gen)
        return result

    async def _graceful_stop(
        self,
        slot: WorkerSlot,
        proc: WorkerProcess,
        reader: asyncio.Task[None],
        keep_sessions: bool,
    ) -> None:
        slot.state = "stopping"
        self.permits.cancel_generation(proc.gen)
        self._pulse()

        async def shut_down() -> None:
            await proc.send(ipc.Shutdown(gen=proc.gen, keep_sessions=keep_sessions))
            # The reader keeps applying reports (Suspended carries the sessions) until EOF.
            await asyncio.wait({reader})

        # One deadline for both: a worker that stopped reading would block the send.
        done = True
        try:
            await asyncio.wait_for(shut_down(), self.options.shutdown_timeout_s)
        except TimeoutError:
            done = False
        if not done:
            log.warning(
                "worker did not finish its shutdown in time; killing it",
                extra=fields(worker=slot.worker_id, gen=proc.gen, pid=proc.pid),
            )
        code = await proc.stop(1.0 if done else 0.0)
        slot.last_exit = f"stopped (exit status {code})"

    async def _kill_hung(self, slot: WorkerSlot, proc: WorkerProcess) -> None:
        slot.state = "hung"
        self.permits.cancel_generation(proc.gen)
        self._pulse()
        log.error(
            "worker stopped answering pings; dumping its stacks, then killing it",
            extra=fields(
                worker=slot.worker_id,
                gen=proc.gen,
                pid=proc.pid,
                timeout_s=self.options.ping_timeout_s,
            ),
        )
        proc.dump_stacks()
        # Give faulthandler a moment to write the dump before the group is killed.
        await proc.wait(0.5)
        code = await proc.kill()
        slot.last_exit = f"hung, killed (exit status {code})"

    def _worker_gone(self, slot: WorkerSlot, gen: int) -> None:
        self.permits.generation_gone(gen)
        self.rest.gone((slot.worker_id, gen))
        if slot.gen == gen:
            slot.up = False
            slot.proc = None
            self.metrics.worker_up(slot.worker_id, False)
            self.shards.worker_gone(slot.shard_ids)
        self._pulse()

    async def _read_loop(self, slot: WorkerSlot, proc: WorkerProcess) -> None:
        while (msg := await proc.recv()) is not None:
            if msg.gen != proc.gen:
                # A frame stamped by another generation cannot be trusted for this slot.
                self.stale_messages += 1
                continue
            try:
                self.handle_message(slot.worker_id, msg)
            except Exception:
                # Our own bug must not look like the worker dying (and get it killed).
                self.message_errors += 1
                log.exception(
                    "applying a worker report failed",
                    extra=fields(worker=slot.worker_id, kind=type(msg).__name__),
                )

    async def _ping_loop(self, slot: WorkerSlot, proc: WorkerProcess) -> None:
        """Returns when the worker stopped answering (or never came up)."""
        interval = self.options.ping_interval_s
        nonce = 0
        while True:
            now = self._clock.monotonic()
            if not slot.up:
                if now - slot.spawned_at > self.options.start_timeout_s:
                    log.error(
                        "worker did not start in time",
                        extra=fields(worker=slot.worker_id, timeout_s=self.options.start_timeout_s),
                    )
                    return
            elif now - slot.last_pong > self.options.ping_timeout_s:
                return
            nonce += 1
            # Bounded: a stopped worker stops draining its pipe, and that must not stall
            # the very loop that is meant to notice it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.send(ipc.Ping(gen=proc.gen, nonce=nonce)), interval)
            await self._clock.sleep(interval)

    # ---------------------------------------------------------------- worker reports

    def handle_message(self, worker_id: int, msg: ipc.ToSupervisor) -> bool:
        """Apply one report; False (and nothing changes) if it comes from a generation that
        is not the slot's current one, so a replaced process can never act on its shards."""
        slot = self._slots.get(worker_id)
        if slot is None or msg.gen != slot.gen or slot.proc is None:
            self.stale_messages += 1
            log.debug(
                "ignoring a message from a stale generation",
                extra=fields(worker=worker_id, gen=msg.gen, kind=type(msg).__name__),
            )
            return False
        self.metrics.on_worker_message(worker_id, msg)
        self.sessions.on_message(msg)
        if isinstance(msg, ipc.Pong):
            slot.last_pong = self._clock.monotonic()
            return True
        if isinstance(msg, ipc.Started):
            slot.up = True
            slot.state = "running"
            slot.last_pong = self._clock.monotonic()
            slot.policy.started()
            self.metrics.worker_up(worker_id, True)
        elif isinstance(msg, ipc.IdentifyRequest):
            self._on_identify_request(slot, slot.proc, msg)
        elif isinstance(msg, ipc.IdentifyCancel):
            self.permits.cancel(msg.gen, msg.shard_id, msg.nonce)
        elif isinstance(msg, ipc.IdentifySent):
            self.permits.sent(msg.gen, msg.shard_id, msg.nonce)
        elif isinstance(msg, ipc.RestToSupervisor):
            self.rest.handle((worker_id, msg.gen), msg, slot.proc.send)
        elif isinstance(msg, ipc.RestStats):
            pass  # metrics only
        else:
            self.shards.apply(worker_id, msg)
            if isinstance(msg, ipc.ShardStopped):
                self._on_shard_stopped(slot, msg)
        self._pulse()
        return True

    def _on_shard_stopped(self, slot: WorkerSlot, msg: ipc.ShardStopped) -> None:
        if msg.close_code == CloseCode.SHARDING_REQUIRED and not self._stopping:
            log.warning(
                "shard closed with 4011 (sharding required); re-planning",
                extra=fields(shard=msg.shard_id, worker=slot.worker_id),
            )
            self._queue("replan")
        elif msg.fatal and not self._stopping:
            log.error(
                "shard stopped for good",
                extra=fields(shard=msg.shard_id, reason=msg.reason, close_code=msg.close_code),
            )

    # ---------------------------------------------------------------- identify permits

    def _on_identify_request(
        self, slot: WorkerSlot, proc: WorkerProcess, msg: ipc.IdentifyRequest
    ) -> None:
        if self._stopping or slot.state in ("stopping", "hung"):
            # A worker on its way out must not spend a session start; its own shutdown
            # abandons the wait.
            return
        if msg.shard_id not in slot.shard_ids:
            log.error(
                "a worker asked to identify a shard it does not run; refused",
                extra=fields(worker=slot.worker_id, gen=msg.gen, shard=msg.shard_id),
            )
            self.permits.refuse(msg, "not a shard of this worker", send=proc.send)
            return
        def wanted() -> bool:
            return (
                slot.proc is proc
                and slot.state not in ("stopping", "hung")
                and not self._stopping
            )

        self.permits.request(msg, send=proc.send, wanted=wanted)

    # ---------------------------------------------------------------- rolling restart, re-plan

    async def _rolling_restart(self) -> None:
        self.rolling = True
        log.info("rolling restart", extra=fields(workers=len(self._slots)))
        try:
            for slot in list(self._slots.values()):
                if self._stopping or slot.retired:
                    return
                if slot.state in ("stopped",) or slot.replace is None:
                    continue
                ok = await self.wait_for(
                    self._replaced_and_back(slot),
                    self.options.start_timeout_s + self.options.shutdown_timeout_s,
                )
                if not ok:
                    log.warning(
                        "rolling restart: worker's shards did not reconnect in time; continuing",
                        extra=fields(worker=slot.worker_id),
                    )
            log.info("rolling restart finished")
        finally:
            self.rolling = False
            self._pulse()

    def _replaced_and_back(self, slot: WorkerSlot) -> Callable[[], bool]:
        """Ask for the slot's process to be replaced; the returned predicate holds once the
        replacement is up and every shard it runs is connected again (or stopped for good)."""
        old_gen = slot.gen
        self._ask_replace(slot, "rolling")

        def back() -> bool:
            return (
                slot.gen != old_gen
                and slot.up
                and self.shards.all_in(slot.shard_ids, CONNECTED, STOPPED)
            )

        return back

    async def _replan(self) -> None:
        if self._replan_fn is None:
            log.error("a shard needs re-planning (4011) but no discovery is wired in")
            return
        old = self.plan
        outcome = await self._replan_fn(old)
        if outcome is None or self._stopping:
            return
        gateway, plan = outcome
        self.replans += 1
        log.warning(
            "re-planning after 4011",
            extra=fields(old_shards=old.total_shards, new_shards=plan.total_shards),
        )
        slots = list(self._slots.values())
        for slot in slots:
            slot.retired = True
            self._ask_replace(slot, "replan")
        tasks = [s.task for s in slots if s.task is not None]
        if tasks:
            # asyncio.wait, not gather: a stop arriving now cancels this command, and that
            # must not cancel (and so SIGKILL) the worker loops still closing their shards.
            await asyncio.wait(tasks)
        if self._stopping:
            return
        # Sessions belong to the old shard count and cannot be resumed under the new one.
        self.sessions.clear()
        self.gateway = gateway
        self.limiter.update(gateway.limits)
        self._announce(plan.describe())
        for slot in slots:
            self.metrics.worker_restarted(slot.worker_id, "replan")
        self._apply_plan(plan)

    # ---------------------------------------------------------------- status

    def _pulse(self) -> None:
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return True

    def worker_config(self, slot: WorkerSlot) -> ipc.WorkerConfig:
        """What a new process for ``slot`` is started with (its shards resume if they can)."""
        return ipc.WorkerConfig(
            worker_id=slot.worker_id,
            token=self._token,
            gateway_url=self.gateway.url,
            num_shards=self.plan.total_shards,
            shards=[
                ipc.ShardAssignment(shard_id=sid, session=self.sessions.get(sid))
                for sid in slot.shard_ids
            ],
            intents=self.options.intents_mask,
            handler=self.options.handler,
            compress=self.options.compress,
            large_threshold=self.options.large_threshold,
            log_level=self.options.log_level.upper(),
            log_json=self.options.log_json,
            max_message_bytes=self.options.max_message_bytes,
            check_heartbeat_acks=self.options.heartbeat_ack_check,
            identify_properties=self.options.identify_properties,
            presence=self.options.presence,
            api_base=self.rest.api_base,
            rest_invalid_limit=self.rest.worker_invalid_limit(len(self._slots)),
        )

    # ---------------------------------------------------------------- operator commands

    def runs_shard(self, shard_id: int) -> bool:
        """Whether this supervisor's plan includes ``shard_id`` (running or not)."""
        return any(shard_id in slot.shard_ids for slot in self._slots.values())

    async def send_command(self, shard_id: int, op: int, d: bytes) -> bool:
        """Forward a gateway command (``d`` as JSON bytes) to the worker running
        ``shard_id``. False when no live worker runs it right now (unplanned shard, worker
        starting or restarting); the worker queues it until the shard's connection is ready."""
        for slot in self._slots.values():
            if shard_id in slot.shard_ids:
                proc = slot.proc
                if proc is None or proc.returncode is not None or not slot.up:
                    return False
                return await proc.send(
                    ipc.SendCommand(gen=proc.gen, shard_id=shard_id, op=op, d=d)
                )
        return False

    async def broadcast_command(self, op: int, d: bytes) -> tuple[int, int]:
        """``send_command`` to every planned shard: (shards reached, shards planned)."""
        shard_ids = [sid for slot in self._slots.values() for sid in slot.shard_ids]
        results = await asyncio.gather(*(self.send_command(sid, op, d) for sid in shard_ids))
        return sum(results), len(shard_ids)

    def healthy(self) -> bool:
        return bool(self._slots) and all(s.up for s in self._slots.values())

    def ready(self) -> bool:
        return len(self.shards) > 0 and self.shards.count(CONNECTED) == len(self.shards)

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "supervisor": {
                "pid": os.getpid(),
                "uptime_s": round(now - self._started_wall, 3),
                "total_shards": self.plan.total_shards,
                "planned_shards": len(self.shards),
                "max_concurrency": self.plan.max_concurrency,
                "connected_shards": self.shards.count(CONNECTED),
                "healthy": self.healthy(),
                "ready": self.ready(),
                "stopping": self._stopping,
                "rolling_restart": self.rolling,
                "replans": self.replans,
                "budget_exhausted": self.exhausted,
                "session_start_remaining": self.limiter.remaining,
                "identify_limiter_available": self.limiter.available,
                "identify_queue": self.limiter.queue_depth,
                "identifies_granted": self.identifies_granted,
                "stale_messages": self.stale_messages,
            },
            "workers": [slot.as_dict() for slot in self._slots.values()],
            "shards": [
                view.as_dict(now, self.sessions.get(view.shard_id))
                for view in self.shards.views()
            ],
        }

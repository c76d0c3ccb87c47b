"""One planned worker slot and the loop that keeps a process in it: spawn, supervise (read
its reports, ping it), stop it gracefully, kill it when it hangs, restart it with backoff,
until the slot is retired or the supervisor stops."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final, Protocol

from shardmgr.config import Settings
from shardmgr.identify.broker import PermitBroker
from shardmgr.restarts import RestartPolicy
from shardmgr.rolling import start_canary
from shardmgr.workerproc import SpawnedWorker
from workers import ipc
from workers.clock import Clock
from workers.logsetup import fields

log = logging.getLogger(__name__)


class WorkerState(StrEnum):
    """A slot's state, as ``/status`` shows it."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    HUNG = "hung"
    BACKOFF = "backoff"
    STOPPED = "stopped"


# A process in these states is on its way out: it must not spend a session start.
LEAVING: Final = frozenset({WorkerState.STOPPING, WorkerState.HUNG})


class RestartReason(StrEnum):
    """Why a slot's process ended, which decides what the slot does next (and labels the
    restart metric)."""

    EXIT = "exit"
    HUNG = "hung"
    ROLLING = "rolling"
    REPLAN = "replan"
    SHUTDOWN = "shutdown"


# After these the slot is done: no process follows in it.
FINAL: Final = frozenset({RestartReason.SHUTDOWN, RestartReason.REPLAN})


class WorkerSlot:
    """One planned worker: its shards, its current process (if any) and its history."""

    def __init__(self, worker_id: int, shard_ids: list[int], policy: RestartPolicy) -> None:
        self.worker_id = worker_id
        self.shard_ids = shard_ids
        self.policy = policy
        self.proc: SpawnedWorker | None = None
        self.gen = 0
        self.up = False
        self.state = WorkerState.PENDING
        self.restarts = 0
        self.last_exit: str | None = None
        self.last_pong = 0.0
        self.spawned_at = 0.0
        self.task: asyncio.Task[None] | None = None
        # set by whoever wants the current process replaced gracefully: the reason
        self.replace: asyncio.Future[RestartReason] | None = None
        self.retired = False
        # a replacement that loaded the handler (shardmgr.rolling): the next process
        self.standby: SpawnedWorker | None = None
        # cuts a restart backoff short when the slot is retired or the supervisor stops
        self.wake = asyncio.Event()

    def ask_replace(self, reason: RestartReason) -> None:
        """Have the current process stopped gracefully; ``reason`` says what comes next."""
        if self.replace is not None and not self.replace.done():
            self.replace.set_result(reason)
        if self.retired or reason in FINAL:
            self.wake.set()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.worker_id,
            "pid": self.proc.pid if self.proc and self.proc.returncode is None else None,
            "gen": self.gen,
            "up": self.up,
            "state": self.state.value,
            "restarts": self.restarts,
            "crash_looping": self.policy.crash_looping,
            "last_exit": self.last_exit,
            "shards": list(self.shard_ids),
        }


async def retire(slots: list[WorkerSlot]) -> None:
    """Close these slots' shards with 1000 and wait until their processes exited; no
    process follows in them."""
    for slot in slots:
        slot.retired = True
        slot.ask_replace(RestartReason.REPLAN)
    tasks = [s.task for s in slots if s.task is not None]
    if tasks:
        # asyncio.wait, not gather: a stop arriving now cancels the caller, and that must
        # not cancel (and so SIGKILL) the worker loops still closing their shards.
        await asyncio.wait(tasks)


class SlotMetrics(Protocol):
    def worker_up(self, worker_id: int, up: bool) -> None: ...
    def worker_restarted(self, worker_id: int, reason: str) -> None: ...


class SlotHost(Protocol):
    """What the slot loop needs from the supervisor that owns it."""

    @property
    def stopping(self) -> bool: ...
    @property
    def kept_sessions(self) -> bool: ...
    def worker_config(self, slot: WorkerSlot) -> ipc.WorkerConfig: ...
    def handle_message(self, worker_id: int, msg: ipc.ToSupervisor) -> bool: ...
    def stale(self, worker_id: int, msg: ipc.ToSupervisor) -> None: ...
    def process_gone(self, slot: WorkerSlot, gen: int) -> None: ...
    def pulse(self) -> None: ...
    def worker_died(self, slot: WorkerSlot, proc: SpawnedWorker, hung: bool) -> None: ...
    def discard_inflight(self, path: str | None) -> None: ...


class SlotRunner:
    """Runs every slot's processes for one supervisor; generations are unique across slots."""

    def __init__(
        self,
        host: SlotHost,
        *,
        settings: Settings,
        permits: PermitBroker,
        metrics: SlotMetrics,
        clock: Clock,
        worker_env: Mapping[str, str] | None,
    ) -> None:
        self._host = host
        self._settings = settings
        self._permits = permits
        self._metrics = metrics
        self._clock = clock
        self._worker_env = dict(worker_env) if worker_env is not None else None
        self._gens = itertools.count(1)
        # Reports whose handling raised: our bug, counted, never blamed on the worker.
        self.message_errors = 0

    def start(self, slot: WorkerSlot) -> None:
        slot.task = asyncio.create_task(self._slot_loop(slot), name=f"worker-{slot.worker_id}")

    async def canary(self, slot: WorkerSlot) -> SpawnedWorker:
        """A standby replacement for ``slot``'s process (``shardmgr.rolling``)."""
        return await start_canary(
            worker_id=slot.worker_id,
            gen=next(self._gens),
            config=self._host.worker_config(slot),
            env=self._worker_env,
            timeout_s=self._settings.start_timeout_s,
        )

    async def drop_standby(self, slot: WorkerSlot, standby: SpawnedWorker) -> None:
        """Kill ``standby`` unless the slot already took it as its process."""
        if slot.standby is standby:
            slot.standby = None
            await standby.kill()
            self._host.discard_inflight(standby.inflight_file)

    @property
    def _stopping(self) -> bool:
        return self._host.stopping

    async def _slot_loop(self, slot: WorkerSlot) -> None:
        """Start the slot's process, supervise it, restart it with backoff, until retired."""
        reason: RestartReason | None = None  # None: the slot's first start
        while not self._stopping and not slot.retired:
            if reason is not None and reason is not RestartReason.ROLLING:
                delay = slot.policy.next_delay()
                slot.restarts += 1
                self._metrics.worker_restarted(slot.worker_id, reason)
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
                    slot.state = WorkerState.BACKOFF
                    self._host.pulse()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(slot.wake.wait(), delay)
                    if self._stopping or slot.retired:
                        break
            elif reason is RestartReason.ROLLING:
                slot.restarts += 1
                self._metrics.worker_restarted(slot.worker_id, reason)
            try:
                reason = await self._run_process(slot)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("worker start failed", extra=fields(worker=slot.worker_id))
                slot.last_exit = f"start failed: {exc}"
                reason = RestartReason.EXIT
            if reason in FINAL:
                break
        slot.state = WorkerState.STOPPED
        self._host.pulse()

    async def _run_process(self, slot: WorkerSlot) -> RestartReason:
        """One process lifetime. Returns why it ended: it exited, hung, or was replaced."""
        config = self._host.worker_config(slot)
        standby, slot.standby = slot.standby, None
        gen = standby.gen if standby is not None else next(self._gens)
        slot.gen = gen
        slot.replace = asyncio.get_running_loop().create_future()
        slot.state = WorkerState.STARTING
        slot.up = False
        resuming = sum(1 for a in config.shards if a.session is not None)
        if standby is not None:
            # It maps the in-flight file of the config it was started with; the new one
            # computed here for its Activate goes unused.
            self._host.discard_inflight(config.inflight_file)
            proc = standby
        else:
            proc = await SpawnedWorker.spawn(
                worker_id=slot.worker_id,
                gen=gen,
                env=self._worker_env,
                log_json=self._settings.log_json,
            )
            proc.inflight_file = config.inflight_file
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
            # A standby process has loaded the handler already and only waits for its shards.
            first: ipc.ToWorker = (
                ipc.Start(gen=gen, config=config)
                if standby is None
                else ipc.Activate(gen=gen, shards=config.shards)
            )
            await proc.send(first)
            waiting: set[asyncio.Future[Any]] = {reader, pinger, replace}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if replace.done():
                why = replace.result()
                keep = why is RestartReason.ROLLING or (
                    why is RestartReason.SHUTDOWN and self._host.kept_sessions
                )
                await self._graceful_stop(slot, proc, reader, keep)
                result = why
            elif pinger.done() and not reader.done():
                await self._kill_hung(slot, proc)
                result = RestartReason.HUNG
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
                result = RestartReason.EXIT
        finally:
            for task in (reader, pinger):
                task.cancel()
            await asyncio.gather(reader, pinger, return_exceptions=True)
            if not replace.done():
                replace.cancel()
            await proc.kill()
            self._process_gone(slot, gen)
        if result in (RestartReason.EXIT, RestartReason.HUNG):
            # Poison events: what its handlers were inside when it died (shardmgr.poison).
            self._host.worker_died(slot, proc, result is RestartReason.HUNG)
        else:
            self._host.discard_inflight(proc.inflight_file)
        return result

    async def _graceful_stop(
        self,
        slot: WorkerSlot,
        proc: SpawnedWorker,
        reader: asyncio.Task[None],
        keep_sessions: bool,
    ) -> None:
        slot.state = WorkerState.STOPPING
        self._permits.cancel_generation(proc.gen)
        self._host.pulse()

        async def shut_down() -> None:
            await proc.send(ipc.Shutdown(gen=proc.gen, keep_sessions=keep_sessions))
            # The reader keeps applying reports (Suspended carries the sessions) until EOF.
            await asyncio.wait({reader})

        # One deadline for both: a worker that stopped reading would block the send.
        done = True
        try:
            await asyncio.wait_for(shut_down(), self._settings.shutdown_timeout_s)
        except TimeoutError:
            done = False
        if not done:
            log.warning(
                "worker did not finish its shutdown in time; killing it",
                extra=fields(worker=slot.worker_id, gen=proc.gen, pid=proc.pid),
            )
        code = await proc.stop(1.0 if done else 0.0)
        slot.last_exit = f"stopped (exit status {code})"

    async def _kill_hung(self, slot: WorkerSlot, proc: SpawnedWorker) -> None:
        slot.state = WorkerState.HUNG
        self._permits.cancel_generation(proc.gen)
        self._host.pulse()
        log.error(
            "worker stopped answering pings; dumping its stacks, then killing it",
            extra=fields(
                worker=slot.worker_id,
                gen=proc.gen,
                pid=proc.pid,
                timeout_s=self._settings.ping_timeout_s,
            ),
        )
        proc.dump_stacks()
        # Give faulthandler a moment to write the dump before the group is killed.
        await proc.wait(0.5)
        code = await proc.kill()
        slot.last_exit = f"hung, killed (exit status {code})"

    def _process_gone(self, slot: WorkerSlot, gen: int) -> None:
        self._permits.generation_gone(gen)
        self._host.process_gone(slot, gen)
        if slot.gen == gen:
            slot.up = False
            slot.proc = None
            self._metrics.worker_up(slot.worker_id, False)
        self._host.pulse()

    async def _read_loop(self, slot: WorkerSlot, proc: SpawnedWorker) -> None:
        while (msg := await proc.recv()) is not None:
            if msg.gen != proc.gen:
                # A frame stamped by another generation cannot be trusted for this slot.
                self._host.stale(slot.worker_id, msg)
                continue
            try:
                self._host.handle_message(slot.worker_id, msg)
            except Exception:
                # Our own bug must not look like the worker dying (and get it killed).
                self.message_errors += 1
                log.exception(
                    "applying a worker report failed",
                    extra=fields(worker=slot.worker_id, kind=type(msg).__name__),
                )

    async def _ping_loop(self, slot: WorkerSlot, proc: SpawnedWorker) -> None:
        """Returns when the worker stopped answering (or never came up)."""
        interval = self._settings.ping_interval_s
        nonce = 0
        while True:
            now = self._clock.monotonic()
            if not slot.up:
                if now - slot.spawned_at > self._settings.start_timeout_s:
                    log.error(
                        "worker did not start in time",
                        extra=fields(
                            worker=slot.worker_id, timeout_s=self._settings.start_timeout_s
                        ),
                    )
                    return
            elif now - slot.last_pong > self._settings.ping_timeout_s:
                return
            nonce += 1
            # Bounded: a stopped worker stops draining its pipe, and that must not stall
            # the very loop that is meant to notice it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.send(ipc.Ping(gen=proc.gen, nonce=nonce)), interval)
            await self._clock.sleep(interval)

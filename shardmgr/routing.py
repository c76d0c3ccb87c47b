"""Routing of cluster calls: a worker's ``ClusterCall`` (a handler's ``rpc_`` call, or a
gateway command for another worker's shard) goes to the worker(s) it targets as
``RunCall``; their ``RunResult``s come back to the caller as one ``CallReply``.

The supervisor never decodes call arguments or results: it checks their size, keeps
every wait under the call's deadline, and answers a clear per-worker error for a worker
that is restarting past the deadline, dies mid-call, or answers too much. Workers on
other hosts are reached through a ``RemoteLink`` (``shardmgr.cluster_redis``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter

from shardmgr.config import Settings
from shardmgr.shardtable import ShardTable
from shardmgr.workerslot import WorkerSlot, WorkerState
from workers import ipc
from workers.cluster import CallError, check_timeout
from workers.ipc import ShardState
from workers.logsetup import fields

log = logging.getLogger(__name__)

STOPPED: Final = ShardState.STOPPED.value

# Calls the supervisor routes at once; more are refused (BUSY) rather than queued.
MAX_ROUTING: Final = 4096
REPLY_SEND_S: Final = 5.0
MAX_NAME: Final = 100
# One reply carries every worker's result; it must fit a frame the caller can read (and
# one Redis message), however many workers answered at call_max_bytes each.
REPLY_BUDGET: Final = ipc.MAX_FRAME // 2


class RouterHost(Protocol):
    """What the router needs from the supervisor."""

    @property
    def slots(self) -> Mapping[int, WorkerSlot]: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def shards(self) -> ShardTable: ...
    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> bool: ...


class RemoteLink(Protocol):
    """Other hosts' workers (``shardmgr.cluster_redis.RedisClusterLink``)."""

    async def start(self, router: ClusterRouter) -> None: ...
    async def aclose(self) -> None: ...
    async def host_for_shard(self, shard_id: int) -> str | None: ...
    async def other_hosts(self) -> list[str]: ...
    async def route(
        self, host: str, name: str, args: bytes, target: ipc.CallTarget, timeout_s: float
    ) -> list[ipc.CallOutcome]: ...


def host_name(settings: Settings) -> str:
    """This supervisor's name among the bot's hosts: its slice index when it has one."""
    if settings.host_index is not None:
        return str(settings.host_index)
    return f"{socket.gethostname()}-{os.getpid()}"


def fit_reply(outcomes: list[ipc.CallOutcome], budget: int = REPLY_BUDGET) -> list[ipc.CallOutcome]:
    """``outcomes`` with the largest results turned into OVERSIZED errors until their
    total fits ``budget``: the other workers' answers still arrive."""
    total = sum(len(o.result) for o in outcomes)
    if total <= budget:
        return outcomes
    out = list(outcomes)
    for i in sorted(range(len(out)), key=lambda k: len(out[k].result), reverse=True):
        if total <= budget:
            break
        o = out[i]
        total -= len(o.result)
        out[i] = error(
            o.host,
            o.worker,
            CallError.OVERSIZED,
            f"result of {len(o.result)} bytes dropped: the whole answer exceeds {budget} bytes",
        )
    return out


def error(host: str, worker: int, reason: CallError, message: str) -> ipc.CallOutcome:
    return ipc.CallOutcome(host=host, worker=worker, ok=False, error=message, reason=reason)


class ClusterRouter:
    def __init__(
        self,
        host: RouterHost,
        *,
        host_name: str,
        max_bytes: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._host = host
        self.host_name = host_name
        self.max_bytes = max_bytes
        self.remote: RemoteLink | None = None
        self._nonces = itertools.count(1)
        # RunCall nonce -> (generation it went to, its result)
        self._pending: dict[int, tuple[int, asyncio.Future[ipc.RunResult]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors: dict[str, int] = {}
        self._metric = Counter(
            "shardmgr_cluster_call_errors_total",
            "Cluster call parts that failed (per worker reached), by reason",
            ["reason"],
            registry=registry,
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self.remote is not None:
            await self.remote.start(self)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.remote is not None:
            await self.remote.aclose()

    def count(self, reason: CallError) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self._metric.labels(reason=reason.value).inc()

    # ---------------------------------------------------------------- worker messages

    def on_call(
        self, worker_id: int, send: Callable[[ipc.ToWorker], Any], msg: ipc.ClusterCall
    ) -> None:
        """A worker's call: routed in a task of its own; answered by one ``CallReply``."""
        if len(self._tasks) >= MAX_ROUTING:
            busy = [self._failed(worker_id, CallError.BUSY, "supervisor busy")]
            if len(self._tasks) >= 2 * MAX_ROUTING:
                return  # not even a refusal: the caller's own deadline answers it
            work = self._reply(send, msg, busy)
        else:
            work = self._serve(worker_id, send, msg)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_result(self, gen: int, msg: ipc.RunResult) -> None:
        entry = self._pending.get(msg.nonce)
        if entry is None or entry[0] != gen or entry[1].done():
            # Late (its wait timed out) or made up: never a crash, counted.
            self.count(CallError.GARBAGE)
            return
        entry[1].set_result(msg)

    async def _serve(
        self, worker_id: int, send: Callable[[ipc.ToWorker], Any], msg: ipc.ClusterCall
    ) -> None:
        if len(msg.args) > self.max_bytes:
            outcomes = [
                self._failed(
                    worker_id,
                    CallError.OVERSIZED,
                    f"arguments of {len(msg.args)} bytes exceed call_max_bytes {self.max_bytes}",
                )
            ]
        else:
            try:
                timeout = check_timeout(msg.timeout_s)
            except ValueError as exc:
                outcomes = [self._failed(worker_id, CallError.INVALID, str(exc))]
            else:
                outcomes = await self.route(msg.name, msg.args, msg.target, timeout)
        fitted = fit_reply(outcomes)
        for before, after in zip(outcomes, fitted, strict=True):
            if after is not before:
                self.count(CallError.OVERSIZED)
        await self._reply(send, msg, fitted)

    def _failed(self, worker: int, reason: CallError, message: str) -> ipc.CallOutcome:
        self.count(reason)
        return error(self.host_name, worker, reason, message)

    @staticmethod
    async def _reply(
        send: Callable[[ipc.ToWorker], Any], msg: ipc.ClusterCall, outcomes: list[ipc.CallOutcome]
    ) -> None:
        result = send(ipc.CallReply(gen=msg.gen, nonce=msg.nonce, outcomes=outcomes))
        if asyncio.iscoroutine(result):
            # Bounded: a caller that stopped reading its pipe must not pin this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLY_SEND_S):
                    await result

    # ---------------------------------------------------------------- routing

    async def route(
        self, name: str, args: bytes, target: ipc.CallTarget, timeout_s: float
    ) -> list[ipc.CallOutcome]:
        """Every outcome of one call, each within ``timeout_s``."""
        if len(name) > MAX_NAME:
            return [self._failed(-1, CallError.INVALID, f"call name over {MAX_NAME} characters")]
        slots = self._host.slots
        remote = self.remote
        if target.host is not None and target.host != self.host_name:
            return await self._route_remote(target.host, name, args, target, timeout_s)
        if target.shard is not None:
            for slot in slots.values():
                if target.shard in slot.shard_ids:
                    return [await self._run_on_shard(slot, target.shard, name, args, timeout_s)]
            owner = None
            if remote is not None and target.host is None:
                owner = await remote.host_for_shard(target.shard)
            if owner is not None and owner != self.host_name:
                return await self._route_remote(owner, name, args, target, timeout_s)
            return [self._failed(-1, CallError.NO_TARGET, f"no host runs shard {target.shard}")]
        if target.worker is not None:
            chosen = slots.get(target.worker)
            if chosen is None:
                return [self._failed(target.worker, CallError.NO_TARGET, "no such worker")]
            return [await self.run_local(chosen, name, args, timeout_s)]
        local = [self.run_local(slot, name, args, timeout_s) for slot in slots.values()]
        others: list[str] = []
        if remote is not None and target.host is None:
            others = [h for h in await remote.other_hosts() if h != self.host_name]
        everywhere = ipc.CallTarget(host=None)
        remote_parts = [self._route_remote(h, name, args, everywhere, timeout_s) for h in others]
        mine = await asyncio.gather(*local)
        theirs = await asyncio.gather(*remote_parts)
        return [*mine, *(o for part in theirs for o in part)]

    async def route_here(
        self, name: str, args: bytes, target: ipc.CallTarget, timeout_s: float
    ) -> list[ipc.CallOutcome]:
        """A call another host sent: only this host's workers."""
        here = ipc.CallTarget(shard=target.shard, worker=target.worker, host=self.host_name)
        return await self.route(name, args, here, timeout_s)

    def local_slots(self) -> Mapping[int, WorkerSlot]:
        return self._host.slots

    async def _route_remote(
        self, host: str, name: str, args: bytes, target: ipc.CallTarget, timeout_s: float
    ) -> list[ipc.CallOutcome]:
        if self.remote is None:
            return [self._failed(-1, CallError.NO_TARGET, f"host {host} is not reachable here")]
        # The remote host routes locally: the target it sees names no host.
        local_target = ipc.CallTarget(shard=target.shard, worker=target.worker, host=host)
        outcomes = await self.remote.route(host, name, args, local_target, timeout_s)
        for outcome in outcomes:
            if not outcome.ok:
                self.count(_reason(outcome.reason))
        return outcomes

    async def _run_on_shard(
        self, slot: WorkerSlot, shard_id: int, name: str, args: bytes, timeout_s: float
    ) -> ipc.CallOutcome:
        """A stopped shard may come back (its worker restarts, a re-plan): wait for it
        within the deadline rather than fail at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        table = self._host.shards

        def running() -> bool:
            view = table.get(shard_id)
            return view is None or view.state != STOPPED

        if not await self._host.wait_for(running, timeout_s):
            return self._failed(
                slot.worker_id,
                CallError.SHARD_UNAVAILABLE,
                f"shard {shard_id} stayed stopped for {timeout_s:g} s",
            )
        left = max(0.001, deadline - loop.time())
        return await self.run_local(slot, name, args, left)

    async def run_local(
        self, slot: WorkerSlot, name: str, args: bytes, timeout_s: float
    ) -> ipc.CallOutcome:
        """Run the call in ``slot``'s worker: waits for a restarting worker's successor
        up to the deadline; a worker that dies before answering is an error, not a hang."""
        wid = slot.worker_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def live() -> bool:
            return slot.up and slot.proc is not None and slot.state is WorkerState.RUNNING

        if not await self._host.wait_for(live, timeout_s) or (proc := slot.proc) is None:
            return self._failed(
                wid, CallError.TIMEOUT, f"worker {wid} was not running within {timeout_s:g} s"
            )
        nonce = next(self._nonces)
        result: asyncio.Future[ipc.RunResult] = loop.create_future()
        self._pending[nonce] = (proc.gen, result)
        gone = asyncio.ensure_future(proc.wait())
        try:
            left = max(0.001, deadline - loop.time())
            msg = ipc.RunCall(gen=proc.gen, nonce=nonce, name=name, args=args, timeout_s=left)
            try:
                async with asyncio.timeout(left):
                    sent = await proc.send(msg)
            except TimeoutError:
                sent = False
            if not sent:
                return self._failed(wid, CallError.WORKER_GONE, f"worker {wid} is not reachable")
            waiting: set[asyncio.Future[Any]] = {result, gone}
            await asyncio.wait(
                waiting, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
            )
            if result.done():
                return self._outcome(wid, result.result())
            if gone.done():
                return self._failed(
                    wid, CallError.WORKER_GONE, f"worker {wid} exited before answering"
                )
            return self._failed(wid, CallError.TIMEOUT, f"worker {wid} did not answer in time")
        finally:
            gone.cancel()
            self._pending.pop(nonce, None)

    def _outcome(self, wid: int, res: ipc.RunResult) -> ipc.CallOutcome:
        if not res.ok:
            self.count(_reason(res.reason))
            return error(self.host_name, wid, _reason(res.reason), res.error[:500])
        if len(res.result) > self.max_bytes:
            return self._failed(
                wid,
                CallError.OVERSIZED,
                f"result of {len(res.result)} bytes exceeds call_max_bytes {self.max_bytes}",
            )
        return ipc.CallOutcome(host=self.host_name, worker=wid, ok=True, result=res.result)


def _reason(value: str) -> CallError:
    try:
        return CallError(value)
    except ValueError:
        log.debug("unknown call error reason", extra=fields(reason=value[:40]))
        return CallError.FAILED

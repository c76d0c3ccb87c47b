"""Gateway commands from the operator (HTTP API, cluster router) to the worker process that
runs the shard, each answered by the worker's ``CommandQueued`` (matched by nonce)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable

from shardmgr.httpapi import CommandQueueFull
from shardmgr.workerslot import WorkerSlot
from workers import ipc


class CommandRelay:
    def __init__(self, slots: Callable[[], Iterable[WorkerSlot]], timeout_s: float) -> None:
        """``slots()`` is the supervisor's current set; a worker that does not answer
        within ``timeout_s`` counts as not reached."""
        self._slots = slots
        self._timeout_s = timeout_s
        self._nonces = itertools.count(1)
        # SendCommand nonce -> the worker's CommandQueued answer, awaited by send
        self._replies: dict[int, asyncio.Future[ipc.CommandQueued]] = {}

    async def send(self, shard_id: int, op: int, d: bytes) -> bool:
        """Forward a gateway command (``d`` as JSON bytes) to the worker running
        ``shard_id``. False when no live worker runs it right now (unplanned shard, worker
        starting or restarting, or no answer in time); the worker queues it until the
        shard's connection is ready. Raises ``CommandQueueFull`` when the shard's bounded
        queue is full."""
        for slot in self._slots():
            if shard_id in slot.shard_ids:
                proc = slot.proc
                if proc is None or proc.returncode is not None or not slot.up:
                    return False
                nonce = next(self._nonces)
                reply: asyncio.Future[ipc.CommandQueued] = (
                    asyncio.get_running_loop().create_future()
                )
                self._replies[nonce] = reply
                try:
                    msg = ipc.SendCommand(gen=proc.gen, shard_id=shard_id, op=op, d=d, nonce=nonce)
                    if not await proc.send(msg):
                        return False
                    async with asyncio.timeout(self._timeout_s):
                        answer = await reply
                except TimeoutError:
                    return False
                finally:
                    self._replies.pop(nonce, None)
                if not answer.queued and answer.retry_after_s > 0:
                    raise CommandQueueFull(answer.retry_after_s)
                return answer.queued
        return False

    async def broadcast(self, op: int, d: bytes) -> tuple[int, int]:
        """``send`` to every planned shard: (shards reached, shards planned)."""
        shard_ids = [sid for slot in self._slots() for sid in slot.shard_ids]
        results = await asyncio.gather(
            *(self.send(sid, op, d) for sid in shard_ids), return_exceptions=True
        )
        return sum(r is True for r in results), len(shard_ids)

    def answered(self, msg: ipc.CommandQueued) -> None:
        reply = self._replies.get(msg.nonce)
        if reply is not None and not reply.done():
            reply.set_result(msg)

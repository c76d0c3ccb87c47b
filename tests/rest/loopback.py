"""Workers' REST coordinators wired to a ``RestBroker`` in this process, each message framed
and decoded exactly as on a worker's IPC pipe, delivered on a later loop turn like a pipe."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from shardmgr.restlimits import RestBroker
from workers import ipc
from workers.rest.limiter import RemoteCoordinator

_to_sup: Any = msgspec.msgpack.Decoder(ipc.ToSupervisor)
_to_worker: Any = msgspec.msgpack.Decoder(ipc.ToWorker)


class Loopback:
    def __init__(self, broker: RestBroker, worker_id: int, gen: int = 1) -> None:
        self.broker = broker
        self.owner = (worker_id, gen)
        self.coordinator = RemoteCoordinator(self._up, gen)
        self.stats: list[ipc.RestStats] = []

    def _up(self, msg: ipc.ToSupervisor) -> None:
        decoded = _to_sup.decode(ipc.frame(msg)[4:])
        if isinstance(decoded, ipc.RestStats):
            self.stats.append(decoded)
            return
        asyncio.get_running_loop().call_soon(self.broker.handle, self.owner, decoded, self._down)

    async def _down(self, msg: ipc.ToWorker) -> bool:
        decoded = _to_worker.decode(ipc.frame(msg)[4:])
        asyncio.get_running_loop().call_soon(self.coordinator.deliver, decoded)
        return True

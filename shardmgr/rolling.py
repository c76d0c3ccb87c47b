"""Canary rolling restarts: before a worker's shards are handed over, its replacement
process loads the (possibly new) handler and runs its ``start()`` in standby. Only a
replacement that reported ``Ready`` takes the shards over; one that cannot load stops the
roll, and the old workers keep running untouched.

``start_canary`` spawns and proves one standby process; ``RollingTracker`` holds the outcome
of the last roll for ``/status``, the log and the metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from shardmgr.workerproc import SpawnedWorker
from workers import ipc
from workers.logsetup import fields

log = logging.getLogger(__name__)


class RollingState(StrEnum):
    IDLE = "idle"  # no rolling restart since the supervisor started
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # stopped: a replacement could not load the handler


class CanaryFailed(Exception):
    """The replacement process could not load the handler or run its ``start()``;
    ``reason`` is one line."""

    def __init__(self, handler: str, reason: str) -> None:
        super().__init__(reason)
        self.handler = handler
        self.reason = reason


async def start_canary(
    *,
    worker_id: int,
    gen: int,
    config: ipc.WorkerConfig,
    env: Mapping[str, str] | None,
    timeout_s: float,
) -> SpawnedWorker:
    """A standby worker process that has loaded ``config.handler`` and run its ``start()``,
    connected to nothing yet: hand it its shards with ``ipc.Activate``. Raises
    ``CanaryFailed`` (the process killed and reaped) otherwise."""
    proc = await SpawnedWorker.spawn(
        worker_id=worker_id, gen=gen, env=env, log_json=config.log_json
    )
    proc.inflight_file = config.inflight_file
    try:
        await proc.send(ipc.Start(gen=gen, config=config, standby=True))
        try:
            async with asyncio.timeout(timeout_s):
                answer = await proc.recv()
                # e.g. the final stats (of no shard) of a runtime that failed to start
                while isinstance(answer, ipc.Stats):
                    answer = await proc.recv()
        except TimeoutError:
            raise CanaryFailed(
                config.handler,
                f"the new worker did not load the handler within {timeout_s:g} s "
                "(start_timeout_s); is its start() blocked?",
            ) from None
        match answer:
            case ipc.Ready(gen=answered) if answered == gen:
                return proc
            case ipc.LoadFailed():
                raise CanaryFailed(answer.handler, answer.reason)
            case None:
                code = await proc.stop(1.0)
                raise CanaryFailed(
                    config.handler,
                    f"the new worker exited (status {code}) before loading the handler",
                )
            case _:
                raise CanaryFailed(
                    config.handler, f"the new worker answered {type(answer).__name__}"
                )
    except BaseException:
        await proc.kill()
        raise


class RollingMetrics(Protocol):
    def rolling_restart_outcome(self, failed: bool) -> None: ...


class RollingTracker:
    """The last rolling restart's outcome, as ``/status`` shows it."""

    def __init__(self, metrics: RollingMetrics) -> None:
        self._metrics = metrics
        self.state = RollingState.IDLE
        self.reason: str | None = None
        self.handler: str | None = None
        self.worker: int | None = None
        self.at: float | None = None

    @property
    def running(self) -> bool:
        return self.state is RollingState.RUNNING

    def begin(self) -> None:
        self._set(RollingState.RUNNING)

    def finished(self) -> None:
        self._set(RollingState.FINISHED)
        self._metrics.rolling_restart_outcome(failed=False)

    def interrupted(self) -> None:
        """Stopped by a shutdown or a re-plan: neither a success nor the new code's fault."""
        if self.running:
            self._set(RollingState.IDLE)

    def failed(self, worker_id: int, failure: CanaryFailed) -> None:
        self._set(RollingState.FAILED, failure.reason, failure.handler, worker_id)
        self._metrics.rolling_restart_outcome(failed=True)
        log.error(
            f"rolling restart stopped, the old workers keep running: handler "
            f"{failure.handler} did not load in the new worker: {failure.reason}",
            extra=fields(worker=worker_id, handler=failure.handler, reason=failure.reason),
        )

    def _set(
        self,
        state: RollingState,
        reason: str | None = None,
        handler: str | None = None,
        worker: int | None = None,
    ) -> None:
        self.state = state
        self.reason, self.handler, self.worker = reason, handler, worker
        self.at = time.time()

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "handler": self.handler,
            "worker": self.worker,
            "at": self.at,
        }

"""The rolling restart itself, slot by slot: a canary replacement loads the handler first
(``shardmgr.rolling``); only then the old process suspends its shards and the canary resumes
them. The supervisor runs it from its control loop, never beside a re-plan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shardmgr.rolling import CanaryFailed
from shardmgr.workerproc import SpawnedWorker
from shardmgr.workerslot import RestartReason, SlotRunner, WorkerSlot, WorkerState
from workers.ipc import ShardState
from workers.logsetup import fields

if TYPE_CHECKING:
    from shardmgr.supervisor import Supervisor

log = logging.getLogger(__name__)


async def rolling_restart(sup: Supervisor, runner: SlotRunner) -> None:
    sup.roll.begin()
    log.info("rolling restart", extra=fields(workers=len(sup.slots)))
    try:
        for slot in list(sup.slots.values()):
            if sup.stopping or slot.retired:
                return
            if slot.state is WorkerState.STOPPED or slot.replace is None:
                continue
            try:
                standby = await runner.canary(slot)
            except CanaryFailed as failure:
                sup.roll.failed(slot.worker_id, failure)
                return
            try:
                ok = await sup.wait_for(
                    _replaced_and_back(sup, slot, standby),
                    sup.settings.start_timeout_s + sup.settings.shutdown_timeout_s,
                )
            finally:
                await runner.drop_standby(slot, standby)
            if not ok:
                log.warning(
                    "rolling restart: worker's shards did not reconnect in time; continuing",
                    extra=fields(worker=slot.worker_id),
                )
        sup.roll.finished()
        log.info("rolling restart finished")
    finally:
        sup.roll.interrupted()
        sup.pulse()


def _replaced_and_back(
    sup: Supervisor, slot: WorkerSlot, standby: SpawnedWorker
) -> Callable[[], bool]:
    """Hand ``standby`` to the slot and ask for its process to be replaced; the returned
    predicate holds once the replacement is up and every shard it runs is connected
    again (or stopped for good)."""
    old_gen = slot.gen
    slot.standby = standby
    slot.ask_replace(RestartReason.ROLLING)

    def back() -> bool:
        return (
            slot.gen != old_gen
            and slot.up
            and sup.shards.all_in(
                slot.shard_ids, ShardState.CONNECTED.value, ShardState.STOPPED.value
            )
        )

    return back

"""What the supervisor does with each report a worker sends: generation fencing first (a
report from a replaced process changes nothing), then one case per message of
``ipc.ToSupervisor``. A reshard's new set, starting beside the delivering one, keeps books
of its own."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, assert_never

from shardmgr.workerproc import SpawnedWorker
from shardmgr.workerslot import LEAVING, WorkerSlot, WorkerState
from workers import ipc
from workers.clock import Clock
from workers.logsetup import fields

if TYPE_CHECKING:
    from shardmgr.supervisor import Supervisor

log = logging.getLogger(__name__)


def apply_report(sup: Supervisor, clock: Clock, worker_id: int, msg: ipc.ToSupervisor) -> bool:
    """Apply one report; False (and nothing changes) if it comes from a generation that
    is not the slot's current one, so a replaced process can never act on its shards."""
    slot = sup.slots.get(worker_id)
    # a reshard's new set, starting beside this one, keeps books of its own
    books = sup.reshard.books(worker_id) if slot is None else None
    if books is not None:
        slot = books.slots[worker_id]
    if slot is None or msg.gen != slot.gen or slot.proc is None:
        sup.stale(worker_id, msg)
        return False
    shards = books.shards if books is not None else sup.shards
    if books is None:  # the metrics show the set that delivers (the new one once adopted)
        sup.metrics.on_worker_message(worker_id, msg)
        sup.fatal.on_message(msg)
    (books.sessions if books is not None else sup.sessions).on_message(msg)
    match msg:
        case ipc.Pong():
            slot.last_pong = clock.monotonic()
            return True
        case ipc.Ready() | ipc.LoadFailed():
            # Only a standby process sends these, and start_canary reads them itself.
            return False
        case ipc.Started():
            slot.up = True
            slot.state = WorkerState.RUNNING
            slot.last_pong = clock.monotonic()
            slot.policy.started()
            sup.metrics.worker_up(worker_id, True)
        case ipc.IdentifyRequest():
            _on_identify_request(sup, slot, slot.proc, msg)
        case ipc.IdentifyRelease():
            sup.permits.release(msg.gen, msg.shard_id, msg.nonce)
        case ipc.IdentifySent():
            sup.permits.sent(msg.gen, msg.shard_id, msg.nonce)
        case ipc.CommandQueued():
            sup.commands.answered(msg)
        case ipc.RestGlobalAsk() | ipc.RestClaim() | ipc.RestRelease():
            assert slot.proc is not None
            sup.rest.handle((worker_id, msg.gen), msg, slot.proc.send)
        case ipc.RestStats():
            pass  # metrics only (on_worker_message)
        case ipc.ClusterCall():
            assert slot.proc is not None
            sup.router.on_call(worker_id, slot.proc.send, msg)
        case ipc.RunResult():
            sup.router.on_result(msg.gen, msg)
        case ipc.ShardStopped():
            shards.apply(worker_id, msg)
            if books is None:
                sup.on_shard_stopped(slot, msg)
        case ipc.DeadLettered():
            sup.poison.dead_lettered(msg)
        case ipc.Replayed():
            sup.replays.replayed(msg)
        case ipc.Delivering():
            sup.reshard.on_delivering(msg)
        case (
            ipc.ShardStateChanged()
            | ipc.SessionStarted()
            | ipc.Reconnecting()
            | ipc.Stats()
            | ipc.Suspended()
        ):
            shards.apply(worker_id, msg)
        case _:
            assert_never(msg)
    sup.pulse()
    return True


def _on_identify_request(
    sup: Supervisor, slot: WorkerSlot, proc: SpawnedWorker, msg: ipc.IdentifyRequest
) -> None:
    if sup.stopping or slot.state in LEAVING:
        # A worker on its way out must not spend a session start; its own shutdown
        # abandons the wait.
        return
    if msg.shard_id not in slot.shard_ids:
        log.error(
            "a worker asked to identify a shard it does not run; refused",
            extra=fields(worker=slot.worker_id, gen=msg.gen, shard=msg.shard_id),
        )
        sup.permits.refuse(msg, "not a shard of this worker", send=proc.send)
        return

    def wanted() -> bool:
        return slot.proc is proc and slot.state not in LEAVING and not sup.stopping

    sup.permits.request(msg, send=proc.send, wanted=wanted)

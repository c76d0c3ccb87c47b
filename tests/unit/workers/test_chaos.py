"""The worker's acceptance run: 16 shards in one runtime against the fake gateway's chaos
mode (random op 7, zombies, TCP cuts, close codes, op 9, stalls, corrupt frames...), then
every dispatched seq of every session checked against the fake's ground truth.

The run is measured in faults, not wall time: it lasts until the fake has injected
``CHAOS_FAULTS`` of them (one every ``FAULT_INTERVAL_S`` on average). ``WORKER_CHAOS_SECONDS``
sets the intended length (default 24 s = 60 faults; the acceptance run uses 60)."""

from __future__ import annotations

import os

from shardmgr.fakegateway import FakeGateway
from tests.unit.workers.gateway_harness import Recorder, connected, eventually, fake_config, running
from tests.unit.workers.gateway_harness import worker_config as base_worker_config
from workers.ipc import ShardState

SHARDS = 16
FAULT_INTERVAL_S = 0.4
CHAOS_S = float(os.environ.get("WORKER_CHAOS_SECONDS", "24"))
CHAOS_FAULTS = max(10, int(CHAOS_S / FAULT_INTERVAL_S))


async def test_sixteen_shards_stay_connected_through_chaos_and_deliver_every_seq() -> None:
    rec = Recorder()
    fake = fake_config(shards=SHARDS, event_rate=20, heartbeat_interval_s=1.0)
    async with FakeGateway(fake) as fg:
        cfg = base_worker_config(fg, shards=SHARDS, backoff_base_s=0.2, backoff_cap_s=2.0)
        async with running(cfg, rec.on_event) as (runtime, reporter):
            await connected(reporter, SHARDS)
            # a fault somewhere about every 0.4 s: each shard is hit every few seconds
            await fg.set_chaos(seed=20261128, interval_s=FAULT_INTERVAL_S)
            await fg.wait_for(
                lambda fg: len(fg.fault_log()) >= CHAOS_FAULTS,
                CHAOS_S * 3 + 30,
                what=f"{CHAOS_FAULTS} faults injected",
            )
            await fg.set_chaos(None)
            fg.set_event_rate(0)

            def settled() -> bool:
                active = fg.active_sessions()
                return (
                    all(s.state is ShardState.CONNECTED for s in runtime.shards.values())
                    and len(active) == SHARDS
                    and all(
                        rec.session.get(shard) == info["session_id"]
                        and rec.seqs(shard, info["session_id"])[-1:] == [info["last_seq"]]
                        for shard, info in active.items()
                    )
                )

            await eventually(settled)
            assert reporter.stops == []
            faults = fg.fault_log()
            # the run really was eventful (the seeded choice sequence is deterministic)
            assert len(faults) >= CHAOS_FAULTS
            assert len({f["kind"] for f in faults}) >= 5

            for session in fg.sessions():
                shard, sid = session["shard_id"], session["session_id"]
                got = rec.seqs(shard, sid)
                # active: everything the session ever dispatched; ended by the server
                # (op 9 false): everything it wrote before ending it
                last = (
                    session["last_seq"]
                    if session["state"] == "active"
                    else session["last_seq_sent"]
                )
                assert got == list(range(1, last + 1)), (
                    f"shard {shard} session {sid} ({session['state']}): "
                    f"{len(got)} delivered of {last}"
                )
                assert session["state"] != "disconnected", f"session {sid} was abandoned"

            # no identify beyond the first of each shard and those op 9 false forced
            forced = sum(1 for f in faults if f["kind"] == "invalid_session" and not f["resumable"])
            assert fg.stats()["identifies"] == SHARDS + forced

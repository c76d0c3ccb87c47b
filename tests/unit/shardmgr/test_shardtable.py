from __future__ import annotations

from shardmgr.shardtable import ShardTable, state_after, state_without_worker
from workers import ipc

SESSION = ipc.SessionInfo(session_id="s", seq=1, resume_url="ws://x")


def _started(shard_id: int) -> ipc.SessionStarted:
    return ipc.SessionStarted(
        gen=1, shard_id=shard_id, kind="identify", session=SESSION, guilds=3, at=0.0
    )


def test_session_started_means_connected() -> None:
    table = ShardTable([[0, 1]])
    table.apply(0, _started(0))
    view = table.get(0)
    assert view is not None and view.state == "connected" and view.guilds == 3
    assert table.count("connected") == 1


def test_stats_counters_add_up_in_the_status_of_the_shard() -> None:
    table = ShardTable([[0, 1]])
    for _ in range(2):
        stats = ipc.ShardStats(shard_id=1, duplicates=3, skipped=1, identifies=1, resumes=2)
        table.apply(0, ipc.Stats(gen=1, shards=[stats]))
    view = table.get(1)
    assert view is not None
    doc = view.as_dict(now=0.0, session=None)
    assert (doc["duplicates"], doc["skipped"], doc["identifies"], doc["resumes"]) == (6, 2, 2, 4)


def test_worker_gone_leaves_its_shards_idle_unless_stopped() -> None:
    table = ShardTable([[0, 1]])
    table.apply(0, _started(0))
    table.apply(0, ipc.ShardStopped(gen=1, shard_id=1, reason="4014", close_code=4014, fatal=True))
    table.worker_gone([0, 1])
    states = [v.state for v in table.views()]
    assert states == ["idle", "stopped"]


def test_report_about_another_workers_shard_is_ignored() -> None:
    table = ShardTable([[0], [1]])
    table.apply(0, _started(1))
    view = table.get(1)
    assert view is not None and view.state == "idle"


def test_messages_without_a_shard_state_imply_none() -> None:
    assert state_after(ipc.Pong(gen=1, nonce=1)) is None
    assert state_without_worker("connected") == "idle"


def test_a_reconnecting_shard_shows_no_latency_until_its_new_connection_measures_one() -> None:
    table = ShardTable([[0]])
    table.apply(0, _started(0))
    table.apply(0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, latencies_s=[0.04])]))
    reconnecting = ipc.Reconnecting(
        gen=1, shard_id=0, reason=ipc.Reason.OP7, close_code=None, resume=True, delay_s=0.1
    )
    table.apply(0, reconnecting)
    table.apply(0, _started(0))
    view = table.get(0)
    assert view is not None and view.latency_s is None

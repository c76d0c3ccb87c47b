"""The chaos harness's pure helpers: reading /status, deciding a fault missed, waiting for
delivery, the duplicate bound."""

from __future__ import annotations

from tests.chaos.checker import Delivery, FakeSession
from tests.chaos.harness import ChaosConfig, _missed, covered, shard_states, worker_pids
from tests.chaos.schedule import Fault, Kind

STATUS = {
    "supervisor": {"pid": 10},
    "workers": [{"id": 0, "pid": 11}, {"id": 1, "pid": None}],
    "shards": [{"id": 0, "state": "connected"}, {"id": 1, "state": "reconnecting"}],
}


def test_shard_states_and_worker_pids_come_from_status() -> None:
    assert shard_states(STATUS) == {0: "connected", 1: "reconnecting"}
    assert worker_pids(STATUS) == [11]
    assert shard_states(None) == {} and worker_pids(None) == []


def test_a_gateway_fault_that_hit_no_shard_is_missed() -> None:
    assert _missed(Fault(1.0, Kind.CUT, shard_id=0), {"kind": "cut", "shards": []})
    assert not _missed(Fault(1.0, Kind.CUT, shard_id=0), {"kind": "cut", "shards": [0]})
    assert not _missed(Fault(1.0, Kind.HELLO_RECONNECT, shard_id=0), {"shards": []})


def test_covered_waits_for_every_sent_seq_of_live_sessions_only() -> None:
    live = FakeSession(shard_id=0, session_id="a", first_seq=1, last_seq_sent=3, state="active")
    ended = FakeSession(
        shard_id=1, session_id="b", first_seq=1, last_seq_sent=9, state="ended", ended_reason="op9"
    )
    got = [Delivery(0, 1, "READY", "a"), Delivery(0, 2, "X")]
    assert not covered([live, ended], got)
    assert covered([live, ended], [*got, Delivery(0, 3, "X")])


def test_duplicate_bound_scales_with_traffic_per_worker() -> None:
    quiet = ChaosConfig(shards=4, workers=2, event_rate=1.0).limits()
    busy = ChaosConfig(shards=4, workers=2, event_rate=50.0).limits()
    assert quiet.max_duplicates_per_crash == 50
    assert busy.max_duplicates_per_crash == 2 * 50 * 5


def test_covered_counts_dead_lettered_seqs_as_dealt_with() -> None:
    live = FakeSession(shard_id=0, session_id="a", first_seq=1, last_seq_sent=3, state="active")
    got = [Delivery(0, 1, "READY", "a"), Delivery(0, 3, "X")]
    assert not covered([live], got)
    assert covered([live], got, {"a": frozenset({2})})
    assert not covered([live], got, {"other": frozenset({2})})

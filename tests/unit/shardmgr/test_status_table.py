from __future__ import annotations

from shardmgr.status import render

DOC = {
    "supervisor": {
        "pid": 42,
        "connected_shards": 1,
        "planned_shards": 2,
        "total_shards": 2,
        "ready": False,
        "session_start_remaining": 990,
        "budget_exhausted": None,
    },
    "workers": [
        {
            "id": 0,
            "pid": 100,
            "gen": 3,
            "state": "running",
            "restarts": 2,
            "crash_looping": False,
            "shards": [0, 1],
            "last_exit": "exit status -9",
        },
    ],
    "shards": [
        {
            "id": 0,
            "worker": 0,
            "state": "connected",
            "latency_s": 0.0421,
            "reconnects": 1,
            "guilds": 10,
            "last_event_age_s": 0.25,
            "session_age_s": 12.0,
            "session_kind": "resume",
            "stop_reason": None,
        },
        {
            "id": 1,
            "worker": 0,
            "state": "stopped",
            "latency_s": None,
            "reconnects": 0,
            "guilds": 0,
            "last_event_age_s": None,
            "session_age_s": None,
            "session_kind": None,
            "stop_reason": "4014",
        },
    ],
}


def test_status_table_shows_one_row_per_worker_and_shard() -> None:
    lines = render(DOC).splitlines()
    assert lines[0].startswith("supervisor pid 42: 1/2 shards connected")
    worker = next(line for line in lines if line.startswith("0 ") and "100" in line)
    assert "running" in worker and "0-1" in worker and "exit status -9" in worker
    shard0 = next(line for line in lines if line.split()[:3] == ["0", "0", "connected"])
    assert "42" in shard0.split() and "resume" in shard0
    shard1 = next(line for line in lines if line.split()[:2] == ["1", "0"])
    assert "stopped (4014)" in shard1


def test_status_table_flags_an_exhausted_budget() -> None:
    doc = {**DOC, "supervisor": {**DOC["supervisor"], "budget_exhausted": "2 remaining"}}
    assert "IDENTIFY BUDGET EXHAUSTED: 2 remaining" in render(doc)


def test_status_table_shows_a_reshard_in_progress() -> None:
    reshard = {"phase": "starting", "from": 8, "to": 16, "ready": 5, "elapsed_s": 12.4}
    doc = {**DOC, "supervisor": {**DOC["supervisor"], "reshard": reshard}}
    assert "RESHARDING 8 -> 16 shards (starting): 5 of 16 new shards ready after 12 s" in render(
        doc
    )


def test_status_table_says_why_the_last_reshard_failed() -> None:
    last = {"outcome": "failed", "from": 8, "to": 9, "reason": "new shard 0 closed with 4011"}
    doc = {**DOC, "supervisor": {**DOC["supervisor"], "reshard": {"phase": "idle", "last": last}}}
    assert "last reshard 8 -> 9 failed: new shard 0 closed with 4011" in render(doc)
    ok = {"phase": "idle", "last": {**last, "outcome": "succeeded"}}
    assert "reshard" not in render({**DOC, "supervisor": {**DOC["supervisor"], "reshard": ok}})

"""The example bot's ``!guilds`` and ``!where`` answers, from made-up cluster stats."""

from __future__ import annotations

from examples.cluster_commands import WHERE_USAGE, guilds_text, parse_guild_id, where_text
from workers.cluster import CallError, ClusterCallError, ClusterStats, WorkerKey, WorkerStats


def stats(*hosts: str, failed: int = 0) -> ClusterStats:
    # Host i runs shards 4i..4i+3, two per worker.
    workers = {
        WorkerKey(h, w): WorkerStats(
            shards=[4 * i + 2 * w, 4 * i + 2 * w + 1], guilds=10 + w, latency_s={}
        )
        for i, h in enumerate(hosts)
        for w in range(2)
    }
    errors = {
        WorkerKey("x", i): ClusterCallError("gone", CallError.WORKER_GONE) for i in range(failed)
    }
    return ClusterStats(workers, errors)


def test_guilds_is_the_total_of_every_worker() -> None:
    assert guilds_text(stats("0")) == "guilds: 21"
    assert guilds_text(stats("0", "1")) == "guilds: 42"


def test_guilds_says_how_many_workers_did_not_answer() -> None:
    assert guilds_text(stats("0", failed=1)) == "guilds: 21 (1 worker(s) did not answer)"


def test_where_names_the_worker_running_the_shard() -> None:
    assert where_text(99, 3, stats("0")) == "guild 99: shard 3, worker 1"


def test_where_adds_the_host_when_the_bot_spans_several() -> None:
    assert where_text(99, 6, stats("0", "1")) == "guild 99: shard 6, worker 1 on host 1"


def test_where_without_an_answer_from_the_owner_says_unknown() -> None:
    assert "worker unknown" in where_text(99, 7, stats("0"))


def test_where_needs_a_numeric_guild_id() -> None:
    assert parse_guild_id("12345") == 12345
    assert parse_guild_id("abc") is None
    assert parse_guild_id("") is None
    assert WHERE_USAGE.startswith("usage: !where")

"""Metrics as a specification: IPC reports in, Prometheus exposition out."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shardmgr.metrics import EVENT_TYPES, Metrics
from workers import ipc

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def session() -> ipc.SessionInfo:
    return ipc.SessionInfo(session_id="abc", seq=1, resume_url="ws://127.0.0.1:1")


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics()
    m.set_plan(4, {0: [0, 1], 1: [2, 3]})
    return m


def state_of(samples: Samples, shard: str, worker: str) -> str:
    active = [
        dict(labels)["shardmgr_shard_state"]
        for (name, labels), v in samples.items()
        if name == "shardmgr_shard_state"
        and dict(labels)["shard"] == shard
        and dict(labels)["worker"] == worker
        and v == 1.0
    ]
    assert len(active) == 1, active
    return active[0]


def test_planned_shards_start_idle_and_are_counted(metrics: Metrics) -> None:
    s = scrape(metrics)
    assert value(s, "shardmgr_shards_planned") == 4
    assert value(s, "shardmgr_workers_planned") == 2
    assert value(s, "shardmgr_shards_connected") == 0
    assert value(s, "shardmgr_shards", state="idle") == 4
    assert all(state_of(s, str(shard), str(shard // 2)) == "idle" for shard in range(4))


def test_state_report_moves_the_shard_state_enum(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0, ipc.ShardStateChanged(gen=1, shard_id=1, state="identifying", at=1.0)
    )
    s = scrape(metrics)
    assert state_of(s, "1", "0") == "identifying"
    assert value(s, "shardmgr_shards", state="identifying") == 1
    assert value(s, "shardmgr_shards", state="idle") == 3


def test_session_started_marks_shard_connected_and_counts_kind(metrics: Metrics) -> None:
    metrics.on_worker_message(
        1,
        ipc.SessionStarted(
            gen=1, shard_id=2, kind="identify", session=session(), guilds=7, at=50.0
        ),
    )
    metrics.on_worker_message(
        1,
        ipc.SessionStarted(gen=1, shard_id=2, kind="resume", session=session(), guilds=7, at=60.0),
    )
    s = scrape(metrics)
    assert state_of(s, "2", "1") == "connected"
    assert value(s, "shardmgr_shards_connected") == 1
    started = "shardmgr_shard_sessions_started_total"
    assert value(s, started, shard="2", worker="1", kind="identify") == 1
    assert value(s, started, shard="2", worker="1", kind="resume") == 1
    assert value(s, "shardmgr_shard_guilds", shard="2", worker="1") == 7
    assert value(s, "shardmgr_shard_session_start_timestamp_seconds", shard="2", worker="1") == 60


def test_stats_latency_sets_shard_gauge_and_worker_histogram(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0,
        ipc.Stats(
            gen=1,
            shards=[
                ipc.ShardStats(shard_id=0, latencies_s=[0.02, 0.04]),
                ipc.ShardStats(shard_id=1, latencies_s=[0.6]),
            ],
        ),
    )
    s = scrape(metrics)
    assert value(s, "shardmgr_shard_heartbeat_latency_seconds", shard="0", worker="0") == 0.04
    assert value(s, "shardmgr_shard_heartbeat_latency_seconds", shard="1", worker="0") == 0.6
    hist = "shardmgr_worker_heartbeat_latency_seconds"
    assert value(s, f"{hist}_count", worker="0") == 3
    assert value(s, f"{hist}_bucket", worker="0", le="0.05") == 2
    assert value(s, f"{hist}_bucket", worker="0", le="0.75") == 3
    assert value(s, f"{hist}_count", worker="1") == 0


def test_stats_deltas_accumulate_into_worker_counters(metrics: Metrics) -> None:
    for _ in range(2):
        metrics.on_worker_message(
            0,
            ipc.Stats(
                gen=1,
                shards=[
                    ipc.ShardStats(
                        shard_id=0,
                        events={"MESSAGE_CREATE": 5, "GUILD_CREATE": 1},
                        bytes_compressed=100,
                        bytes_inflated=900,
                        handler_errors=1,
                        bad_payloads=2,
                        backlog=12,
                        guilds=3,
                        last_event_at=1234.5,
                    ),
                    ipc.ShardStats(shard_id=1, events={"MESSAGE_CREATE": 1}),
                ],
            ),
        )
    s = scrape(metrics)
    events = "shardmgr_worker_events_total"
    assert value(s, events, worker="0", type="MESSAGE_CREATE") == 12
    assert value(s, events, worker="0", type="GUILD_CREATE") == 2
    received = "shardmgr_worker_received_bytes_total"
    assert value(s, received, worker="0", form="compressed") == 200
    assert value(s, received, worker="0", form="inflated") == 1800
    assert value(s, "shardmgr_worker_handler_errors_total", worker="0") == 2
    assert value(s, "shardmgr_worker_bad_payloads_total", worker="0") == 4
    assert value(s, "shardmgr_shard_handler_backlog", shard="0", worker="0") == 12
    assert value(s, "shardmgr_shard_guilds", shard="0", worker="0") == 3
    assert value(s, "shardmgr_shard_last_event_timestamp_seconds", shard="0", worker="0") == 1234.5


def test_shard_stats_counters_accumulate_per_shard(metrics: Metrics) -> None:
    for _ in range(2):
        metrics.on_worker_message(
            1,
            ipc.Stats(
                gen=1,
                shards=[
                    ipc.ShardStats(shard_id=2, duplicates=4, skipped=1, identifies=1, resumes=2),
                    ipc.ShardStats(shard_id=3, resumes=1),
                ],
            ),
        )
    s = scrape(metrics)
    assert value(s, "shardmgr_shard_duplicate_events_total", shard="2", worker="1") == 8
    assert value(s, "shardmgr_shard_skipped_events_total", shard="2", worker="1") == 2
    assert value(s, "shardmgr_shard_identifies_sent_total", shard="2", worker="1") == 2
    assert value(s, "shardmgr_shard_resumes_sent_total", shard="2", worker="1") == 4
    assert value(s, "shardmgr_shard_resumes_sent_total", shard="3", worker="1") == 2
    assert value(s, "shardmgr_shard_skipped_events_total", shard="3", worker="1") == 0


def test_shard_stats_counters_start_at_zero_for_every_planned_shard(metrics: Metrics) -> None:
    # Present before the first report, so the first skipped event is an increase that
    # rate() and the alert can see.
    s = scrape(metrics)
    for name in (
        "shardmgr_shard_duplicate_events_total",
        "shardmgr_shard_skipped_events_total",
        "shardmgr_shard_identifies_sent_total",
        "shardmgr_shard_resumes_sent_total",
    ):
        assert sorted(series(s, name), key=lambda labels: labels["shard"]) == [
            {"shard": str(shard), "worker": str(shard // 2)} for shard in range(4)
        ]
        assert all(value(s, name, shard=str(n), worker=str(n // 2)) == 0 for n in range(4))


def test_shard_stats_counters_ignore_negative_deltas(metrics: Metrics) -> None:
    metrics.on_worker_message(0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, skipped=2)]))
    metrics.on_worker_message(0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, skipped=-5)]))
    assert value(scrape(metrics), "shardmgr_shard_skipped_events_total", shard="0", worker="0") == 2


def test_replan_removes_stats_counters_of_shards_that_left(metrics: Metrics) -> None:
    metrics.on_worker_message(
        1, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=3, duplicates=1)])
    )
    metrics.set_plan(2, {0: [0, 1]})
    labels = series(scrape(metrics), "shardmgr_shard_duplicate_events_total")
    assert {label["shard"] for label in labels} == {"0", "1"}


def test_reconnect_counts_reason_per_shard_and_close_code_per_worker(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0,
        ipc.Reconnecting(
            gen=1, shard_id=1, reason="close_code", close_code=4000, resume=True, delay_s=1.0
        ),
    )
    metrics.on_worker_message(
        0,
        ipc.Reconnecting(
            gen=1, shard_id=1, reason="zombie", close_code=None, resume=True, delay_s=1
        ),
    )
    metrics.on_worker_message(
        0,
        ipc.Reconnecting(gen=1, shard_id=1, reason="op7", close_code=None, resume=True, delay_s=1),
    )
    s = scrape(metrics)
    reconnects = "shardmgr_shard_reconnects_total"
    for reason in ("close_code", "zombie", "op7"):
        assert value(s, reconnects, shard="1", worker="0", reason=reason) == 1
    assert value(s, "shardmgr_worker_close_codes_total", worker="0", code="4000") == 1
    assert state_of(s, "1", "0") == "reconnecting"


def test_unknown_reconnect_reason_and_close_code_fold_into_other(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0,
        ipc.Reconnecting(
            gen=1, shard_id=0, reason="cosmic_ray", close_code=4999, resume=False, delay_s=1
        ),
    )
    s = scrape(metrics)
    assert value(s, "shardmgr_shard_reconnects_total", shard="0", worker="0", reason="other") == 1
    assert value(s, "shardmgr_worker_close_codes_total", worker="0", code="other") == 1


def test_unknown_event_names_fold_into_one_other_series(metrics: Metrics) -> None:
    names = {f"UNDOCUMENTED_{i}": 1 for i in range(500)}
    metrics.on_worker_message(
        0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, events=names)])
    )
    s = scrape(metrics)
    labels = series(s, "shardmgr_worker_events_total")
    assert labels == [{"worker": "0", "type": "other"}]
    assert value(s, "shardmgr_worker_events_total", worker="0", type="other") == 500


def test_event_type_label_set_is_bounded_by_the_documented_names(metrics: Metrics) -> None:
    every = {name: 1 for name in EVENT_TYPES} | {"x" * 300: 1, "": 1, "ready": 1}
    metrics.on_worker_message(
        0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, events=every)])
    )
    types = {labels["type"] for labels in series(scrape(metrics), "shardmgr_worker_events_total")}
    assert types == set(EVENT_TYPES) | {"other"}


def test_token_shaped_event_name_never_reaches_the_exposition(metrics: Metrics) -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz012345"
    metrics.on_worker_message(
        0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, events={token: 1})])
    )
    body, _ = metrics.render()
    assert token.encode() not in body


def test_unknown_shard_state_is_ignored(metrics: Metrics) -> None:
    metrics.on_worker_message(0, ipc.ShardStateChanged(gen=1, shard_id=0, state="dancing", at=1.0))
    s = scrape(metrics)
    assert state_of(s, "0", "0") == "idle"
    assert not any("dancing" in str(key) for key in s)


def test_shard_stopped_sets_stopped_and_counts_fatal_stop(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, latencies_s=[0.1])])
    )
    metrics.on_worker_message(
        0, ipc.ShardStopped(gen=1, shard_id=0, reason="4014", close_code=4014, fatal=True)
    )
    s = scrape(metrics)
    assert state_of(s, "0", "0") == "stopped"
    assert value(s, "shardmgr_worker_shard_stops_total", worker="0", fatal="true") == 1
    assert value(s, "shardmgr_worker_close_codes_total", worker="0", code="4014") == 1
    assert value(s, "shardmgr_shard_heartbeat_latency_seconds", shard="0", worker="0") is None


def test_worker_down_takes_its_shards_out_of_connected(metrics: Metrics) -> None:
    for shard in (0, 1):
        metrics.on_worker_message(
            0,
            ipc.SessionStarted(
                gen=1, shard_id=shard, kind="identify", session=session(), guilds=1, at=1.0
            ),
        )
    metrics.worker_up(0, True)
    assert value(scrape(metrics), "shardmgr_shards_connected") == 2
    metrics.worker_up(0, False)
    s = scrape(metrics)
    assert value(s, "shardmgr_worker_up", worker="0") == 0
    assert value(s, "shardmgr_shards_connected") == 0
    assert state_of(s, "0", "0") == "idle"


def test_worker_restarts_count_by_reason_with_unknown_folded(metrics: Metrics) -> None:
    metrics.worker_restarted(1, "hung")
    metrics.worker_restarted(1, "hung")
    metrics.worker_restarted(1, "gremlins")
    s = scrape(metrics)
    restarts = "shardmgr_worker_restarts_total"
    assert value(s, restarts, worker="1", reason="hung") == 2
    assert value(s, restarts, worker="1", reason="other") == 1
    assert value(s, restarts, worker="1", reason="exit") == 0


def test_worker_cpu_counter_keeps_growing_across_a_restart(metrics: Metrics) -> None:
    metrics.on_worker_message(0, ipc.Stats(gen=1, shards=[], rss_bytes=5_000_000, cpu_seconds=2.0))
    metrics.on_worker_message(0, ipc.Stats(gen=1, shards=[], rss_bytes=6_000_000, cpu_seconds=3.5))
    metrics.on_worker_message(0, ipc.Started(gen=2, worker_id=0, pid=1234))
    metrics.on_worker_message(0, ipc.Stats(gen=2, shards=[], rss_bytes=4_000_000, cpu_seconds=0.5))
    s = scrape(metrics)
    assert value(s, "shardmgr_worker_cpu_seconds_total", worker="0") == pytest.approx(4.0)
    assert value(s, "shardmgr_worker_resident_memory_bytes", worker="0") == 4_000_000


def test_replan_removes_series_of_shards_and_workers_that_left(metrics: Metrics) -> None:
    metrics.on_worker_message(
        1, ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=3, latencies_s=[0.1], guilds=2)])
    )
    metrics.set_plan(2, {0: [0, 1]})
    s = scrape(metrics)
    assert {labels["shard"] for labels in series(s, "shardmgr_shard_guilds")} == {"0", "1"}
    assert series(s, "shardmgr_shard_heartbeat_latency_seconds") == []
    assert {labels["worker"] for labels in series(s, "shardmgr_worker_up")} == {"0"}
    assert value(s, "shardmgr_shards", state="idle") == 2
    assert value(s, "shardmgr_shards_planned") == 2


def test_replan_moving_a_shard_keeps_one_state_series_per_shard(metrics: Metrics) -> None:
    metrics.set_plan(4, {0: [0], 1: [1, 2, 3]})
    s = scrape(metrics)
    workers_of_shard_1 = {
        labels["worker"] for labels in series(s, "shardmgr_shard_state") if labels["shard"] == "1"
    }
    assert workers_of_shard_1 == {"1"}
    assert value(s, "shardmgr_shards", state="idle") == 4


def test_identify_queue_wait_and_budget_are_exported(metrics: Metrics) -> None:
    metrics.identify_queue(3)
    metrics.identify_waited(4.2)
    metrics.session_start_remaining(990, total=1000)
    metrics.budget_exhausted("reserve reached")
    s = scrape(metrics)
    assert value(s, "shardmgr_identify_queue_depth") == 3
    assert value(s, "shardmgr_identify_wait_seconds_count") == 1
    assert value(s, "shardmgr_identify_wait_seconds_bucket", le="5.0") == 1
    assert value(s, "shardmgr_session_start_remaining") == 990
    assert value(s, "shardmgr_session_start_limit") == 1000
    assert value(s, "shardmgr_session_start_budget_exhausted") == 1
    metrics.budget_exhausted(None)
    assert value(scrape(metrics), "shardmgr_session_start_budget_exhausted") == 0


def test_identify_limiter_availability_is_exported(metrics: Metrics) -> None:
    assert value(scrape(metrics), "shardmgr_identify_limiter_available") == 1
    metrics.identify_limiter_available(False)
    assert value(scrape(metrics), "shardmgr_identify_limiter_available") == 0


def test_exposition_has_no_created_series(metrics: Metrics) -> None:
    metrics.worker_restarted(0, "exit")
    body, _ = metrics.render()
    assert b"_created" not in body


def test_own_registry_includes_supervisor_process_metrics() -> None:
    body, _ = Metrics().render()
    assert b"\nprocess_resident_memory_bytes " in body
    assert b"\npython_info{" in body


@pytest.mark.needs_binary("promtool")
def test_exposition_passes_promtool_check_metrics(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0,
        ipc.Reconnecting(gen=1, shard_id=0, reason="op9", close_code=None, resume=False, delay_s=2),
    )
    metrics.on_worker_message(
        0,
        ipc.Stats(
            gen=1, shards=[ipc.ShardStats(shard_id=0, latencies_s=[0.05], events={"READY": 1})]
        ),
    )
    body, _ = metrics.render()
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_worker_down_leaves_a_stopped_shard_stopped(metrics: Metrics) -> None:
    metrics.on_worker_message(
        0, ipc.ShardStopped(gen=1, shard_id=1, reason="4004", close_code=4004, fatal=True)
    )
    metrics.worker_up(0, False)
    s = scrape(metrics)
    assert state_of(s, "1", "0") == "stopped"
    assert state_of(s, "0", "0") == "idle"

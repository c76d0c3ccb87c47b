"""REST metrics from the workers' RestStats reports."""

from __future__ import annotations

from shardmgr.metrics import Metrics
from shardmgr.restmetrics import MAX_ROUTES
from workers import ipc


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_rest_stats_count_requests_429s_waits_and_the_guard() -> None:
    m = Metrics()
    m.on_worker_message(
        0,
        ipc.RestStats(
            gen=1,
            requests=[
                ipc.RestRouteCount("POST /channels/{channel_id}/messages", 200, 3),
                ipc.RestRouteCount("POST /channels/{channel_id}/messages", 429, 1),
                ipc.RestRouteCount("GET /users/@me", 418, 1),
            ],
            rate_limited={"user": 1, "bogus": 2},
            bucket_wait_s=1.5,
            bucket_waits=2,
            invalid_requests=4,
            refused=1,
        ),
    )
    m.on_worker_message(1, ipc.RestStats(gen=1, invalid_requests=6))
    route = "POST /channels/{channel_id}/messages"
    assert value(m, "shardmgr_rest_requests_total", route=route, status="200") == 3
    assert value(m, "shardmgr_rest_requests_total", route="GET /users/@me", status="4xx") == 1
    assert value(m, "shardmgr_rest_rate_limited_total", scope="user") == 1
    assert value(m, "shardmgr_rest_rate_limited_total", scope="other") == 2
    assert value(m, "shardmgr_rest_rate_limited_total", scope="global") == 0
    assert value(m, "shardmgr_rest_bucket_wait_seconds_total") == 1.5
    assert value(m, "shardmgr_rest_bucket_waits_total") == 2
    assert value(m, "shardmgr_rest_refused_total") == 1
    assert value(m, "shardmgr_rest_invalid_requests") == 10  # both workers together


def test_route_labels_are_bounded() -> None:
    m = Metrics()
    counts = [ipc.RestRouteCount(f"GET /r{i}", 200, 1) for i in range(MAX_ROUTES + 5)]
    m.on_worker_message(0, ipc.RestStats(gen=1, requests=counts))
    assert value(m, "shardmgr_rest_requests_total", route="other", status="200") == 5

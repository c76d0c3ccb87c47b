"""The files in grafana/ as a specification: the dashboard's shape, and that every metric its
queries and the alert rules name is one shardmgr actually exports."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shardmgr.metrics import Metrics
from tests.observability import promql
from workers import ipc

REQUIRED_ALERTS = {
    "ShardmgrShardNotConnected",
    "ShardmgrHeartbeatLatencyHigh",
    "ShardmgrWorkerRestartStorm",
    "ShardmgrSessionStartsNearlyUsedUp",
    "ShardmgrHandlerBacklogGrowing",
    "ShardmgrPoisonEventDeadLettered",
}


def exported_names() -> set[str]:
    """Every sample name a busy supervisor exports (one report of every kind)."""
    m = Metrics()
    m.set_plan(2, {0: [0, 1]})
    m.worker_up(0, True)
    m.worker_restarted(0, "exit")
    m.identify_queue(1)
    m.identify_waited(0.5)
    m.session_start_remaining(999, total=1000)
    info = ipc.SessionInfo(session_id="s", seq=1, resume_url="ws://127.0.0.1:1")
    for msg in (
        ipc.SessionStarted(gen=1, shard_id=0, kind="identify", session=info, guilds=1, at=1.0),
        ipc.Reconnecting(gen=1, shard_id=0, reason="op7", close_code=4000, resume=True, delay_s=1),
        ipc.Stats(
            gen=1,
            shards=[
                ipc.ShardStats(
                    shard_id=0, latencies_s=[0.1], events={"READY": 1}, last_event_at=2.0
                )
            ],
            rss_bytes=1,
            cpu_seconds=1.0,
        ),
        ipc.RestStats(gen=1, requests=[ipc.RestRouteCount("GET /users/@me", 200, 1)]),
        ipc.DeadLettered(gen=1, shard_id=0, seq=3, t="MESSAGE_CREATE", d=b"{}"),
    ):
        m.on_worker_message(0, msg)
    body, _ = m.render()
    names = {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    return names | {"up"}  # added by Prometheus to every target


def test_dashboard_declares_datasource_instance_worker_and_shard_variables() -> None:
    variables = {v["name"]: v for v in promql.load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "worker", "shard"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] is True
        assert variables[name]["allValue"] == ".*"


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for panel in promql.panels(promql.load_dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_query_filters_by_the_selected_supervisor() -> None:
    # Several hosts each run a supervisor whose workers are numbered from 0: without the
    # instance filter, worker 0 of two hosts would be drawn as one.
    for expr in promql.dashboard_expressions():
        assert '$instance"' in expr, expr


def test_dashboard_panels_have_unique_ids_and_tile_the_grid() -> None:
    all_panels = promql.panels(promql.load_dashboard())
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["type"] == "row" or panel.get("description"), panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_dashboard_is_importable_into_grafana_10() -> None:
    dashboard = promql.load_dashboard()
    assert dashboard["schemaVersion"] >= 36  # Grafana 9.0+ schema, imported as-is by 10+
    assert dashboard["uid"] == "shardmgr"
    assert "id" not in dashboard  # an id would collide with existing dashboards on import


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = exported_names()
    queried = set().union(*(promql.metric_names(e) for e in promql.dashboard_expressions()))
    queried |= {
        name
        for selector, _ in promql.variable_queries().values()
        for name in promql.metric_names(selector)
    }
    assert queried, "no metric names found in the dashboard"
    assert queried - exported == set()


def test_every_metric_the_alert_rules_use_is_exported() -> None:
    exported = exported_names()
    used = set().union(*(promql.metric_names(e) for e in promql.alert_rules().values()))
    assert used - exported == set()


def test_dashboard_shows_every_shardmgr_metric_family() -> None:
    queried = set().union(*(promql.metric_names(e) for e in promql.dashboard_expressions()))
    families = {n.removesuffix("_bucket") for n in queried}
    exported = {
        n
        for n in exported_names()
        if n.startswith("shardmgr_") and not n.endswith(("_count", "_sum", "_bucket"))
    } | {"shardmgr_worker_heartbeat_latency_seconds", "shardmgr_identify_wait_seconds"}
    # worker_shards is static plan information, shown on /status rather than graphed.
    assert exported - families - {"shardmgr_worker_shards"} == set()


def test_alert_rules_cover_the_required_conditions() -> None:
    assert REQUIRED_ALERTS - set(promql.alert_rules()) == set()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x == 0", "x == bool 0"),
        ('a{l!="x", m=~"y"} > 1 and b < bool 2', 'a{l!="x", m=~"y"} > bool 1 and b < bool 2'),
        ("a >= b", "a >= bool b"),
    ],
)
def test_with_bool_rewrites_only_comparisons_outside_matchers(expr: str, expected: str) -> None:
    assert promql.with_bool(expr) == expected


promtool = pytest.mark.needs_binary("promtool")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", *args], capture_output=True, text=True, timeout=60, check=False
    )


@promtool
def test_alert_rules_pass_promtool_check_rules() -> None:
    result = run_promtool("rules", str(promql.ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_scrape_config_passes_promtool_check_config() -> None:
    result = run_promtool("config", str(promql.PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr

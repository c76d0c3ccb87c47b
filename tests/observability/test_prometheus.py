"""The observability stack end to end, against a real Prometheus server.

A fake gateway, a supervisor (``shardmgr start``) with a few faults injected, and Debian's
``prometheus`` scraping the supervisor every second with grafana/alerts.yml loaded. Every
query of the Grafana dashboard, every template variable and every alert expression must
return data, every rule must evaluate cleanly, and promtool must accept our files and our
``/metrics`` output. Everything binds to 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fakegateway import FakeConfig
from fakegateway import spawn as spawn_fake
from tests.observability import promql

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.timeout(150),
    pytest.mark.needs_binary("prometheus", "promtool"),
]

BOT_ID = b"400000000000000001"
TOKEN = (
    base64.b64encode(BOT_ID).decode().rstrip("=") + ".Zm9vYg.c2hhcmRtZ3Itb2JzZXJ2YWJpbGl0eS10ZXN0"
)
SHARDS = 4
STARTUP_TIMEOUT_S = 45.0
DATA_TIMEOUT_S = 45.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, proc: Proc | None = None
) -> None:
    """Poll ``check`` until it holds; fail with ``what`` (and the process output) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            pytest.fail(
                f"{proc.name} exited with {proc.popen.returncode} while waiting for "
                f"{what}:\n{proc.output()}"
            )
        if check():
            return
        time.sleep(0.25)
    detail = f"\n{proc.name} output:\n{proc.output()}" if proc is not None else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def http_post_json(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def first_line(self) -> str | None:
        text = self.stdout.read_text(errors="replace")
        return text.split("\n", 1)[0].strip() if "\n" in text else None

    def output(self) -> str:
        parts = []
        for path in (self.stdout, self.stderr):
            if path.exists():
                parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-5000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def spawn(name: str, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> Proc:
    stdout, stderr = tmp / f"{name}.out", tmp / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen(
            args, cwd=REPO, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL
        )
    return Proc(name, popen, stdout, stderr)


@dataclass
class Stack:
    fake_url: str
    supervisor_url: str
    prometheus_url: str
    prometheus_config: Path
    supervisor: Proc
    prometheus: Proc

    def query(self, expr: str) -> list[Any]:
        """Instant query; the result list (empty when the expression selects nothing)."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http_get(url)
        if status == 400:
            pytest.fail(f"Prometheus rejects {expr!r}: {body.decode(errors='replace')}")
        if status != 200:
            return []
        data = json.loads(body)["data"]
        if data["resultType"] in ("scalar", "string"):
            return [data["result"]]
        result: list[Any] = data["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        status, body = http_get(f"{self.prometheus_url}/api/v1/rules")
        assert status == 200, body
        groups = json.loads(body)["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


def scrape_config_for_test(template: str, target: str, rules: Path) -> str:
    """Our shipped grafana/prometheus.yml, pointed at the test's ports, scraping every second."""
    replacements = {
        "scrape_interval: 15s": "scrape_interval: 1s",
        "evaluation_interval: 15s": "evaluation_interval: 1s",
        "scrape_interval: 5s": "scrape_interval: 1s",
        "scrape_timeout: 4s": "scrape_timeout: 1s",
        '"127.0.0.1:9191"': f'"{target}"',
        "  - alerts.yml": f"  - {rules}",
    }
    for old, new in replacements.items():
        assert old in template, f"grafana/prometheus.yml no longer contains {old!r}"
        template = template.replace(old, new)
    return template


def start_fake_gateway(tmp: Path) -> tuple[Proc, str]:
    # Short heartbeats and a steady event stream, so latency, event and byte series move
    # within the test's ten-second rate windows.
    config = FakeConfig(
        shards=SHARDS, heartbeat_interval_s=1.0, event_rate=20.0, identify_window_s=0.1
    )
    stderr = tmp / "fake-gateway.err"
    fake = spawn_fake(config, cwd=REPO, stderr=stderr, timeout=STARTUP_TIMEOUT_S)
    return Proc("fake-gateway", fake.popen, tmp / "fake-gateway.out", stderr), fake.url


def inject_faults(fake_url: str) -> None:
    faults = [
        {"kind": "reconnect", "shard_id": 0},
        {"kind": "close", "shard_id": 1, "code": 4000},
        # A silent connection (no ACKs, no events): the worker's zombie rule must fire.
        {"kind": "stall", "shard_id": 2},
        {"kind": "bad_json", "shard_id": 3},
    ]
    for fault in faults:
        status, body = http_post_json(f"{fake_url}/_fake/faults", fault)
        assert 200 <= status < 300, f"fault {fault} refused: {status} {body!r}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    procs: list[Proc] = []
    try:
        fake, fake_url = start_fake_gateway(tmp)
        procs.append(fake)

        http_addr = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "DISCORD_TOKEN": TOKEN}
        env.pop("SHARDMGR_HTTP", None)
        supervisor = spawn(
            "supervisor",
            [
                sys.executable,
                "-m",
                "shardmgr",
                "start",
                "--shards",
                "auto",
                "--api-base",
                f"{fake_url}/api/v10",
                "--http",
                http_addr,
                "--identify-window",
                "0.1",
                "--shards-per-worker",
                "2",
                "--state-dir",
                str(tmp / "state"),
            ],
            tmp,
            env,
        )
        procs.append(supervisor)
        supervisor_url = f"http://{http_addr}"
        wait_until(
            "/readyz 200 (every planned shard connected)",
            lambda: http_get(f"{supervisor_url}/readyz")[0] == 200,
            STARTUP_TIMEOUT_S,
            supervisor,
        )
        inject_faults(fake_url)

        prom_addr = f"127.0.0.1:{free_port()}"
        config = tmp / "prometheus.yml"
        config.write_text(
            scrape_config_for_test(promql.PROMETHEUS_CONFIG.read_text(), http_addr, promql.ALERTS)
        )
        prometheus = spawn(
            "prometheus",
            [
                PROMETHEUS or "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={prom_addr}",
                "--log.level=warn",
            ],
            tmp,
        )
        procs.append(prometheus)
        prometheus_url = f"http://{prom_addr}"
        wait_until(
            "Prometheus /-/ready",
            lambda: http_get(f"{prometheus_url}/-/ready")[0] == 200,
            STARTUP_TIMEOUT_S,
            prometheus,
        )
        yield Stack(fake_url, supervisor_url, prometheus_url, config, supervisor, prometheus)
    finally:
        for proc in reversed(procs):
            proc.stop()


def wait_for_data(stack: Stack, queries: dict[str, str]) -> None:
    """Wait until every query returns at least one sample; fail naming the ones that do not."""
    missing = dict(queries)

    def all_have_data() -> bool:
        for name, expr in list(missing.items()):
            if stack.query(expr):
                del missing[name]
        return not missing

    deadline = time.monotonic() + DATA_TIMEOUT_S
    while time.monotonic() < deadline and not all_have_data():
        assert stack.supervisor.popen.poll() is None, stack.supervisor.output()
        time.sleep(0.5)
    assert not missing, "queries without data:\n" + "\n".join(
        f"  {name}: {expr}" for name, expr in missing.items()
    )


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    dashboard = promql.load_dashboard()
    queries = {
        f"{panel['title']} [{target['refId']}]": promql.expand(target["expr"])
        for panel in promql.panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    }
    assert len(queries) >= 20
    wait_for_data(stack, queries)


def test_injected_faults_show_up_in_prometheus(stack: Stack) -> None:
    def labels(expr: str, label: str) -> set[str]:
        return {sample["metric"][label] for sample in stack.query(expr)}

    wait_until(
        "op7, close_code and zombie reconnects, close code 4000, resumes and a bad payload",
        lambda: (
            {"op7", "close_code", "zombie"}
            <= labels("sum by (reason) (shardmgr_shard_reconnects_total)", "reason")
            and "4000" in labels("sum by (code) (shardmgr_worker_close_codes_total)", "code")
            and "resume" in labels("sum by (kind) (shardmgr_shard_sessions_started_total)", "kind")
            and bool(stack.query('shardmgr_worker_bad_payloads_total{worker="1"} > 0'))
        ),
        DATA_TIMEOUT_S,
        stack.supervisor,
    )
    reconnected = stack.query(
        'sum by (shard, reason) (shardmgr_shard_reconnects_total{reason=~"op7|close_code|zombie"})'
    )
    assert {(s["metric"]["shard"], s["metric"]["reason"]) for s in reconnected} >= {
        ("0", "op7"),
        ("1", "close_code"),
        ("2", "zombie"),
    }


def test_every_dashboard_variable_has_values(stack: Stack) -> None:
    queries = {
        f"${name}": f"count by ({label}) ({promql.expand(selector)})"
        for name, (selector, label) in promql.variable_queries().items()
    }
    wait_for_data(stack, queries)
    workers = stack.query(queries["$worker"])
    shards = stack.query(queries["$shard"])
    assert {s["metric"]["worker"] for s in workers} == {"0", "1"}
    assert len(stack.query(queries["$instance"])) == 1
    assert len({s["metric"]["shard"] for s in shards}) == SHARDS


def test_every_alert_expression_returns_data(stack: Stack) -> None:
    rules = promql.alert_rules()
    wait_for_data(stack, {name: promql.with_bool(expr) for name, expr in rules.items()})


def test_prometheus_loads_and_evaluates_every_alert_rule(stack: Stack) -> None:
    expected = set(promql.alert_rules())

    def all_evaluated() -> bool:
        rules = stack.rules()
        return {r["name"] for r in rules} == expected and all(
            r["health"] != "unknown" for r in rules
        )

    wait_until("every alert rule evaluated once", all_evaluated, DATA_TIMEOUT_S, stack.prometheus)
    broken = {r["name"]: r.get("lastError") for r in stack.rules() if r["health"] != "ok"}
    assert broken == {}


def rfc3339_seconds(stamp: str) -> float:
    """Unix seconds of a Prometheus RFC 3339 time (nanosecond fractions cut to micro)."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def test_healthy_stack_fires_no_alert(stack: Stack) -> None:
    """Most rules have a ``for:`` of minutes, longer than this test: a rule that misfires on a
    healthy stack is only ``pending`` here. So refuse pending too, and evaluate every alert
    expression directly: each must select nothing."""
    wait_until(
        "shards connected again after the injected faults",
        lambda: http_get(f"{stack.supervisor_url}/readyz")[0] == 200,
        DATA_TIMEOUT_S,
        stack.supervisor,
    )
    healthy_since = time.time()
    scraped: list[float] = []

    def scraped_after_healthy() -> bool:
        samples = stack.query('timestamp(up{job="shardmgr"})')
        scraped[:] = [float(s["value"][1]) for s in samples if float(s["value"][1]) > healthy_since]
        return bool(scraped)

    wait_until("a scrape of the healthy stack", scraped_after_healthy, DATA_TIMEOUT_S)
    # A rule evaluated at T may miss a scrape that began just before T and was still being
    # ingested: wait for evaluations two intervals later, so every rule saw the healthy scrape.
    evaluated_after = scraped[0] + 2.0
    wait_until(
        "every rule evaluated against the healthy scrape",
        lambda: all(rfc3339_seconds(r["lastEvaluation"]) > evaluated_after for r in stack.rules()),
        DATA_TIMEOUT_S,
        stack.prometheus,
    )
    active = {r["name"]: r["state"] for r in stack.rules() if r["state"] != "inactive"}
    assert active == {}, "alert rules pending or firing on a healthy stack"
    results = {name: stack.query(expr) for name, expr in promql.alert_rules().items()}
    selecting = {name: series for name, series in results.items() if series}
    assert selecting == {}, "alert expressions that select series on a healthy stack"


def test_metrics_output_passes_promtool_check_metrics(stack: Stack) -> None:
    status, body = http_get(f"{stack.supervisor_url}/metrics")
    assert status == 200
    result = subprocess.run(
        [PROMTOOL or "promtool", "check", "metrics"],
        input=body,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_test_scrape_config_passes_promtool_check_config(stack: Stack) -> None:
    result = subprocess.run(
        [PROMTOOL or "promtool", "check", "config", str(stack.prometheus_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_and_status_never_show_the_token(stack: Stack) -> None:
    secret_parts = TOKEN.split(".")
    for path in ("/metrics", "/status"):
        status, body = http_get(f"{stack.supervisor_url}{path}")
        assert status == 200, path
        text = body.decode()
        assert TOKEN not in text, path
        assert secret_parts[2] not in text, path

"""The Kubernetes example in deploy/kubernetes is consistent with itself and with shardmgr's
own configuration rules (checked without a cluster: the settings the StatefulSet gives each
pod are loaded exactly as ``shardmgr start`` would load them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shardmgr.config import load_settings
from shardmgr.plan import host_slice
from shardmgr.sinks.redis_stream import SinkConfig
from shardmgr.start import with_url_files

# MEMORY USAGE of a stream of the bench corpus' dispatches, per entry (bench/sink_redis.py
# reports it as sink_redis.bytes_per_entry).
MEASURED_BYTES_PER_ENTRY = 992

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def manifest(name: str) -> str:
    return (DEPLOY / name).read_text()


def literal_env(text: str) -> dict[str, str]:
    """``- name: X`` followed by ``value: "Y"`` pairs of the container's env list."""
    env: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if m := re.fullmatch(r"- name: (\S+)", stripped):
            name = m.group(1)
        elif name and (m := re.match(r'value: "?([^"#]*?)"?\s*(#.*)?$', stripped)):
            env[name] = m.group(1)
            name = None
    return env


def replicas() -> int:
    m = re.search(r"^  replicas: (\d+)$", manifest("statefulset.yaml"), re.MULTILINE)
    assert m is not None
    return int(m.group(1))


def test_host_count_matches_the_statefulset_replicas() -> None:
    assert int(literal_env(manifest("statefulset.yaml"))["SHARDMGR_HOST_COUNT"]) == replicas()


def secret_data(name: str) -> dict[str, str]:
    """The ``stringData`` of Secret ``name`` in secret.example.yaml."""
    for doc in manifest("secret.example.yaml").split("\n---\n"):
        if re.search(rf"^  name: {re.escape(name)}$", doc, re.MULTILINE):
            return dict(re.findall(r'^  ([\w.-]+): "(.*)"$', doc, re.MULTILINE))
    raise AssertionError(f"no Secret {name}")


def mounted_secret(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the Secret's files where the StatefulSet mounts them (under tmp_path)."""
    out = dict(env)
    for key, value in secret_data("shardmgr-redis").items():
        path = tmp_path / key
        path.write_text(value + "\n")
        for name, where in env.items():
            if where == f"/etc/shardmgr/redis/{key}":
                out[name] = str(path)
    return out


def redis_args(name: str) -> list[str]:
    m = re.search(r"args:\n((?:\s+- .+\n)+)", manifest(name))
    assert m is not None
    return [a.strip().removeprefix("- ").strip('"') for a in m.group(1).splitlines()]


def test_every_pod_gets_a_valid_configuration_and_together_they_run_every_shard(
    tmp_path: Path,
) -> None:
    env = mounted_secret(tmp_path, literal_env(manifest("statefulset.yaml")))
    covered: list[int] = []
    for ordinal in range(replicas()):
        loaded = load_settings({}, env={**env, "SHARDMGR_HOST_INDEX": str(ordinal)})
        settings = with_url_files(loaded)
        assert settings.identify_limiter.startswith("redis://")
        assert settings.sink is not None and settings.sink.startswith("redis-stream://")
        assert settings.http.startswith("0.0.0.0:")
        assert settings.total_shards is not None and settings.host_count is not None
        covered += host_slice(settings.total_shards, ordinal, settings.host_count)
    assert covered == list(range(int(env["SHARDMGR_TOTAL_SHARDS"])))


def test_host_index_comes_from_the_pod_ordinal() -> None:
    text = manifest("statefulset.yaml")
    assert re.search(
        r"name: SHARDMGR_HOST_INDEX\s+valueFrom:\s+fieldRef:\s+"
        r"fieldPath: metadata.labels\['apps.kubernetes.io/pod-index'\]",
        text,
    )


def test_token_comes_from_a_secret_and_never_from_a_literal() -> None:
    text = manifest("statefulset.yaml")
    assert "DISCORD_TOKEN" not in literal_env(text)
    assert re.search(
        r"name: DISCORD_TOKEN\s+valueFrom:\s+secretKeyRef:\s+name: discord-bot\s+key: token", text
    )
    assert "name: discord-bot" in manifest("secret.example.yaml")


def test_servicemonitor_scrapes_metrics_on_the_services_named_port() -> None:
    service, monitor = manifest("service.yaml"), manifest("servicemonitor.yaml")
    assert "- name: http" in service and "containerPort: 9191" in manifest("statefulset.yaml")
    assert re.search(r"- port: http\s+path: /metrics", monitor)
    selector = "app.kubernetes.io/name: shardmgr"
    assert selector in service and selector in monitor


@pytest.mark.parametrize(
    "resource",
    re.findall(r"^  - (\S+\.yaml)$", (DEPLOY / "kustomization.yaml").read_text(), re.MULTILINE),
)
def test_kustomization_lists_only_existing_manifests(resource: str) -> None:
    assert (DEPLOY / resource).is_file()


def test_redis_urls_with_passwords_come_from_a_secret_never_from_a_literal() -> None:
    env = literal_env(manifest("statefulset.yaml"))
    assert not any("redis://" in v or "redis-stream://" in v for v in env.values())
    assert "SHARDMGR_IDENTIFY_LIMITER" not in env and "SHARDMGR_SINK" not in env
    assert re.search(r"secret:\s+secretName: shardmgr-redis", manifest("statefulset.yaml"))
    urls = secret_data("shardmgr-redis")
    for url, conf in (("identify-limiter", "identify-redis.conf"), ("sink", "sink-redis.conf")):
        password = urls[url].split("://:", 1)[1].split("@", 1)[0]
        assert urls[conf] == f"requirepass {password}"


def test_the_sink_has_its_own_redis_and_its_stream_fits_that_redis_memory() -> None:
    sink = SinkConfig.parse(secret_data("shardmgr-redis")["sink"])
    limiter = secret_data("shardmgr-redis")["identify-limiter"]
    assert "shardmgr-sink-redis:" in sink.redis_url and "shardmgr-sink-redis" not in limiter
    args = redis_args("sink-redis.yaml")
    maxmemory = args[args.index("--maxmemory") + 1]
    assert maxmemory.endswith("mb")
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    # the stream within 60% of maxmemory: the rest is fragmentation and client buffers
    assert sink.maxlen * MEASURED_BYTES_PER_ENTRY <= 0.6 * int(maxmemory[:-2]) * 1024 * 1024
    limit = re.search(r"limits: \{memory: (\d+)Gi\}", manifest("sink-redis.yaml"))
    assert limit is not None and int(maxmemory[:-2]) < 0.75 * int(limit.group(1)) * 1024
    for name in ("redis.yaml", "sink-redis.yaml"):
        assert "volumeClaimTemplates" in manifest(name) and "emptyDir" not in manifest(name)
        assert "--maxmemory" in redis_args(name)


def test_a_rescheduled_pod_has_time_to_resume_its_saved_sessions() -> None:
    env = literal_env(manifest("statefulset.yaml"))
    assert load_settings({}, env=env | {"SHARDMGR_HOST_INDEX": "0"}).resume_window_s >= 300


def test_a_network_policy_limits_the_http_port_and_the_redis_ports() -> None:
    text = manifest("networkpolicy.yaml")
    assert re.search(r"app.kubernetes.io/name: shardmgr\n\s+policyTypes: \[\"Ingress\"\]", text)
    assert re.search(r"ports:\s+- port: http", text) and re.search(r"- port: redis", text)
    assert "networkpolicy.yaml" in manifest("kustomization.yaml")

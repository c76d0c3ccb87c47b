"""The Kubernetes example in deploy/kubernetes is consistent with itself and with shardmgr's
own configuration rules (checked without a cluster: the settings the StatefulSet gives each
pod are loaded exactly as ``shardmgr start`` would load them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shardmgr.config import load_settings
from shardmgr.plan import host_slice

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


def test_every_pod_gets_a_valid_configuration_and_together_they_run_every_shard() -> None:
    env = literal_env(manifest("statefulset.yaml"))
    covered: list[int] = []
    for ordinal in range(replicas()):
        settings = load_settings({}, env={**env, "SHARDMGR_HOST_INDEX": str(ordinal)})
        assert settings.identify_limiter.startswith("redis://")
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

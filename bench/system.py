"""The whole system on 127.0.0.1 for the process benchmarks: a fake gateway and
``shardmgr start`` against it, with helpers to read ``/status`` and wait for states."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.procs import Cluster, Proc, free_port, http_get, http_json, rss_bytes, wait_for


@dataclass(slots=True)
class System:
    cluster: Cluster
    fake: Proc
    api: str  # fake gateway base URL
    supervisor: Proc
    http: str  # supervisor's status/metrics base URL
    shards: int
    spawned_at: float  # time.monotonic() just before the supervisor was started

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = http_json(f"{self.http}/status", timeout=10)
        return doc

    def ready(self) -> bool:
        status, _ = http_get(f"{self.http}/readyz", timeout=10)
        return status == 200

    def worker_pids(self) -> list[int]:
        pids = [w.get("pid") for w in self.status()["workers"]]
        return [int(p) for p in pids if p]

    def metrics(self) -> str:
        status, body = http_get(f"{self.http}/metrics", timeout=10)
        if status != 200:
            raise ValueError(f"/metrics answered {status}")
        return body.decode()

    def check_alive(self) -> None:
        if self.supervisor.popen.poll() is not None:
            raise RuntimeError(
                f"supervisor exited with {self.supervisor.popen.returncode}:\n"
                f"{self.supervisor.tail()}"
            )

    def wait_ready(self, timeout: float) -> float:
        """Seconds until /readyz answers 200."""
        t0 = time.monotonic()

        def probe() -> bool | None:
            self.check_alive()
            return True if self.ready() else None

        wait_for("every shard connected (/readyz 200)", probe, timeout, interval=0.05)
        return time.monotonic() - t0

    def wait_rss_settled(self, pids: Sequence[int], timeout: float = 20.0) -> int:
        """Sum of RSS once two samples half a second apart differ by under 0.5%."""
        last = [sum(rss_bytes(p) for p in pids)]

        def probe() -> int | None:
            now = sum(rss_bytes(p) for p in pids)
            prev, last[0] = last[0], now
            return now if abs(now - prev) <= 0.005 * max(prev, 1) else None

        try:
            return wait_for("worker memory to settle", probe, timeout, interval=0.5)
        except Exception:
            return last[0]


def start_system(
    c: Cluster,
    *,
    shards: int,
    workers: int,
    max_concurrency: int = 16,
    identify_window: float = 0.05,
    heartbeat_interval: float = 1.0,
    event_rate: float = 0.0,
    fake_extra: Sequence[str] = (),
    sup_extra: Sequence[str] = (),
    handler: str | None = None,
    compress: str = "zlib-stream",
    env: dict[str, str] | None = None,
    wait_http: bool = True,
) -> System:
    fake, api = c.fake_gateway(
        shards=shards,
        max_concurrency=max_concurrency,
        identify_window=identify_window,
        heartbeat_interval=heartbeat_interval,
        event_rate=event_rate,
        extra=fake_extra,
    )
    port = free_port()
    extra = [
        "--shards",
        "auto",
        "--workers",
        str(workers),
        "--identify-window",
        str(identify_window),
        "--compress",
        compress,
        "--state-dir",
        str(c.dir / "state"),
        *sup_extra,
    ]
    if handler:
        extra += ["--handler", handler]
    spawned_at = time.monotonic()
    sup = c.supervisor(api + "/api/v10", http_port=port, extra=extra, env=env)
    system = System(c, fake, api, sup, f"http://127.0.0.1:{port}", shards, spawned_at)
    if not wait_http:
        return system

    def up() -> bool | None:
        system.check_alive()
        status, _ = http_get(f"{system.http}/healthz", timeout=5)
        return True if status in (200, 503) else None

    wait_for("the supervisor's HTTP port", up, timeout=60)
    return system

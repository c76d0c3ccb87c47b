"""Metrics of the workers' REST clients, from their ``RestStats`` reports: requests by
route template and status, 429s by scope, time spent waiting for a bucket, and the
invalid-request guard (answers counted toward Cloudflare's ban, requests it refused)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from workers import ipc
from workers.rest.buckets import Scope

PREFIX: Final = "shardmgr_rest"
OTHER: Final = "other"
# Route labels are templates (never ids), but the generic call takes any template: past
# this many, new ones are counted as "other" so a bug cannot explode the series count.
MAX_ROUTES: Final = 200
STATUSES: Final = frozenset({200, 201, 204, 304, 400, 401, 403, 404, 405, 429, 500, 502, 503, 504})


def status_label(status: int) -> str:
    if status in STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status < 600 else OTHER


class RestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "REST answers by route template and HTTP status",
            ["route", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited",
            "REST 429 answers by X-RateLimit-Scope (user, global, shared)",
            ["scope"],
            registry=r,
        )
        self.bucket_wait = Counter(
            f"{PREFIX}_bucket_wait_seconds",
            "Time REST requests waited for their rate-limit bucket to reset",
            registry=r,
        )
        self.bucket_waits = Counter(
            f"{PREFIX}_bucket_waits", "REST requests that waited for a bucket", registry=r
        )
        self.invalid = Gauge(
            f"{PREFIX}_invalid_requests",
            "401/403/429 answers in the last 10 minutes, all workers (Discord bans at 10000)",
            registry=r,
        )
        self.refused = Counter(
            f"{PREFIX}_refused",
            "REST requests refused by the invalid-request guard",
            registry=r,
        )
        for scope in Scope:
            self.rate_limited.labels(scope.value)
        self._routes: set[str] = set()
        self._invalid_by_worker: dict[int, int] = {}

    def on_stats(self, worker_id: int, msg: ipc.RestStats) -> None:
        for count in msg.requests:
            if count.count <= 0:
                continue
            route = count.route
            if route not in self._routes:
                if len(self._routes) >= MAX_ROUTES:
                    route = OTHER
                else:
                    self._routes.add(route)
            self.requests.labels(route, status_label(count.status)).inc(count.count)
        for scope, n in msg.rate_limited.items():
            label = scope if scope in {s.value for s in Scope} else OTHER
            if n > 0:
                self.rate_limited.labels(label).inc(n)
        if msg.bucket_wait_s > 0:
            self.bucket_wait.inc(msg.bucket_wait_s)
        if msg.bucket_waits > 0:
            self.bucket_waits.inc(msg.bucket_waits)
        if msg.refused > 0:
            self.refused.inc(msg.refused)
        self._invalid_by_worker[worker_id] = max(0, msg.invalid_requests)
        self.invalid.set(sum(self._invalid_by_worker.values()))

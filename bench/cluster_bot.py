"""The handler ``bench.cluster`` runs in every worker: on ``!bench N`` (sent to a guild of
worker 0's shard 0) it times ``call_all`` round trips and gateway commands to a local
shard and to another worker's shard, and writes the samples to ``$BENCH_CLUSTER_OUT``."""

from __future__ import annotations

import json
import os
import time

from workers.events import Event
from workers.gateway import Gateway

OUT_ENV = "BENCH_CLUSTER_OUT"
LOCAL_SHARD = 0  # worker 0 runs shards 0-1
REMOTE_SHARD = 2  # worker 1's first shard


class Bot:
    gateway: Gateway

    async def start(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def rpc_noop(self) -> int:
        return 0

    async def on_message_create(self, event: Event) -> None:
        words = str(event.data().get("content", "")).split()
        if len(words) != 2 or words[0] != "!bench":
            return
        rounds = int(words[1])
        cluster = self.gateway.cluster
        call_all: list[float] = []
        workers = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            results = await cluster.call_all("noop")
            call_all.append(time.perf_counter() - t0)
            workers = len(results.results)
        sends: dict[str, list[float]] = {"local": [], "remote": []}
        # Interleaved, so both see the same machine load; well under a shard's 120 per 60 s.
        for _ in range(rounds):
            for kind, shard in (("local", LOCAL_SHARD), ("remote", REMOTE_SHARD)):
                t0 = time.perf_counter()
                await self.gateway.send_packet(shard, 3, _PRESENCE)
                sends[kind].append(time.perf_counter() - t0)
        doc = {"call_all": call_all, "workers": workers, **sends}
        # One small write once the timing is over: blocking the loop here costs nothing.
        tmp = os.environ[OUT_ENV] + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(doc).encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.environ[OUT_ENV])


_PRESENCE = {"since": None, "activities": [], "status": "online", "afk": False}

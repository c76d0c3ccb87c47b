"""REST client benchmarks: throughput against the global limit with several workers sharing
it through the supervisor's ledger (IPC messages framed as on the pipe), and the client's
added latency per call against a raw aiohttp call to the same server.

The server is the Discord-shaped one of ``tests/rest`` (global limit over a sliding second,
counters like the fake gateway's ``/_fake/rest``), on 127.0.0.1 in this process."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.results import Row
from shardmgr.restlimits import LocalGlobal, RestBroker
from tests.rest.discord_server import TOKEN, DiscordServer
from tests.rest.loopback import Loopback
from workers.rest.client import USER_AGENT, RestClient
from workers.rest.limiter import LocalCoordinator

GLOBAL_LIMIT = 50  # Discord's default
WORKERS = 4
CHANNELS_PER_WORKER = 8


async def _throughput(warmup: float, seconds: float) -> tuple[float, int, int, int]:
    """(sent per second, global violations, bucket violations, 429s). The first ``warmup``
    seconds are not counted: a fresh ledger grants a whole window at once, and a short run
    would count that burst as throughput."""
    # Buckets far above the global limit: only the global limit binds.
    server = DiscordServer(GLOBAL_LIMIT, bucket_size=1000, bucket_window_s=1.0)
    await server.start()
    broker = RestBroker(LocalGlobal(GLOBAL_LIMIT))
    clients = [
        RestClient(TOKEN, server.api_base, Loopback(broker, w).coordinator) for w in range(WORKERS)
    ]
    done: list[float] = []
    stop = asyncio.Event()

    async def sender(client: RestClient, channel: str) -> None:
        while not stop.is_set():
            await client.request(
                "POST", "/channels/{channel_id}/messages", channel_id=channel, json={"content": "x"}
            )
            done.append(time.monotonic())

    tasks = [
        asyncio.create_task(sender(c, f"{w}{i:03d}"))
        for w, c in enumerate(clients)
        for i in range(CHANNELS_PER_WORKER)
    ]
    await asyncio.sleep(warmup)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    stop.set()
    end = time.monotonic()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        await client.aclose()
    await broker.aclose()
    await server.stop()
    sent = sum(1 for t in done if start <= t <= end)
    c = server.counters
    return sent / (end - start), c["global_violations"], c["limit_violations"], c["rate_limited"]


async def _latency(calls: int, rounds: int) -> tuple[float, float, float]:
    """Median seconds per call: (client, client over IPC ledger, raw aiohttp)."""
    server = DiscordServer(global_limit=10**9)
    await server.start()
    url = server.api_base + "/users/@me"
    headers = {"Authorization": f"Bot {TOKEN}", "User-Agent": USER_AGENT}
    raw_session = aiohttp.ClientSession()
    local = RestClient(TOKEN, server.api_base, LocalCoordinator(10**9))
    broker = RestBroker(LocalGlobal(10**9))
    remote = RestClient(TOKEN, server.api_base, Loopback(broker, 0).coordinator)

    async def raw() -> None:
        async with raw_session.get(url, headers=headers) as resp:
            await resp.read()

    async def time_calls(call: Callable[[], Awaitable[object]]) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            await call()
        return (time.perf_counter() - t0) / calls

    samples: dict[str, list[float]] = {"client": [], "remote": [], "raw": []}
    try:
        for fn in (raw, local.fetch_user, remote.fetch_user):  # warm connections up
            await fn()
        for _ in range(rounds):  # interleaved, so load drifts hit all three alike
            samples["raw"].append(await time_calls(raw))
            samples["client"].append(await time_calls(local.fetch_user))
            samples["remote"].append(await time_calls(remote.fetch_user))
    finally:
        await raw_session.close()
        await local.aclose()
        await remote.aclose()
        await broker.aclose()
        await server.stop()
    return (
        statistics.median(samples["client"]),
        statistics.median(samples["remote"]),
        statistics.median(samples["raw"]),
    )


def run(quick: bool) -> list[Row]:
    warmup, seconds = (0.5, 3.0) if quick else (2.0, 30.0)
    calls, rounds = (50, 3) if quick else (300, 7)
    rate, global_v, bucket_v, limited = asyncio.run(_throughput(warmup, seconds))
    client, remote, raw = asyncio.run(_latency(calls, rounds))
    clean = global_v == 0 and bucket_v == 0 and limited == 0
    return [
        Row(
            "rest.throughput_vs_global_limit",
            rate,
            "req/s",
            baseline=float(GLOBAL_LIMIT),
            direction=">=",
            threshold=0.9,
            note=f"{WORKERS} workers x {CHANNELS_PER_WORKER} channels through the supervisor's "
            f"ledger, {seconds:.0f}s after {warmup:.0f}s of warm-up; global violations "
            f"{global_v}, bucket violations {bucket_v}, 429s {limited}",
            error=""
            if clean
            else f"{global_v} global / {bucket_v} bucket violations, {limited} 429s",
        ),
        Row(
            "rest.call_latency_vs_raw_aiohttp",
            client * 1e3,
            "ms/call",
            baseline=raw * 1e3,
            direction="<=",
            threshold=1.2,
            note=f"GET /users/@me, median of {rounds} rounds of {calls} sequential calls",
        ),
        Row(
            "rest.call_latency_ipc_ledger_vs_raw",
            remote * 1e3,
            "ms/call",
            baseline=raw * 1e3,
            note="same, each call asking an in-process ledger for its global token "
            "(one grant per call when calls are sequential)",
        ),
    ]

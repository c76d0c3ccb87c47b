"""Benchmark: ``/livez`` latency while the admin port is flooded with idle connections.

The supervisor runs with RLIMIT_NOFILE 1,024; a client with enough descriptors holds 2,000
connections that send nothing or half a request (the red-team check that once took the port,
and the descriptors a worker restart needs, with 1,100). ``/livez`` is probed every 50 ms,
each probe a fresh connection with a 1 s timeout, first idle and then under that load.
The load helpers are shared with tests/supervisor/test_admin_port_load.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import statistics
import time
from dataclasses import dataclass, field

from bench.procs import cluster
from bench.results import Row
from bench.system import start_system

SUPERVISOR_NOFILE = 1024
IDLE_CONNECTIONS = 2000
PROBE_TIMEOUT_S = 1.0
# A real attacker's half request: a request line and one header, never finished.
HALF_REQUEST = b"GET /status HTTP/1.1\r\nHost: x\r\n"


def raise_own_nofile(needed: int) -> None:
    """The flooding client needs a descriptor per connection it holds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def limit_nofile(pid: int, limit: int = SUPERVISOR_NOFILE) -> None:
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))


@dataclass
class IdleFlood:
    """``count`` connections held open, half of them with a half-sent request; a closed one
    is not reopened (the port's job is to close them; a reconnect storm is another attack)."""

    host: str
    port: int
    count: int
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    connected: int = 0
    failed: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._one(i)) for i in range(self.count)]
        await asyncio.sleep(0)

    async def _one(self, i: int) -> None:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 30
            )
        except (OSError, TimeoutError):
            self.failed += 1
            return
        self.connected += 1
        self.writers.append(writer)
        if i % 2:
            with contextlib.suppress(OSError):
                writer.write(HALF_REQUEST)

    async def settled(self) -> None:
        """Every connect has been answered (accepted, reset or timed out)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self.writers:
            writer.transport.abort()


@dataclass
class Probes:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> tuple[float, float]:
        """Median and p99 latency in seconds."""
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return statistics.median(ordered), p99


def probe_once(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> float:
    """Seconds for one ``GET /livez`` on a fresh connection; raises on failure. Blocking, run
    in a thread: a probe is its own client (as the kubelet is), not one more task of the
    event loop that is busy opening the flood's connections."""
    started = time.monotonic()
    deadline = started + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
            sock.settimeout(max(0.001, deadline - time.monotonic()))
    if not answer.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"/livez answered {answer[:40]!r}")
    elapsed = time.monotonic() - started
    if elapsed > timeout_s:
        raise TimeoutError(f"/livez took {elapsed:.2f}s")
    return elapsed


async def probe_for(
    host: str, port: int, seconds: float, interval_s: float = 0.05, probes: Probes | None = None
) -> Probes:
    probes = probes if probes is not None else Probes()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            probes.latencies.append(await asyncio.to_thread(probe_once, host, port))
        except (OSError, TimeoutError, AssertionError) as exc:
            probes.failures.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)
    return probes


async def _measure(host: str, port: int, count: int, seconds: float) -> tuple[Probes, Probes]:
    idle = await probe_for(host, port, seconds)
    flood = IdleFlood(host, port, count)
    await flood.start()
    try:
        loaded = await probe_for(host, port, seconds)
    finally:
        await flood.close()
    return idle, loaded


def run(quick: bool) -> list[Row]:
    count = 300 if quick else IDLE_CONNECTIONS
    seconds = 2.0 if quick else 8.0
    raise_own_nofile(count + 256)
    with cluster() as c:
        system = start_system(c, shards=4, workers=2)
        system.wait_ready(timeout=60)
        limit_nofile(system.supervisor.popen.pid)
        port = int(system.http.rsplit(":", 1)[1])
        idle, loaded = asyncio.run(_measure("127.0.0.1", port, count, seconds))
        system.check_alive()
    rows: list[Row] = []
    for label, probes in (("idle", idle), ("flooded", loaded)):
        if not probes.latencies:
            rows.append(
                Row(f"admin_load.livez_{label}_median", None, "ms", error="no probe answered")
            )
            continue
        median, p99 = probes.summary()
        note = f"{len(probes.latencies)} probes, {len(probes.failures)} failed"
        if probes.failures:
            note += f" (first: {probes.failures[0]})"
        if label == "flooded":
            note += f"; {count} idle connections held, supervisor RLIMIT_NOFILE 1024"
        rows.append(Row(f"admin_load.livez_{label}_median", median * 1000, "ms", note=note))
        rows.append(
            Row(
                f"admin_load.livez_{label}_p99",
                p99 * 1000,
                "ms",
                direction="<",
                threshold=PROBE_TIMEOUT_S * 1000,
                on_value=True,
            )
        )
    rows.append(
        Row(
            "admin_load.livez_failed_probes",
            float(len(loaded.failures)),
            "count",
            direction="==",
            threshold=0.0,
            on_value=True,
        )
    )
    return rows

"""The admin port under a flood of idle connections, end to end: the supervisor limited to
1,024 descriptors, a client holding 2,000 connections that send nothing or half a request.
``/livez`` answers every probe within 1 s, and a worker killed meanwhile is restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.admin_load import (
    IDLE_CONNECTIONS,
    SUPERVISOR_NOFILE,
    IdleFlood,
    Probes,
    limit_nofile,
    probe_for,
    raise_own_nofile,
)
from shardmgr.httpguard import IDLE_TIMEOUT_S
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = pytest.mark.integration


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[tuple[FakeGatewayProc, SupervisorProc]]:
    fake = await FakeGatewayProc.start(shards=4)
    sup = None
    try:
        sup = await SupervisorProc.start(fake, tmp_path, "--workers", "2")
        yield fake, sup
    finally:
        if sup is not None:
            await sup.close()
        await fake.close()


async def _status(url: str) -> dict[str, Any]:
    # A fresh connection per request: a kept-alive one may be evicted as idle by the flood.
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.get(url + "/status") as resp,
    ):
        doc: dict[str, Any] = await resp.json()
        return doc


async def _replaced_and_connected(url: str, old_pid: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        doc = await _status(url)
        pids = [w.get("pid") for w in doc["workers"]]
        if old_pid not in pids and all(pids) and all_connected(doc):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker {old_pid} was not replaced within {within_s}s")


def _nofile_limit(pid: int) -> int:
    """From /proc/PID/limits, which stays world-readable for a non-dumpable process."""
    with open(f"/proc/{pid}/limits") as fh:
        line = next(line for line in fh if line.startswith("Max open files"))
    return int(line.split()[3])


async def test_livez_answers_every_probe_while_2000_idle_connections_are_held(
    system: tuple[FakeGatewayProc, SupervisorProc],
) -> None:
    _fake, sup = system
    await sup.wait_status(all_connected)
    raise_own_nofile(IDLE_CONNECTIONS + 512)
    limit_nofile(sup.proc.pid, SUPERVISOR_NOFILE)
    host, port = sup.url.removeprefix("http://").rsplit(":", 1)

    probes = Probes()
    started = time.monotonic()
    flood = IdleFlood(host, int(port), IDLE_CONNECTIONS)
    await flood.start()
    # Probing covers the burst of connects, the held connections and their idle timeout.
    probing = asyncio.create_task(probe_for(host, int(port), IDLE_TIMEOUT_S + 3, probes=probes))
    try:
        await flood.settled()
        assert flood.connected == IDLE_CONNECTIONS
        old_pid = next(w["pid"] for w in (await _status(sup.url))["workers"] if w.get("pid"))
        os.kill(old_pid, signal.SIGKILL)
        await _replaced_and_connected(sup.url, old_pid, 60.0)
        await probing
    finally:
        probing.cancel()
        await flood.close()
    assert probes.failures == []
    assert len(probes.latencies) >= 20
    assert time.monotonic() - started > IDLE_TIMEOUT_S
    assert _nofile_limit(sup.proc.pid) == SUPERVISOR_NOFILE
    assert sup.proc.returncode is None

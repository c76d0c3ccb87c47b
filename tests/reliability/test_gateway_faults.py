"""The fake gateway's hostile frames against a real worker runtime (real websockets, real
inflaters) with a small ``max_message_bytes``: a zlib message that never ends, a message
larger than the limit, corrupt compression, invalid JSON. The worker bounds its buffer,
counts the bad payload, closes, and comes back; nothing raises out of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from shardmgr.fakegateway import FakeGateway
from tests.doubles import RecordingReporter
from tests.unit.workers.gateway_harness import (
    Recorder,
    connected,
    fake_config,
    running,
    worker_config,
)

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024
TIMEOUT_S = 20.0


def bad_payloads(reporter: RecordingReporter) -> int:
    return sum(s.bad_payloads for report in reporter.stats_reports for s in report)


def resumes(reporter: RecordingReporter, shard: int = 0) -> int:
    return sum(1 for s, kind, *_ in reporter.sessions if s == shard and kind == "resume")


def contiguous(rec: Recorder, shard: int, session_id: str) -> bool:
    seqs = sorted({s for s in rec.seqs(shard, session_id) if s is not None})
    return bool(seqs) and seqs == list(range(1, seqs[-1] + 1))


async def until(reporter: RecordingReporter, check: Callable[[], bool], what: str) -> None:
    """Wait for ``check()`` to hold; the worker's reports (every 0.2 s) wake us."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not check():
                reporter.changed.clear()
                await reporter.changed.wait()
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


@contextlib.asynccontextmanager
async def system(
    rec: Recorder, **worker: Any
) -> AsyncIterator[tuple[FakeGateway, RecordingReporter]]:
    """A fake gateway with live traffic and one worker runtime (one shard) connected to it."""
    async with FakeGateway(fake_config(event_rate=20.0)) as fg:
        config = worker_config(fg, max_message_bytes=LIMIT, compress="zlib-stream", **worker)
        async with running(config, rec.on_event) as (_runtime, reporter):
            await connected(reporter, 1)
            yield fg, reporter


@pytest.mark.parametrize("size", [LIMIT * 4, 8 << 20])
async def test_a_zlib_message_that_never_ends_is_cut_at_the_limit_and_resumed(size: int) -> None:
    rec = Recorder()
    # zombie detection off: the stall after the endless message must not end the connection
    # before the buffer limit does (that would be a correct recovery, but not this one)
    async with system(rec, check_heartbeat_acks=False) as (fg, reporter):
        session_id = fg.sessions()[0]["session_id"]
        await rec.wait_for(lambda: len(rec.seqs(0, session_id)) >= 5)
        await fg.inject("no_suffix", 0, bytes=size)
        await until(reporter, lambda: resumes(reporter) >= 1, "the shard resumed")
        before = max(s for s in rec.seqs(0, session_id) if s is not None)
        await rec.wait_for(lambda: max(rec.seqs(0, session_id) or [0]) >= before + 10)
        await until(reporter, lambda: bad_payloads(reporter) >= 1, "the bad payload was reported")
        assert [s["session_id"] for s in fg.sessions()] == [session_id]
        assert contiguous(rec, 0, session_id)


async def test_a_message_above_the_limit_costs_that_message_only_and_the_session_goes_on() -> None:
    rec = Recorder()
    async with system(rec) as (fg, reporter):
        session_id = fg.sessions()[0]["session_id"]
        await rec.wait_for(lambda: len(rec.seqs(0, session_id)) >= 5)
        await fg.inject("oversized", 0, bytes=LIMIT * 4)
        await until(
            reporter, lambda: bad_payloads(reporter) >= 1, "the oversized message was counted"
        )
        # it can never be delivered under this limit (its replay is just as large); the
        # shard must not loop on it but carry on with the same session past it
        seen = max(s for s in rec.seqs(0, session_id) if s is not None)
        await rec.wait_for(lambda: max(rec.seqs(0, session_id) or [0]) >= seen + 10)
        assert not [s for s in reporter.stops if s.fatal]
        assert [s["session_id"] for s in fg.sessions()] == [session_id]
        seqs = {s for s in rec.seqs(0, session_id) if s is not None}
        missing = set(range(1, max(seqs) + 1)) - seqs
        assert len(missing) == 1, sorted(missing)


@pytest.mark.parametrize("kind", ["bad_compression", "bad_json"])
async def test_malformed_frames_are_counted_and_resumed_without_loss(kind: str) -> None:
    rec = Recorder()
    async with system(rec) as (fg, reporter):
        session_id = fg.sessions()[0]["session_id"]
        await rec.wait_for(lambda: len(rec.seqs(0, session_id)) >= 5)
        await fg.inject(kind, 0)
        await until(reporter, lambda: resumes(reporter) >= 1, "the shard resumed")
        before = max(s for s in rec.seqs(0, session_id) if s is not None)
        await rec.wait_for(lambda: max(rec.seqs(0, session_id) or [0]) >= before + 10)
        await until(reporter, lambda: bad_payloads(reporter) >= 1, "the bad payload was reported")
        assert contiguous(rec, 0, session_id)

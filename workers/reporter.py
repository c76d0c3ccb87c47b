"""Everything the supervisor needs flows out through ``Reporter``: low-rate lifecycle
events as they happen, and high-rate counters batched by ``StatsCollector`` about once
a second (never one message per event)."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from workers import ipc
from workers.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)


class Reporter(Protocol):
    def state_changed(self, shard_id: int, state: ipc.ShardState) -> None: ...

    def session_started(
        self, shard_id: int, kind: str, session: ipc.SessionInfo, guilds: int
    ) -> None: ...

    def reconnecting(
        self,
        shard_id: int,
        reason: ipc.Reason,
        close_code: int | None,
        resume: bool,
        delay_s: float,
    ) -> None: ...

    def stopped(
        self,
        shard_id: int,
        reason: str,
        close_code: int | None,
        fatal: bool,
        session: ipc.SessionInfo | None,
    ) -> None: ...

    def stats(self, shards: list[ipc.ShardStats], rss_bytes: int, cpu_seconds: float) -> None: ...


class ShardCounters:
    """Plain-int counters a shard bumps on its hot path; the collector takes them."""

    __slots__ = (
        "bad_payloads",
        "bytes_compressed",
        "bytes_inflated",
        "duplicates",
        "events",
        "handler_errors",
        "identifies",
        "latencies_s",
        "model_errors",
        "resumes",
        "skipped",
    )

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.bytes_compressed = 0
        self.bytes_inflated = 0
        self.handler_errors = 0
        # Payloads that did not fit their typed model (the handler got the raw event).
        self.model_errors = 0
        self.bad_payloads = 0
        self.latencies_s: list[float] = []
        # Replayed dispatches dropped as already received; events skipped after their
        # replay failed again and again; IDENTIFY and RESUME payloads sent.
        self.duplicates = 0
        self.skipped = 0
        self.identifies = 0
        self.resumes = 0

    def take(self) -> ShardCounters:
        """Swap out the counters gathered so far (the deltas) and start afresh."""
        out = ShardCounters()
        (
            out.events,
            out.bytes_compressed,
            out.bytes_inflated,
            out.handler_errors,
            out.model_errors,
            out.bad_payloads,
            out.latencies_s,
            out.duplicates,
            out.skipped,
            out.identifies,
            out.resumes,
        ) = (
            self.events,
            self.bytes_compressed,
            self.bytes_inflated,
            self.handler_errors,
            self.model_errors,
            self.bad_payloads,
            self.latencies_s,
            self.duplicates,
            self.skipped,
            self.identifies,
            self.resumes,
        )
        self.events = {}
        self.bytes_compressed = self.bytes_inflated = 0
        self.handler_errors = self.model_errors = self.bad_payloads = 0
        self.duplicates = self.skipped = self.identifies = self.resumes = 0
        self.latencies_s = []
        return out


class StatsSource(Protocol):
    """A shard as the collector sees it."""

    shard_id: int
    counters: ShardCounters

    @property
    def backlog(self) -> int: ...

    @property
    def guilds(self) -> int: ...

    def checkpoint_session(self) -> ipc.SessionInfo | None: ...


def process_usage() -> tuple[int, float]:
    """(resident set size in bytes, CPU seconds) of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/self/statm", "rb") as fh:
            rss = int(fh.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        rss = usage.ru_maxrss * 1024
    return rss, cpu


def snapshot(sources: Iterable[StatsSource]) -> list[ipc.ShardStats]:
    out = []
    # Stamped here, once a report, rather than per dispatch on the receive path: the age
    # of a shard's last event is then exact to one stats interval, which is all /status
    # and the dashboard show.
    now = time.time()
    for src in sources:
        c = src.counters.take()
        out.append(
            ipc.ShardStats(
                shard_id=src.shard_id,
                latencies_s=c.latencies_s,
                events=c.events,
                bytes_compressed=c.bytes_compressed,
                bytes_inflated=c.bytes_inflated,
                handler_errors=c.handler_errors,
                model_errors=c.model_errors,
                bad_payloads=c.bad_payloads,
                backlog=src.backlog,
                guilds=src.guilds,
                last_event_at=now if c.events else None,
                session=src.checkpoint_session(),
                duplicates=c.duplicates,
                skipped=c.skipped,
                identifies=c.identifies,
                resumes=c.resumes,
            )
        )
    return out


class StatsCollector:
    """Every ``interval_s``, one ``Reporter.stats`` call covering all shards."""

    def __init__(
        self,
        sources: Callable[[], Iterable[StatsSource]],
        reporter: Reporter,
        interval_s: float = 1.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._sources = sources
        self._reporter = reporter
        self.interval_s = interval_s
        self._clock = clock

    def flush(self) -> None:
        rss, cpu = process_usage()
        self._reporter.stats(snapshot(self._sources()), rss, cpu)

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:
                log.exception("stats report failed")

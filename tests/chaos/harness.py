"""The chaos run: a fake gateway with live traffic, the real supervisor with several workers
on top of it, a seeded fault schedule hitting both, then the verdict of ``checker``.

Everything is real processes on 127.0.0.1: ``python -m shardmgr fake-gateway`` and
``python -m shardmgr start`` with the chaos bot (``tests/chaos/bot.py``: the ``jsonl``
handler recording every event it receives, and choking on the poison events the run
sends). The run never sleeps to "let things happen": it waits on conditions (every shard
connected, every sent event delivered) with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp

from fakegateway import FakeConfig, FakeProcess, FakeStartError, spawn_async
from tests.chaos import checker, deploys, poison
from tests.chaos.poisoncheck import InjectedPoison, dead_by_session
from tests.chaos.schedule import Fault, Kind, ScheduleConfig, make_schedule
from tests.reliability.procs import MARKER_ENV, kill_marked, marked_pids, new_marker

# A token of Discord's shape (base64 user id . timestamp . hmac) that no real bot has.
CHAOS_TOKEN: Final = "MTAwMDAwMDAwMDAwMDAwMDAx.GChaos.chaos-token-never-real-0123456789"
ADMIN_SECRET: Final = "chaos-admin-secret-5f0c"
REPO: Final = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    seconds: float = 300.0
    seed: int = 1
    shards: int = 4
    workers: int = 2
    max_concurrency: int = 1
    identify_window_s: float = 1.0
    heartbeat_interval_s: float = 1.0
    event_rate: float = 10.0  # dispatches per second per connected shard
    compress: str = "zlib-stream"
    warmup_s: float = 3.0
    quiet_tail_s: float = 12.0
    mean_gap_s: float = 1.5
    connect_timeout_s: float = 60.0  # for the first full connection
    settle_timeout_s: float = 60.0  # after the faults: everyone back, everything delivered
    workdir: Path = field(default_factory=lambda: Path("chaos-run"))
    checkpoint_interval_s: float = 1.0  # the worker's stats report (and checkpoint) period

    def limits(self) -> checker.Limits:
        # at-least-once: a worker lost without warning redelivers what its shards handled
        # since the last checkpoint report; allow a few report periods of traffic for that
        per_worker = -(-self.shards // self.workers)
        per_crash = int(per_worker * self.event_rate * self.checkpoint_interval_s * 5)
        return checker.Limits(max_duplicates_per_crash=max(50, per_crash))

    @classmethod
    def from_env(cls, default_seconds: float, **kw: Any) -> ChaosConfig:
        seconds = float(os.environ.get("CHAOS_SECONDS", default_seconds))
        seed = int(os.environ.get("CHAOS_SEED", kw.pop("seed", 1)))
        compress = os.environ.get("CHAOS_COMPRESS", kw.pop("compress", "zlib-stream"))
        return cls(seconds=seconds, seed=seed, compress=compress, **kw)

    def schedule_config(self) -> ScheduleConfig:
        return ScheduleConfig(
            duration_s=self.seconds,
            shards=self.shards,
            workers=self.workers,
            warmup_s=self.warmup_s,
            quiet_tail_s=self.quiet_tail_s,
            mean_gap_s=self.mean_gap_s,
        )


class ChaosError(Exception):
    """The run could not even be set up (a process did not start): no verdict possible."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_env(marker: str, **extra: str) -> dict[str, str]:
    """A clean environment (none of the caller's SHARDMGR_*/DISCORD_* settings) carrying a
    marker by which every process of this run, workers included, can be found."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHARDMGR_", "DISCORD_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env[MARKER_ENV] = marker
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file; stopped on every path."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1


async def start_fake_gateway(cfg: ChaosConfig, log: TextIO, marker: str) -> FakeProcess:
    config = FakeConfig(
        shards=cfg.shards,
        max_concurrency=cfg.max_concurrency,
        identify_window_s=cfg.identify_window_s,
        heartbeat_interval_s=cfg.heartbeat_interval_s,
        event_rate=cfg.event_rate,
        token=CHAOS_TOKEN,
    )
    try:
        return await spawn_async(config, env=child_env(marker), cwd=cfg.workdir, stderr=log)
    except FakeStartError as exc:
        raise ChaosError(str(exc)) from None


async def start_supervisor(
    cfg: ChaosConfig, api: str, http_port: int, jsonl: Path, log: TextIO, marker: str
) -> Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shardmgr",
        "start",
        "--shards",
        "auto",
        "--api-base",
        f"{api}/api/v10",
        "--http",
        f"127.0.0.1:{http_port}",
        "--workers",
        str(cfg.workers),
        "--app-dir",
        str(deploys.write_app(cfg.workdir / "app")),
        "--handler",
        deploys.HANDLER,
        "--compress",
        cfg.compress,
        "--identify-window",
        str(cfg.identify_window_s),
        "--identify-reserve",
        "0",
        "--ping-interval",
        "0.5",
        "--ping-timeout",
        "2",
        "--restart-backoff-base",
        "0.2",
        "--restart-backoff-cap",
        "2",
        "--restart-stable",
        "5",
        "--state-dir",
        str(cfg.workdir / "state"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=child_env(
            marker,
            DISCORD_TOKEN=CHAOS_TOKEN,
            SHARDMGR_ADMIN_SECRET=ADMIN_SECRET,
            SHARDMGR_JSONL=str(jsonl),
        ),
        cwd=cfg.workdir,
    )
    return Process(proc, "supervisor")


class Control:
    """HTTP calls to the fake gateway's control API and the supervisor's status API."""

    def __init__(self, http: aiohttp.ClientSession, fake: str, status: str) -> None:
        self.http = http
        self.fake = fake
        self.status_url = status

    async def fake_get(self, path: str) -> Any:
        async with self.http.get(self.fake + path) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def fake_post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(self.fake + path, json=body) as resp:
            doc = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, doc

    async def status(self) -> dict[str, Any] | None:
        try:
            async with self.http.get(self.status_url + "/status") as resp:
                if resp.status != 200:
                    return None
                doc: dict[str, Any] = await resp.json(content_type=None)
                return doc
        except (aiohttp.ClientError, OSError, ValueError):
            return None

    async def rolling_restart(self) -> int:
        async with self.http.post(
            self.status_url + "/restart", headers={"Authorization": f"Bearer {ADMIN_SECRET}"}
        ) as resp:
            await resp.read()
            return resp.status


def shard_states(status: dict[str, Any] | None) -> dict[int, str]:
    if not status:
        return {}
    return {int(s["id"]): str(s.get("state")) for s in status.get("shards", [])}


def worker_pids(status: dict[str, Any] | None) -> list[int]:
    if not status:
        return []
    return [int(w["pid"]) for w in status.get("workers", []) if w.get("pid")]


async def wait_for(
    what: str, check: Callable[[], Awaitable[bool]], timeout_s: float, poll_s: float = 0.2
) -> bool:
    """Poll ``check`` until it holds or the deadline passes; a condition, never a nap."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)


@dataclass
class FaultLog:
    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)
    kills: int = 0
    stops: int = 0
    rolling: int = 0
    bad_deploys: int = 0
    bad_deploys_refused: int = 0
    poisons: list[InjectedPoison] = field(default_factory=list)


async def apply_fault(
    fault: Fault,
    ctl: Control,
    flog: FaultLog,
    stopped: set[asyncio.Task[None]],
    cfg: ChaosConfig,
) -> None:
    request = fault.gateway_request()
    note = ""
    ok = True
    if request is not None:
        path, body = request
        for attempt in range(FAULT_ATTEMPTS):
            status, doc = await ctl.fake_post(path, body)
            ok = status < 400
            note = f"-> {status}"
            # a gateway fault aimed at a shard that is reconnecting right now hits nobody;
            # try again shortly so that every scheduled fault really lands
            if not ok or not _missed(fault, doc):
                break
            note += " (shard not connected)"
            if attempt + 1 < FAULT_ATTEMPTS:
                await asyncio.sleep(FAULT_RETRY_S)
        else:
            ok = False
    elif fault.kind is Kind.ROLLING_RESTART and fault.via_signal:
        supervisor_pid = int(((await ctl.status()) or {}).get("supervisor", {}).get("pid", 0))
        ok = supervisor_pid > 0
        if ok:
            os.kill(supervisor_pid, signal.SIGHUP)
        note = f"SIGHUP pid {supervisor_pid}"
        flog.rolling += ok
    elif fault.kind is Kind.BAD_DEPLOY:
        refused, fixed, note = await deploys.bad_deploy(ctl, cfg.workdir / "app")
        flog.bad_deploys += 1
        flog.bad_deploys_refused += refused
        flog.rolling += fixed
    elif fault.kind is Kind.POISON_EVENT:
        n = len(flog.poisons) + 1
        shot, note = await poison.inject(fault, ctl, n, cfg.shards, cfg.workdir / "state")
        ok = shot is not None
        if shot is not None:
            flog.poisons.append(shot)
    elif fault.kind is Kind.ROLLING_RESTART:
        status = await ctl.rolling_restart()
        ok = status == 202
        note = f"-> {status}"
        flog.rolling += ok
    else:
        pids = worker_pids(await ctl.status())
        if not pids:
            ok = False
            note = "no worker running"
        else:
            pid = pids[(fault.worker or 0) % len(pids)]
            note = f"pid {pid}"
            try:
                if fault.kind is Kind.KILL9:
                    os.kill(pid, signal.SIGKILL)
                    flog.kills += 1
                else:
                    os.kill(pid, signal.SIGSTOP)
                    flog.stops += 1
                    task = asyncio.get_running_loop().create_task(_resume(pid, fault.duration_s))
                    stopped.add(task)
                    task.add_done_callback(stopped.discard)
            except ProcessLookupError:
                ok = False
                note += " already gone"
    (flog.applied if ok else flog.skipped)[fault.kind.value] += 1
    flog.lines.append(f"{fault.describe()} {note}{'' if ok else ' (skipped)'}")


FAULT_ATTEMPTS: Final = 5
FAULT_RETRY_S: Final = 0.3


def _missed(fault: Fault, doc: Any) -> bool:
    if fault.kind in (Kind.HELLO_RECONNECT, Kind.REST_429) or not isinstance(doc, dict):
        return False
    return not doc.get("shards")


async def _resume(pid: int, after_s: float) -> None:
    await asyncio.sleep(after_s)  # the fault's duration is the point, not a wait for state
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def _logs(workdir: Path) -> Iterator[tuple[TextIO, TextIO]]:
    with (
        open(workdir / "fake-gateway.log", "w") as fake_log,
        open(workdir / "supervisor.log", "w") as sup_log,
    ):
        yield fake_log, sup_log


def read_deliveries(path: Path) -> tuple[list[checker.Delivery], int]:
    if not path.exists():
        return [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        return checker.parse_jsonl(fh)


def covered(
    sessions: list[checker.FakeSession],
    deliveries: list[checker.Delivery],
    dead: dict[str, frozenset[int]] | None = None,
) -> bool:
    """Every live session's events up to what the fake had sent are delivered (or, ``dead``
    by session id, dead-lettered)."""
    by_session, _ = checker.attribute(deliveries)
    return not any(
        checker.session_outcome(
            s, by_session.get(s.session_id, []), (dead or {}).get(s.session_id, frozenset())
        ).missing
        for s in sessions
        if s.live
    )


async def snapshot(
    ctl: Control,
) -> tuple[list[checker.FakeSession], checker.GatewayStats, Any, Any]:
    """Sessions and counters taken together: retried until no IDENTIFY slipped in between."""
    for _ in range(20):
        before = checker.parse_stats(await ctl.fake_get("/_fake/stats"))
        raw = await ctl.fake_get("/_fake/sessions")
        raw_stats = await ctl.fake_get("/_fake/stats")
        after = checker.parse_stats(raw_stats)
        if before.identifies == after.identifies:
            break
    docs = raw.get("sessions", raw) if isinstance(raw, dict) else raw
    return checker.parse_sessions(docs), after, docs, raw_stats


async def run_chaos(cfg: ChaosConfig, progress: TextIO | None = None) -> checker.Report:
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    jsonl = cfg.workdir / "events.jsonl"
    jsonl.unlink(missing_ok=True)
    schedule = make_schedule(cfg.seed, cfg.schedule_config())

    def say(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    with _logs(cfg.workdir) as (fake_log, sup_log):
        fake_marker, marker = new_marker(), new_marker()
        fake = await start_fake_gateway(cfg, fake_log, fake_marker)
        fake_url = fake.url
        supervisor: Process | None = None
        stopped: set[asyncio.Task[None]] = set()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                http_port = free_port()
                ctl = Control(http, fake_url, f"http://127.0.0.1:{http_port}")
                start_stats = checker.parse_stats(await ctl.fake_get("/_fake/stats"))
                flog = FaultLog()
                # discovery at startup meets 429s first: the supervisor must honour them
                await ctl.fake_post(
                    "/_fake/rest-faults", {"status": 429, "count": 2, "retry_after": 0.2}
                )
                flog.applied["startup_rest_429"] += 1
                supervisor = await start_supervisor(
                    cfg, fake_url, http_port, jsonl, sup_log, marker
                )

                async def all_connected() -> bool:
                    states = shard_states(await ctl.status())
                    return len(states) == cfg.shards and all(
                        v in checker.Limits().connected_states for v in states.values()
                    )

                if not await wait_for("connected", all_connected, cfg.connect_timeout_s):
                    raise ChaosError(
                        f"shards never all connected within {cfg.connect_timeout_s:.0f} s "
                        f"(see {cfg.workdir / 'supervisor.log'})"
                    )
                rss_start = rss_bytes(supervisor.pid)
                say(
                    f"chaos: {len(schedule)} faults over {cfg.seconds:.0f}s, seed {cfg.seed}, "
                    f"logs in {cfg.workdir}"
                )
                t0 = time.monotonic()
                for fault in schedule:
                    delay = t0 + fault.at_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)  # the schedule's clock, not a wait for state
                    if supervisor.returncode is not None:
                        break
                    began = time.monotonic()
                    try:
                        await apply_fault(fault, ctl, flog, stopped, cfg)
                    except (aiohttp.ClientError, OSError) as exc:
                        flog.skipped[fault.kind.value] += 1
                        flog.lines.append(f"{fault.describe()} failed: {exc}")
                    if fault.kind is Kind.POISON_EVENT:
                        # the schedule's clock stands still while a poison event is dealt
                        # with, so the faults after it keep their distances
                        t0 += time.monotonic() - began
                rest = t0 + cfg.seconds - time.monotonic()
                if rest > 0:
                    await asyncio.sleep(rest)  # the quiet tail is part of the run's length
                if stopped:
                    await asyncio.gather(*stopped, return_exceptions=True)

                await wait_for("connected", all_connected, cfg.settle_timeout_s)
                sessions, stats, raw_sessions, raw_stats = await snapshot(ctl)
                (cfg.workdir / "sessions.json").write_text(json.dumps(raw_sessions, indent=1))
                (cfg.workdir / "stats.json").write_text(json.dumps(raw_stats, indent=1))

                state_dir = cfg.workdir / "state"

                async def delivered() -> bool:
                    dead = dead_by_session(poison.read_dead_letters(state_dir), sessions)
                    return covered(sessions, read_deliveries(jsonl)[0], dead)

                await wait_for("delivered", delivered, cfg.settle_timeout_s)
                final_status = await ctl.status()
                rss_end = rss_bytes(supervisor.pid)
                exit_during_run = supervisor.returncode
                # the clean stop is part of the verdict: SIGTERM, exit 0, no worker left
                stop_code = await supervisor.stop(timeout_s=cfg.settle_timeout_s)
                leftovers = len(marked_pids(marker))
                deliveries, bad_lines = read_deliveries(jsonl)
                restarts = sum(
                    int(w.get("restarts") or 0) for w in (final_status or {}).get("workers", [])
                )
                crashes = max(restarts, flog.kills + flog.stops) + flog.rolling * cfg.workers
                facts = checker.RunFacts(
                    duration_s=cfg.seconds,
                    seed=cfg.seed,
                    shards=cfg.shards,
                    workers=cfg.workers,
                    supervisor_exit_code=exit_during_run,
                    rss_start_bytes=rss_start,
                    rss_end_bytes=rss_end,
                    stop_exit_code=stop_code,
                    leftover_processes=leftovers,
                    shard_states=shard_states(final_status),
                    session_start_limit=start_stats.session_start_remaining,
                    faults=dict(flog.applied),
                    faults_skipped=sum(flog.skipped.values()),
                    compress=cfg.compress,
                    crashes=crashes,
                    undecodable_lines=bad_lines,
                    rest_faults_served=int(raw_stats.get("rest_faults_served", 0)),
                    bad_deploys=flog.bad_deploys,
                    bad_deploys_refused=flog.bad_deploys_refused,
                    poisons=tuple(flog.poisons),
                )
                report = checker.build_report(
                    deliveries,
                    sessions,
                    stats,
                    facts,
                    cfg.limits(),
                    dead_letters=poison.read_dead_letters(state_dir),
                )
                (cfg.workdir / "faults.log").write_text("\n".join(flog.lines) + "\n")
                (cfg.workdir / "report.txt").write_text(report.render() + "\n")
                return report
        finally:
            for task in list(stopped):
                task.cancel()
            if supervisor is not None:
                await supervisor.stop()
            await fake.stop_async()
            kill_marked(marker)
            kill_marked(fake_marker)


def report_json(report: checker.Report) -> str:
    """Machine-readable summary, kept next to the text report for the README's numbers."""
    doc = {
        "passed": report.passed,
        "seed": report.facts.seed,
        "duration_s": report.facts.duration_s,
        "faults": dict(report.facts.faults),
        "delivered": report.delivered,
        "gaps": report.gaps,
        "lost_to_invalidation": report.lost_to_invalidation,
        "duplicates": report.duplicates,
        "poison_events": len(report.facts.poisons),
        "dead_letters": len(report.dead_letters),
        "identifies": report.stats.identifies,
        "resumes": report.stats.resumes,
        "rss_start": report.facts.rss_start_bytes,
        "rss_end": report.facts.rss_end_bytes,
        "checks": {c.name: c.passed for c in report.checks},
    }
    return json.dumps(doc, indent=2)

"""Turns what a chaos run recorded into its verdict: pure functions, no I/O.

Inputs are the handler's delivered events (the jsonl lines), the fake gateway's ground
truth (every session it ever created, and its counters) and a few facts about the
supervisor process. The output is a ``Report``: named checks that pass or fail, the
numbers behind them, and a one-screen text rendering.

Attribution of a delivered event to a session: a record may name its session directly
(``session`` key); otherwise a READY opens a session for its shard (``d.session_id``) and
every later record of that shard belongs to it until the next READY. One shard is handled
by one worker at a time and a worker handles a shard's events in order, so file order per
shard is delivery order.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tests.chaos.poisoncheck import (
    DeadLetterRec,
    InjectedPoison,
    dead_by_session,
    letters_line,
    poison_verdict,
)

# ended_reason values (or close codes) by which the fake says it threw a session away itself;
# a new IDENTIFY for the shard afterwards is what the protocol demands, not waste.
SERVER_INVALIDATION_REASONS: Final = frozenset(
    {
        "invalid_session",
        "invalid_session_false",
        "op9",
        "op9_false",
        "4003",
        "4007",
        "4009",
        "close_4003",
        "close_4007",
        "close_4009",
        "not_authenticated",
        "invalid_seq",
        "session_timed_out",
    }
)
EXPIRY_REASONS: Final = frozenset({"expired", "session_expired", "timeout_expired"})

# Control events that take a sequence number but that a handler may legitimately not be given.
CONTROL_EVENTS: Final = frozenset({"RESUMED"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as the bot's handler received it."""

    shard: int
    seq: int | None
    t: str | None
    session_id: str | None = None
    # the chaos bot's sighting of a poison event it is about to die on (its marker): not a
    # delivery, the event never got past the handler
    poison: str | None = None


@dataclass(frozen=True, slots=True)
class FakeSession:
    """The fake gateway's record of one session (``GET /_fake/sessions``)."""

    shard_id: int
    session_id: str
    first_seq: int
    last_seq_sent: int
    state: str = ""
    ended_reason: str | None = None
    invalidated_by_server: bool = False
    created_at: float = 0.0
    resumed_seqs: tuple[int, ...] = ()

    @property
    def live(self) -> bool:
        return self.ended_reason is None and self.state not in {"ended", "invalidated", "expired"}

    @property
    def server_ended(self) -> bool:
        """Ended by the server in a way that forbids resuming (or by expiry)."""
        reason = (self.ended_reason or "").lower()
        return (
            self.invalidated_by_server
            or reason in SERVER_INVALIDATION_REASONS
            or reason in EXPIRY_REASONS
        )


@dataclass(frozen=True, slots=True)
class GatewayStats:
    """The fake gateway's counters (``GET /_fake/stats``) at the end of the run."""

    identifies: int
    resumes: int
    identify_violations: int
    session_start_remaining: int
    rejected_identifies: int = 0


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the harness observed about the supervisor and the run itself."""

    duration_s: float
    seed: int
    shards: int
    workers: int
    supervisor_exit_code: int | None  # None: still running at the end, as it must be
    rss_start_bytes: int
    rss_end_bytes: int
    shard_states: Mapping[int, str]  # from the supervisor's /status at the end
    session_start_limit: int  # ``remaining`` when the run began
    faults: Mapping[str, int] = field(default_factory=dict)
    faults_skipped: int = 0  # scheduled, but the target was down every time it was tried
    crashes: int = 0  # worker processes killed or replaced (kill -9, hung after SIGSTOP, restarts)
    undecodable_lines: int = 0
    compress: str = "zlib-stream"
    rest_faults_served: int = 0  # REST 429s the fake actually answered discovery with
    stop_exit_code: int | None = 0  # the supervisor's status after the final SIGTERM
    leftover_processes: int = 0  # processes of the run still alive after that stop
    bad_deploys: int = 0  # rolling restarts to a handler that does not import
    bad_deploys_refused: int = 0  # ... that the canary refused, the old workers kept
    poisons: tuple[InjectedPoison, ...] = ()  # poison events injected


@dataclass(frozen=True, slots=True)
class Limits:
    """Tolerances, each one an explicit number in the report."""

    # at-least-once: a lost worker may redeliver what it handled after its last checkpoint
    max_duplicates_per_crash: int = 400
    # RSS may grow this much over the start value (allocator warm-up, caches) and no more
    rss_growth_factor: float = 1.5
    rss_growth_slack_bytes: int = 48 * 1024 * 1024
    connected_states: frozenset[str] = frozenset({"connected", "CONNECTED", "ready", "active"})


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    shard_id: int
    session_id: str
    expected: int  # seqs from first_seq through last_seq_sent
    delivered: int  # distinct seqs the handler received
    missing: tuple[int, ...]
    duplicates: int
    server_ended: bool
    dead_lettered: tuple[int, ...] = ()  # not delivered, but in the dead-letter file: no gap


@dataclass(frozen=True, slots=True)
class IdentifyVerdict:
    shard_id: int
    session_id: str
    justification: str | None  # None: no non-resumable event explains this IDENTIFY


@dataclass(frozen=True)
class Report:
    facts: RunFacts
    checks: tuple[Check, ...]
    sessions: tuple[SessionOutcome, ...]
    identifies: tuple[IdentifyVerdict, ...]
    stats: GatewayStats
    delivered: int
    duplicates: int
    duplicate_bound: int
    gaps: int  # missing seqs in sessions the client was entitled to keep
    lost_to_invalidation: int  # missing seqs in sessions the server itself threw away
    invalidated_sessions: int
    unattributed: int
    dead_letters: tuple[DeadLetterRec, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def render(self) -> str:
        f = self.facts
        mib = 1024 * 1024
        fault_text = ", ".join(f"{k}={v}" for k, v in sorted(f.faults.items())) or "none"
        lines = [
            f"chaos report: seed={f.seed} duration={f.duration_s:.0f}s shards={f.shards} "
            f"workers={f.workers} compress={f.compress}",
            *textwrap.wrap(
                f"faults injected ({sum(f.faults.values())}): {fault_text}",
                width=100,
                subsequent_indent="  ",
            ),
            f"faults skipped (target not connected): {f.faults_skipped}  "
            f"worker crashes/replacements: {f.crashes}",
            f"discovery 429s served: "
            f"{f.rest_faults_served}  torn jsonl lines: {f.undecodable_lines}",
            f"events delivered: {self.delivered}  sessions: {len(self.sessions)} "
            f"({self.invalidated_sessions} invalidated by the server)",
            f"gaps: {self.gaps}  lost with server-invalidated sessions: "
            f"{self.lost_to_invalidation}  unattributed records: {self.unattributed}",
            f"duplicates: {self.duplicates} (bound {self.duplicate_bound})",
            *textwrap.wrap(
                letters_line(self.dead_letters, f.poisons), width=100, subsequent_indent="  "
            ),
            f"identifies: {self.stats.identifies} (justified "
            f"{sum(1 for i in self.identifies if i.justification)}, unjustified "
            f"{sum(1 for i in self.identifies if not i.justification)}), resumes: "
            f"{self.stats.resumes}, identify violations: {self.stats.identify_violations}, "
            f"session starts left: {self.stats.session_start_remaining}/{f.session_start_limit}",
            f"supervisor RSS: start {f.rss_start_bytes / mib:.1f} MiB, end "
            f"{f.rss_end_bytes / mib:.1f} MiB",
            "",
        ]
        for check in self.checks:
            lines.append(f"[{'PASS' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
        lines.append("")
        lines.append("RESULT: " + ("PASS" if self.passed else "FAIL"))
        return "\n".join(lines)


# ---------------------------------------------------------------- parsing


def parse_jsonl(lines: Iterable[str]) -> tuple[list[Delivery], int]:
    """Parse handler lines. A worker killed mid-write leaves a torn line, and the next write
    lands right after it; the tail of such a line is still a whole record, so recover it.
    Returns the deliveries and the number of fragments that held no whole record."""
    out: list[Delivery] = []
    bad = 0
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        doc = _loads_record(line)
        if doc is None:
            # a torn record followed by a whole one: try every record start from the right
            start = line.rfind('{"shard"')
            while start > 0 and doc is None:
                doc = _loads_record(line[start:])
                if doc is None:
                    start = line.rfind('{"shard"', 0, start)
            bad += 1
            if doc is None:
                continue
        out.append(_delivery(doc))
    return out, bad


def _loads_record(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("shard"), int):
        return None
    return doc


def _delivery(doc: Mapping[str, Any]) -> Delivery:
    seq = doc.get("seq")
    t = doc.get("t")
    session = doc.get("session") or doc.get("session_id")
    if session is None and t == "READY":
        d = doc.get("d")
        if isinstance(d, dict) and isinstance(d.get("session_id"), str):
            session = d["session_id"]
    poison = doc.get("poison")
    return Delivery(
        shard=int(doc["shard"]),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        t=t if isinstance(t, str) else None,
        session_id=session if isinstance(session, str) else None,
        poison=poison if isinstance(poison, str) else None,
    )


def parse_sessions(docs: Iterable[Mapping[str, Any]]) -> list[FakeSession]:
    out = []
    for doc in docs:
        reason = doc.get("ended_reason")
        resumed = doc.get("resumed_seqs") or ()
        out.append(
            FakeSession(
                shard_id=int(doc["shard_id"]),
                session_id=str(doc["session_id"]),
                first_seq=int(doc.get("first_seq") or 1),
                last_seq_sent=int(doc.get("last_seq_sent") or 0),
                state=str(doc.get("state") or ""),
                ended_reason=None if reason is None else str(reason),
                invalidated_by_server=bool(doc.get("invalidated_by_server", False)),
                created_at=float(doc.get("identified_at") or doc.get("created_at") or 0.0),
                resumed_seqs=tuple(int(s) for s in resumed),
            )
        )
    return out


def parse_stats(doc: Mapping[str, Any]) -> GatewayStats:
    return GatewayStats(
        identifies=int(doc.get("identifies", 0)),
        resumes=int(doc.get("resumes", 0)),
        identify_violations=int(doc.get("identify_violations", 0)),
        session_start_remaining=int(doc.get("session_start_remaining", 0)),
        rejected_identifies=int(doc.get("rejected_identifies", 0)),
    )


# ---------------------------------------------------------------- analysis


def attribute(deliveries: Sequence[Delivery]) -> tuple[dict[str, list[Delivery]], int]:
    """Group deliveries by session id; returns the groups and how many fit no session."""
    by_session: dict[str, list[Delivery]] = defaultdict(list)
    current: dict[int, str] = {}
    unattributed = 0
    for rec in deliveries:
        sid = rec.session_id
        if sid is not None:
            if rec.t == "READY":
                current[rec.shard] = sid
        else:
            sid = current.get(rec.shard)
        if sid is None:
            unattributed += 1
            continue
        by_session[sid].append(rec)
    return by_session, unattributed


def session_outcome(
    session: FakeSession, got: Sequence[Delivery], dead: frozenset[int] = frozenset()
) -> SessionOutcome:
    """``dead``: the session's dead-lettered seqs, missing but not gaps."""
    counts = Counter(r.seq for r in got if r.seq is not None and r.poison is None)
    expected = range(session.first_seq, session.last_seq_sent + 1)
    control = {r.seq for r in got if r.t in CONTROL_EVENTS} | set(session.resumed_seqs)
    undelivered = [s for s in expected if s not in counts and s not in control]
    missing = tuple(s for s in undelivered if s not in dead)
    duplicates = sum(n - 1 for seq, n in counts.items() if n > 1)
    return SessionOutcome(
        shard_id=session.shard_id,
        session_id=session.session_id,
        expected=len(expected),
        delivered=len(counts),
        missing=missing,
        duplicates=duplicates,
        server_ended=session.server_ended,
        dead_lettered=tuple(s for s in undelivered if s in dead),
    )


def justify_identifies(sessions: Sequence[FakeSession]) -> list[IdentifyVerdict]:
    """Each session the fake created cost one IDENTIFY. It is justified if it is the shard's
    first, or if the shard's previous session was thrown away by the server or expired."""
    by_shard: dict[int, list[FakeSession]] = defaultdict(list)
    for s in sorted(sessions, key=lambda s: (s.created_at, s.shard_id)):
        by_shard[s.shard_id].append(s)
    verdicts = []
    for shard_id in sorted(by_shard):
        previous: FakeSession | None = None
        for s in by_shard[shard_id]:
            if previous is None:
                why: str | None = "first session of the shard"
            elif previous.server_ended:
                why = f"previous session ended by the server ({previous.ended_reason})"
            else:
                why = None
            verdicts.append(IdentifyVerdict(shard_id, s.session_id, why))
            previous = s
    return verdicts


def build_report(
    deliveries: Sequence[Delivery],
    sessions: Sequence[FakeSession],
    stats: GatewayStats,
    facts: RunFacts,
    limits: Limits = Limits(),
    dead_letters: Sequence[DeadLetterRec] = (),
) -> Report:
    by_session, unattributed = attribute(deliveries)
    known = {s.session_id for s in sessions}
    # records naming a session the fake never created are as bad as records naming none
    unattributed += sum(len(v) for k, v in by_session.items() if k not in known)
    dead = dead_by_session(dead_letters, sessions)
    outcomes = tuple(
        session_outcome(s, by_session.get(s.session_id, []), dead.get(s.session_id, frozenset()))
        for s in sessions
    )
    gaps = sum(len(o.missing) for o in outcomes if not o.server_ended)
    lost = sum(len(o.missing) for o in outcomes if o.server_ended)
    duplicates = sum(o.duplicates for o in outcomes)
    bound = (facts.crashes + 1) * limits.max_duplicates_per_crash
    verdicts = tuple(justify_identifies(sessions))
    unjustified = [v for v in verdicts if v.justification is None]

    checks: list[Check] = []

    shards = range(facts.shards)
    not_connected = [i for i in shards if facts.shard_states.get(i) not in limits.connected_states]
    live_by_shard = Counter(s.shard_id for s in sessions if s.live)
    no_live = [i for i in shards if live_by_shard[i] == 0]
    checks.append(
        Check(
            "every shard connected again",
            not not_connected and not no_live,
            f"all {facts.shards} shards connected, each with a live session"
            if not not_connected and not no_live
            else f"not connected per /status: {not_connected or '-'}; "
            f"no live session at the gateway: {no_live or '-'}",
        )
    )

    gap_sessions = [o for o in outcomes if o.missing and not o.server_ended]
    checks.append(
        Check(
            "no gaps in any session",
            not gap_sessions and unattributed == 0,
            "every session contiguous from READY to the last seq sent"
            if not gap_sessions and unattributed == 0
            else "; ".join(
                f"shard {o.shard_id} session {o.session_id[:8]} missing {_ranges(o.missing)}"
                for o in gap_sessions[:4]
            )
            + (f"; {unattributed} records fit no session" if unattributed else ""),
        )
    )

    poisons_ok, poisons_detail = poison_verdict(facts.poisons, dead_letters, sessions, by_session)
    checks.append(Check("poison events dead-lettered", poisons_ok, poisons_detail))

    checks.append(
        Check(
            "duplicates bounded",
            duplicates <= bound,
            f"{duplicates} duplicate deliveries, bound {bound} "
            f"({limits.max_duplicates_per_crash} x ({facts.crashes} crashes + 1))",
        )
    )

    checks.append(
        Check(
            "no identify-window violations",
            stats.identify_violations == 0,
            f"{stats.identify_violations} violations",
        )
    )
    spent = facts.session_start_limit - stats.session_start_remaining
    within_budget = (
        stats.identifies <= facts.session_start_limit and stats.session_start_remaining >= 0
    )
    checks.append(
        Check(
            "identifies within session_start_limit",
            within_budget,
            f"{stats.identifies} identifies, {spent} starts spent of {facts.session_start_limit}",
        )
    )
    counted = len(verdicts) + stats.rejected_identifies
    checks.append(
        Check(
            "every identify justified",
            not unjustified and stats.identifies == counted,
            f"{len(verdicts) - len(unjustified)}/{len(verdicts)} sessions justified"
            + (
                "; unjustified: "
                + ", ".join(f"shard {v.shard_id} {v.session_id[:8]}" for v in unjustified[:4])
                if unjustified
                else ""
            )
            + (
                f"; gateway counted {stats.identifies} identifies but {counted} are accounted for"
                if stats.identifies != counted
                else ""
            ),
        )
    )

    checks.append(
        Check(
            "bad deploys refused",
            facts.bad_deploys_refused == facts.bad_deploys,
            f"{facts.bad_deploys_refused} of {facts.bad_deploys} refused by the canary",
        )
    )
    checks.append(
        Check(
            "supervisor never exited",
            facts.supervisor_exit_code is None,
            "running at the end"
            if facts.supervisor_exit_code is None
            else f"exited with status {facts.supervisor_exit_code}",
        )
    )
    checks.append(
        Check(
            "clean stop on SIGTERM",
            facts.stop_exit_code == 0 and facts.leftover_processes == 0,
            f"exit status {facts.stop_exit_code}, {facts.leftover_processes} processes left",
        )
    )
    rss_limit = (
        int(facts.rss_start_bytes * limits.rss_growth_factor) + limits.rss_growth_slack_bytes
    )
    checks.append(
        Check(
            "supervisor memory bounded",
            0 < facts.rss_end_bytes <= rss_limit,
            f"RSS {facts.rss_start_bytes // 1024} KiB -> {facts.rss_end_bytes // 1024} KiB "
            f"(limit {rss_limit // 1024} KiB)",
        )
    )

    return Report(
        facts=facts,
        checks=tuple(checks),
        sessions=outcomes,
        identifies=verdicts,
        stats=stats,
        delivered=len(deliveries),
        duplicates=duplicates,
        duplicate_bound=bound,
        gaps=gaps,
        lost_to_invalidation=lost,
        invalidated_sessions=sum(1 for s in sessions if s.server_ended),
        unattributed=unattributed,
        dead_letters=tuple(dead_letters),
    )


def _ranges(seqs: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5,9"``, so a report line stays short."""
    parts: list[str] = []
    start = prev = None
    for s in seqs:
        if start is None:
            start = prev = s
        elif prev is not None and s == prev + 1:
            prev = s
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = s
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    text = ",".join(parts[:6])
    return text + (",..." if len(parts) > 6 else "")

"""The chaos verdict, from synthetic recordings: each check can fail, and says why."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tests.chaos.checker import (
    Delivery,
    FakeSession,
    GatewayStats,
    Limits,
    Report,
    RunFacts,
    build_report,
    justify_identifies,
    parse_jsonl,
    parse_sessions,
)

MIB = 1024 * 1024


def facts(**kw: object) -> RunFacts:
    base: dict[str, object] = {
        "duration_s": 45.0,
        "seed": 7,
        "shards": 2,
        "workers": 1,
        "supervisor_exit_code": None,
        "rss_start_bytes": 60 * MIB,
        "rss_end_bytes": 62 * MIB,
        "shard_states": {0: "connected", 1: "connected"},
        "session_start_limit": 1000,
        "faults": {"cut": 3},
        "crashes": 0,
    }
    base.update(kw)
    return RunFacts(**base)  # type: ignore[arg-type]


def stats(identifies: int = 2, **kw: int) -> GatewayStats:
    return GatewayStats(
        identifies=identifies,
        resumes=kw.get("resumes", 0),
        identify_violations=kw.get("identify_violations", 0),
        session_start_remaining=kw.get("remaining", 1000 - identifies),
        rejected_identifies=kw.get("rejected", 0),
    )


def session(shard: int, sid: str, last: int, at: float = 0.0, **kw: object) -> FakeSession:
    return FakeSession(
        shard_id=shard,
        session_id=sid,
        first_seq=1,
        last_seq_sent=last,
        created_at=at,
        **kw,  # type: ignore[arg-type]
    )


def stream(shard: int, sid: str, seqs: Iterable[int]) -> list[Delivery]:
    out = []
    for s in seqs:
        t = "READY" if s == 1 else "MESSAGE_CREATE"
        out.append(Delivery(shard, s, t, sid if s == 1 else None))
    return out


def check(report: Report, name: str) -> bool:
    return next(c for c in report.checks if c.name == name).passed


def healthy() -> tuple[list[Delivery], list[FakeSession]]:
    return (
        stream(0, "a" * 32, range(1, 11)) + stream(1, "b" * 32, range(1, 8)),
        [session(0, "a" * 32, 10), session(1, "b" * 32, 7)],
    )


def test_clean_run_passes_every_check() -> None:
    deliveries, sessions = healthy()
    report = build_report(deliveries, sessions, stats(), facts())
    assert report.passed, report.render()
    assert report.gaps == 0 and report.duplicates == 0


def test_a_missing_seq_is_a_gap_that_fails() -> None:
    deliveries = stream(0, "a" * 32, [1, 2, 3, 5, 6]) + stream(1, "b" * 32, range(1, 8))
    sessions = [session(0, "a" * 32, 6), session(1, "b" * 32, 7)]
    report = build_report(deliveries, sessions, stats(), facts())
    assert not check(report, "no gaps in any session")
    assert report.gaps == 1
    assert "missing 4" in report.render()


def test_an_undelivered_tail_is_a_gap() -> None:
    deliveries = stream(0, "a" * 32, range(1, 9)) + stream(1, "b" * 32, range(1, 8))
    sessions = [session(0, "a" * 32, 10), session(1, "b" * 32, 7)]
    report = build_report(deliveries, sessions, stats(), facts())
    assert report.gaps == 2
    assert not report.passed


def test_loss_in_a_server_invalidated_session_is_reported_separately() -> None:
    deliveries = (
        stream(0, "a" * 32, range(1, 6))
        + stream(0, "c" * 32, range(1, 4))
        + stream(1, "b" * 32, range(1, 8))
    )
    sessions = [
        session(0, "a" * 32, 9, at=1.0, ended_reason="invalid_session", invalidated_by_server=True),
        session(0, "c" * 32, 3, at=2.0),
        session(1, "b" * 32, 7, at=1.0),
    ]
    report = build_report(deliveries, sessions, stats(identifies=3), facts())
    assert report.passed, report.render()
    assert report.gaps == 0
    assert report.lost_to_invalidation == 4
    assert report.invalidated_sessions == 1


def test_duplicates_are_counted_and_pass_within_the_bound() -> None:
    deliveries = (
        stream(0, "a" * 32, range(1, 8))
        + [Delivery(0, s, "MESSAGE_CREATE") for s in (5, 6, 7)]
        + [Delivery(0, s, "MESSAGE_CREATE") for s in (8, 9, 10)]
        + stream(1, "b" * 32, range(1, 8))
    )
    _, sessions = healthy()
    report = build_report(deliveries, sessions, stats(), facts(crashes=1))
    assert report.duplicates == 3
    assert report.passed, report.render()


def test_duplicates_beyond_the_bound_fail() -> None:
    deliveries = (
        stream(0, "a" * 32, range(1, 11))
        + [Delivery(0, s, "MESSAGE_CREATE") for s in range(2, 11)]
        + stream(1, "b" * 32, range(1, 8))
    )
    _, sessions = healthy()
    report = build_report(
        deliveries, sessions, stats(), facts(crashes=0), Limits(max_duplicates_per_crash=5)
    )
    assert report.duplicates == 9
    assert not check(report, "duplicates bounded")


def test_second_identify_after_a_resumable_loss_is_unjustified() -> None:
    deliveries = (
        stream(0, "a" * 32, range(1, 6))
        + stream(0, "c" * 32, range(1, 4))
        + stream(1, "b" * 32, range(1, 8))
    )
    sessions = [
        session(0, "a" * 32, 5, at=1.0, ended_reason="replaced"),
        session(0, "c" * 32, 3, at=2.0),
        session(1, "b" * 32, 7, at=1.0),
    ]
    report = build_report(deliveries, sessions, stats(identifies=3), facts())
    assert not check(report, "every identify justified")
    assert report.gaps == 0


def test_identify_after_expiry_or_4009_is_justified() -> None:
    sessions = [
        session(0, "a", 5, at=1.0, ended_reason="expired"),
        session(0, "b", 5, at=2.0, ended_reason="4009"),
        session(0, "c", 5, at=3.0),
    ]
    assert all(v.justification for v in justify_identifies(sessions))


def test_identifies_the_gateway_counted_but_no_session_explains_fail() -> None:
    deliveries, sessions = healthy()
    report = build_report(deliveries, sessions, stats(identifies=4), facts())
    assert not check(report, "every identify justified")


def test_identify_window_violation_fails() -> None:
    deliveries, sessions = healthy()
    report = build_report(deliveries, sessions, stats(identify_violations=1), facts())
    assert not check(report, "no identify-window violations")


def test_identifies_beyond_the_session_start_limit_fail() -> None:
    deliveries, sessions = healthy()
    report = build_report(
        deliveries, sessions, stats(identifies=2, remaining=-1), facts(session_start_limit=1)
    )
    assert not check(report, "identifies within session_start_limit")


def test_a_shard_not_connected_at_the_end_fails() -> None:
    deliveries, sessions = healthy()
    report = build_report(
        deliveries, sessions, stats(), facts(shard_states={0: "connected", 1: "reconnecting"})
    )
    assert not check(report, "every shard connected again")
    assert "[1]" in report.render()


def test_a_shard_without_a_live_gateway_session_fails() -> None:
    deliveries, _ = healthy()
    sessions = [session(0, "a" * 32, 10), session(1, "b" * 32, 7, ended_reason="client_close")]
    report = build_report(deliveries, sessions, stats(), facts())
    assert not check(report, "every shard connected again")


def test_supervisor_exit_fails() -> None:
    deliveries, sessions = healthy()
    report = build_report(deliveries, sessions, stats(), facts(supervisor_exit_code=1))
    assert not check(report, "supervisor never exited")


def test_a_bad_deploy_the_canary_did_not_refuse_fails() -> None:
    deliveries, sessions = healthy()
    report = build_report(
        deliveries, sessions, stats(), facts(bad_deploys=2, bad_deploys_refused=1)
    )
    assert not check(report, "bad deploys refused")
    report = build_report(
        deliveries, sessions, stats(), facts(bad_deploys=2, bad_deploys_refused=2)
    )
    assert check(report, "bad deploys refused")


def test_supervisor_memory_growth_beyond_the_limit_fails() -> None:
    deliveries, sessions = healthy()
    report = build_report(
        deliveries, sessions, stats(), facts(rss_start_bytes=60 * MIB, rss_end_bytes=400 * MIB)
    )
    assert not check(report, "supervisor memory bounded")


def test_records_naming_an_unknown_session_fail_the_gap_check() -> None:
    deliveries, sessions = healthy()
    deliveries.append(Delivery(0, 1, "READY", "z" * 32))
    report = build_report(deliveries, sessions, stats(), facts())
    assert report.unattributed == 1
    assert not check(report, "no gaps in any session")


def test_resumed_takes_a_seq_the_handler_need_not_see() -> None:
    deliveries = stream(0, "a" * 32, [1, 2, 3, 5]) + stream(1, "b" * 32, range(1, 8))
    sessions = [session(0, "a" * 32, 5, resumed_seqs=(4,)), session(1, "b" * 32, 7)]
    report = build_report(deliveries, sessions, stats(), facts())
    assert report.gaps == 0


def test_report_fits_one_screen() -> None:
    deliveries, sessions = healthy()
    many_faults = {f"fault_kind_{i}": i for i in range(25)}
    text = build_report(deliveries, sessions, stats(), facts(faults=many_faults)).render()
    assert len(text.splitlines()) <= 30
    assert all(len(line) <= 120 for line in text.splitlines())
    assert text.rstrip().endswith("RESULT: PASS")


def test_parse_jsonl_recovers_the_record_after_a_torn_line() -> None:
    whole = json.dumps({"shard": 0, "seq": 7, "t": "MESSAGE_CREATE", "d": {}})
    lines = [
        json.dumps({"shard": 0, "seq": 1, "t": "READY", "d": {"session_id": "s1"}}),
        '{"shard": 0, "seq": 6, "t": "MESS' + whole,
        '{"shard": 0, "se',
    ]
    deliveries, bad = parse_jsonl(lines)
    assert [d.seq for d in deliveries] == [1, 7]
    assert deliveries[0].session_id == "s1"
    assert bad == 2


def test_parse_sessions_reads_the_fake_gateway_listing() -> None:
    docs = [
        {
            "shard_id": 3,
            "session_id": "abc",
            "first_seq": 1,
            "last_seq_sent": 40,
            "state": "active",
            "ended_reason": None,
            "invalidated_by_server": False,
        }
    ]
    (s,) = parse_sessions(docs)
    assert (s.shard_id, s.last_seq_sent, s.live, s.server_ended) == (3, 40, True, False)


def test_an_unclean_stop_fails() -> None:
    deliveries, sessions = healthy()
    for bad in ({"stop_exit_code": 1}, {"leftover_processes": 2}, {"stop_exit_code": None}):
        report = build_report(deliveries, sessions, stats(), facts(**bad))
        assert not check(report, "clean stop on SIGTERM"), bad

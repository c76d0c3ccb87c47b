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
from tests.chaos.poisoncheck import (
    DeadLetterRec,
    InjectedPoison,
    dead_by_session,
    make_marker,
    parse_dead_letters,
    reason_of,
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


POISON = make_marker(1, "crash")


def poisoned(
    sightings: int = 2, letters: Iterable[DeadLetterRec] | None = None
) -> tuple[list[Delivery], list[FakeSession], list[DeadLetterRec]]:
    """Shard 0 choked on seq 5 (its sightings), which went to the dead letters with 6, its
    batch-mate; the session was identified at t=100, the letters written at t=130."""
    seen = [Delivery(0, 5, "MESSAGE_CREATE", poison=POISON)] * sightings
    deliveries = stream(0, "a" * 32, [1, 2, 3, 4]) + seen
    deliveries += [Delivery(0, s, "MESSAGE_CREATE") for s in (7, 8)]
    deliveries += stream(1, "b" * 32, range(1, 8))
    sessions = [session(0, "a" * 32, 8, at=100.0), session(1, "b" * 32, 7, at=100.0)]
    if letters is None:
        letters = [
            DeadLetterRec(0, 5, "MESSAGE_CREATE", "crash", 130.0, POISON),
            DeadLetterRec(0, 6, "MESSAGE_CREATE", "crash", 130.0),
        ]
    return deliveries, sessions, list(letters)


def poison_report(
    deliveries: list[Delivery],
    sessions: list[FakeSession],
    letters: list[DeadLetterRec],
    poison: InjectedPoison | None = None,
) -> Report:
    poison = poison or InjectedPoison(POISON, 0, "crash")
    return build_report(
        deliveries, sessions, stats(), facts(poisons=(poison,)), dead_letters=letters
    )


def test_a_dead_lettered_seq_is_not_a_gap_but_an_undead_lettered_missing_seq_still_is() -> None:
    deliveries, sessions, letters = poisoned()
    report = poison_report(deliveries, sessions, letters)
    assert report.passed, report.render()
    assert report.gaps == 0
    assert report.sessions[0].dead_lettered == (5, 6)
    assert "dead letters (not gaps): 2: shard 0 seq 5 crash (chaos-poison-1-crash)" in (
        report.render()
    )
    report = poison_report(deliveries, sessions, letters[:1])
    assert report.gaps == 1
    assert not check(report, "no gaps in any session")
    assert "missing 6" in report.render()


def test_a_poison_sighting_is_not_a_delivery() -> None:
    deliveries, sessions, _ = poisoned()
    report = build_report(deliveries, sessions, stats(), facts())
    assert report.gaps == 2  # without the dead letters, 5 and 6 are simply lost


def test_a_poison_event_never_dead_lettered_fails() -> None:
    deliveries, sessions, letters = poisoned()
    report = poison_report(deliveries, sessions, letters[1:])
    assert not check(report, "poison events dead-lettered")
    assert "chaos-poison-1-crash dead-lettered 0 times" in report.render()


def test_a_poison_event_dead_lettered_twice_fails() -> None:
    deliveries, sessions, letters = poisoned()
    report = poison_report(deliveries, sessions, [*letters, letters[0]])
    assert not check(report, "poison events dead-lettered")


def test_a_poison_dead_lettered_for_the_wrong_shard_or_reason_fails() -> None:
    deliveries, sessions, letters = poisoned()
    for wrong in (InjectedPoison(POISON, 1, "crash"), InjectedPoison(POISON, 0, "hang")):
        report = poison_report(deliveries, sessions, letters, wrong)
        assert not check(report, "poison events dead-lettered"), wrong


def test_a_poison_handed_to_the_handler_other_than_twice_fails() -> None:
    for sightings in (1, 3):
        deliveries, sessions, letters = poisoned(sightings)
        report = poison_report(deliveries, sessions, letters)
        assert not check(report, "poison events dead-lettered"), sightings
        assert f"handed to the handler {sightings} times" in report.render()


def test_a_dead_letter_at_another_seq_than_the_handler_choked_on_fails() -> None:
    deliveries, sessions, _ = poisoned()
    letters = [DeadLetterRec(0, 6, "MESSAGE_CREATE", "crash", 130.0, POISON)]
    report = poison_report(deliveries, sessions, letters)
    assert not check(report, "poison events dead-lettered")


def test_a_dead_letter_beside_no_poison_event_fails() -> None:
    deliveries, sessions, letters = poisoned()
    stray = DeadLetterRec(1, 3, "MESSAGE_CREATE", "crash", 130.0)
    report = poison_report(deliveries, sessions, [*letters, stray])
    assert not check(report, "poison events dead-lettered")
    assert "beside no poison event: shard 1 seq 3" in report.render()


def test_a_dead_letter_belongs_to_the_session_live_when_it_was_written() -> None:
    sessions = [session(0, "old", 9, at=100.0), session(0, "new", 9, at=200.0)]
    letters = [
        DeadLetterRec(0, 5, "X", "crash", 150.0),
        DeadLetterRec(0, 7, "X", "hang", 250.0),
        DeadLetterRec(0, 1, "X", "hang", 50.0),
    ]
    assert dead_by_session(letters, sessions) == {"old": {5}, "new": {7}}


def test_parse_dead_letters_reads_the_supervisor_file() -> None:
    line = {
        "shard_id": 2,
        "seq": 40,
        "t": "MESSAGE_CREATE",
        "d": {"content": make_marker(3, "hang")},
        "reason": "hang",
        "stack": "...",
        "at": 1.5,
    }
    plain = line | {"d": {"content": "hello"}, "seq": 41}
    (a, b) = parse_dead_letters([json.dumps(line), '{"torn', json.dumps(plain)])
    assert a == DeadLetterRec(2, 40, "MESSAGE_CREATE", "hang", 1.5, "chaos-poison-3-hang")
    assert b.marker is None and b.seq == 41
    assert reason_of("chaos-poison-3-hang") == "hang" and reason_of("chaos-poison-3") is None

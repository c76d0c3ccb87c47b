"""The close-code table: every code in the protocol reference, and op 7 / op 9 / zombie."""

from __future__ import annotations

from typing import Any

import pytest

from workers.decisions import (
    Next,
    Reason,
    StopKind,
    decide_bad_payload,
    decide_close,
    decide_invalid_session,
    decide_permit_refused,
    decide_reconnect_delay,
    decide_reconnect_request,
    decide_server_close,
    decide_stop,
    decide_timeout,
    decide_zombie,
    hello_interval_refused,
    is_quick_reconnect,
    keeps_session,
    should_skip_event,
)
from workers.protocol import RESUMABLE_CLIENT_CLOSE, CloseCode

R, ID, S = Next.RESUME, Next.IDENTIFY, Next.STOP

# code: (next with a session held, next without one)
CLOSE_TABLE: dict[int | None, tuple[Next, Next]] = {
    None: (R, ID),  # no close frame at all
    1000: (R, ID),  # a 1000 we did not send is abnormal
    1001: (R, ID),
    1006: (R, ID),
    1011: (R, ID),
    4000: (R, ID),
    4001: (R, ID),
    4002: (R, ID),
    4003: (ID, ID),
    4004: (S, S),
    4005: (R, ID),
    4006: (R, ID),  # not in the main gateway table: like any unknown code
    4007: (ID, ID),
    4008: (R, ID),
    4009: (ID, ID),
    4010: (S, S),
    4011: (S, S),
    4012: (S, S),
    4013: (S, S),
    4014: (S, S),
    4999: (R, ID),
}


def test_table_covers_every_close_code_of_the_protocol() -> None:
    assert {int(c) for c in CloseCode} <= set(CLOSE_TABLE)


@pytest.mark.parametrize(
    ("code", "expected"), sorted(CLOSE_TABLE.items(), key=lambda kv: kv[0] or 0)
)
def test_close_code_decides_resume_identify_or_stop(
    code: int | None, expected: tuple[Next, Next]
) -> None:
    with_session, without = expected
    assert decide_close(code, has_session=True).next is with_session
    assert decide_close(code, has_session=False).next is without


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
def test_fatal_codes_stop_with_a_reason_naming_the_problem(code: int) -> None:
    action = decide_close(code, has_session=True)
    assert action.next is Next.STOP
    assert action.close_code == code
    assert action.detail


def test_server_close_reports_reason_close_code_and_the_code() -> None:
    action = decide_close(4000, has_session=True)
    assert action.reason is Reason.CLOSE_CODE
    assert action.close_code == 4000


def test_no_close_frame_is_a_network_reason() -> None:
    assert decide_close(None, has_session=True).reason is Reason.NETWORK


def test_op9_true_resumes_on_a_session_keeping_close() -> None:
    action = decide_invalid_session(resumable=True, has_session=True)
    assert action.next is Next.RESUME
    assert action.reason is Reason.OP9
    assert action.send_close is not None and keeps_session(action.send_close)


def test_op9_false_identifies_after_one_to_five_seconds() -> None:
    action = decide_invalid_session(resumable=False, has_session=True)
    assert action.next is Next.IDENTIFY
    assert action.min_delay == (1.0, 5.0)


def test_op9_true_without_a_session_identifies() -> None:
    assert decide_invalid_session(resumable=True, has_session=False).next is Next.IDENTIFY


def test_op7_resumes_and_keeps_the_session() -> None:
    action = decide_reconnect_request(has_session=True)
    assert action.next is Next.RESUME
    assert action.reason is Reason.OP7
    assert action.send_close == RESUMABLE_CLIENT_CLOSE


def test_zombie_resumes_never_identifies_when_a_session_exists() -> None:
    action = decide_zombie(has_session=True)
    assert action.next is Next.RESUME
    assert action.send_close is not None and keeps_session(action.send_close)


def test_bad_payload_and_timeout_keep_the_session() -> None:
    for action in (decide_bad_payload(True, "x"), decide_timeout(True, "x")):
        assert action.next is Next.RESUME
        assert action.send_close is not None and keeps_session(action.send_close)


@pytest.mark.parametrize(
    ("code", "keeps"), [(1000, False), (1001, False), (4000, True), (3000, True)]
)
def test_only_1000_and_1001_end_the_session(code: int, keeps: bool) -> None:
    assert keeps_session(code) is keeps


# ---------------------------------------------------------------- the shard's own rules

# failures in a row at one point of the replay -> skip the event there
SKIP_TABLE = {1: False, 2: False, 3: True, 4: True}


@pytest.mark.parametrize(("failures", "skip"), sorted(SKIP_TABLE.items()))
def test_an_event_is_skipped_only_after_three_failures_at_the_same_point(
    failures: int, skip: bool
) -> None:
    assert should_skip_event(failures) is skip


# (code, identifying, rejections before) -> (next, rejections after)
IDENTIFY_REJECT_TABLE: list[tuple[int, bool, int, Next, int]] = [
    (4002, True, 0, R, 1),  # once may be a fluke
    (4002, True, 1, S, 2),  # twice in a row: the payload itself is rejected
    (4001, True, 1, S, 2),
    (4001, False, 1, R, 1),  # not while identifying: says nothing of our IDENTIFY
    (4000, True, 1, R, 1),  # another code: not a rejection
    (4004, True, 0, S, 0),  # fatal anyway
]


@pytest.mark.parametrize(
    ("code", "identifying", "before", "expected", "after"), IDENTIFY_REJECT_TABLE
)
def test_identify_rejected_twice_in_a_row_stops(
    code: int, identifying: bool, before: int, expected: Next, after: int
) -> None:
    action, rejects = decide_server_close(code, True, identifying, before)
    assert (action.next, rejects) == (expected, after)


def test_a_refused_permit_stops_and_ends_the_session() -> None:
    action = decide_permit_refused("daily budget spent")
    assert action.next is Next.STOP
    assert action.send_close == CloseCode.NORMAL
    assert "daily budget spent" in action.detail


STOP_TABLE = {
    StopKind.STOP: (CloseCode.NORMAL, False),
    StopKind.SUSPEND: (RESUMABLE_CLIENT_CLOSE, True),
    StopKind.KILL: (RESUMABLE_CLIENT_CLOSE, True),
}


@pytest.mark.parametrize(("kind", "expected"), list(STOP_TABLE.items()))
def test_only_a_stop_ends_the_session(kind: StopKind, expected: tuple[int, bool]) -> None:
    action = decide_stop(kind)
    code, keeps = expected
    assert action.next is Next.STOP
    assert action.send_close == code
    assert action.send_close is not None and keeps_session(action.send_close) is keeps


# (action, backoff offered, draw) -> delay
DELAY_TABLE: list[tuple[str, Any, float, float, float]] = [
    ("close code: the backoff", decide_close(4000, True), 7.5, 0.5, 7.5),
    ("op 9 true: the backoff", decide_invalid_session(True, True), 7.5, 0.5, 7.5),
    ("op 9 false, low draw: 1 s", decide_invalid_session(False, True), 14.8, 0.0, 1.0),
    ("op 9 false, high draw: about 5 s", decide_invalid_session(False, True), 14.8, 0.999, 4.996),
    ("op 9 false, short backoff: still 1-5 s", decide_invalid_session(False, True), 0.1, 0.5, 3.0),
]


@pytest.mark.parametrize(("why", "action", "backoff", "draw", "delay"), DELAY_TABLE)
def test_reconnect_delay(why: str, action: Any, backoff: float, draw: float, delay: float) -> None:
    assert decide_reconnect_delay(action, backoff, draw) == pytest.approx(delay)


QUICK_TABLE = {
    "op7": (decide_reconnect_request(True), True),
    "zombie": (decide_zombie(True), True),
    "close code": (decide_close(4000, True), False),
    "timeout": (decide_timeout(True, "x"), False),
    "op 9": (decide_invalid_session(True, True), False),
}


@pytest.mark.parametrize(("why", "case"), list(QUICK_TABLE.items()))
def test_only_op7_and_zombie_are_quick_reconnects(why: str, case: tuple[Any, bool]) -> None:
    action, quick = case
    assert is_quick_reconnect(action) is quick


HELLO_TABLE = {
    0: False,
    99: False,
    100: True,
    41_250: True,
    600_000: True,
    600_001: False,
    10**18: False,
}


@pytest.mark.parametrize(("interval_ms", "accepted"), sorted(HELLO_TABLE.items()))
def test_hello_interval_outside_100_ms_to_10_minutes_is_refused(
    interval_ms: int, accepted: bool
) -> None:
    assert (hello_interval_refused(interval_ms) is None) is accepted

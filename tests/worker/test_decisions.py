"""The close-code table: every code in the protocol reference, and op 7 / op 9 / zombie."""

from __future__ import annotations

import pytest

from workers.decisions import (
    Next,
    Reason,
    decide_bad_payload,
    decide_close,
    decide_invalid_session,
    decide_reconnect_request,
    decide_timeout,
    decide_zombie,
    keeps_session,
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

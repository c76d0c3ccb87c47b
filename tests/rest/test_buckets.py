"""Table tests of the pure rate-limit decisions."""

from __future__ import annotations

import pytest

from workers.rest.buckets import (
    BACKOFF_CAP_S,
    GLOBAL_WINDOW_S,
    LEASE_S,
    RATE_LIMIT_RETRIES,
    SERVER_RETRIES,
    BucketState,
    GlobalLedger,
    Headers,
    InvalidRequests,
    Outcome,
    Scope,
    backoff,
    decide,
    learn,
    parse_headers,
    spend,
    wait_before_send,
)


@pytest.mark.parametrize(
    ("state", "now", "wait"),
    [
        (None, 10.0, 0.0),  # unknown bucket: go (one at a time, by the caller)
        (BucketState(5, 1, 12.0), 10.0, 0.0),  # remaining left
        (BucketState(5, 0, 12.0), 10.0, 2.0),  # exhausted: wait for the reset
        (BucketState(5, 0, 12.0), 12.0, 0.0),  # reset reached
        (BucketState(5, 0, 9.0), 10.0, 0.0),  # reset in the past
    ],
)
def test_wait_before_send_respects_remaining_and_reset(
    state: BucketState | None, now: float, wait: float
) -> None:
    assert wait_before_send(state, now) == pytest.approx(wait)


def test_spend_after_reset_starts_a_new_window() -> None:
    state = BucketState(5, 0, 9.0)
    spend(state, 10.0)
    assert state.remaining == 4


def test_spend_counts_down_within_the_window() -> None:
    state = BucketState(5, 2, 12.0)
    spend(state, 10.0)
    spend(state, 10.0)
    assert state.remaining == 0 and wait_before_send(state, 10.0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, Headers()),
        (
            {
                "X-RateLimit-Bucket": "abc",
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "4",
                "X-RateLimit-Reset-After": "1.25",
            },
            Headers(bucket="abc", limit=5, remaining=4, reset_after=1.25),
        ),
        (
            {"X-RateLimit-Scope": "shared", "Retry-After": "3", "X-RateLimit-Global": "true"},
            Headers(scope=Scope.SHARED, retry_after=3.0, is_global=True),
        ),
        # garbage never breaks the client: ignored
        (
            {
                "X-RateLimit-Limit": "many",
                "X-RateLimit-Reset-After": "nan",
                "X-RateLimit-Scope": "x",
            },
            Headers(),
        ),
        ({"X-RateLimit-Remaining": "-1"}, Headers()),
    ],
)
def test_parse_headers_reads_discord_headers_defensively(
    raw: dict[str, str], expected: Headers
) -> None:
    assert parse_headers(raw) == expected


def test_learn_needs_limit_remaining_and_reset() -> None:
    assert learn(Headers(limit=5, remaining=4), 0.0) is None
    assert learn(Headers(limit=5, remaining=4, reset_after=2.0), 1.0) == BucketState(5, 4, 3.0)


@pytest.mark.parametrize(
    (
        "status",
        "headers",
        "body_retry",
        "body_global",
        "attempt",
        "outcome",
        "delay",
        "scope",
        "invalid",
    ),
    [
        (200, Headers(), None, False, 1, Outcome.DONE, 0.0, None, False),
        (204, Headers(), None, False, 1, Outcome.DONE, 0.0, None, False),
        (400, Headers(), None, False, 1, Outcome.FAIL, 0.0, None, False),
        (401, Headers(), None, False, 1, Outcome.FAIL, 0.0, None, True),
        (403, Headers(), None, False, 1, Outcome.FAIL, 0.0, None, True),
        (404, Headers(), None, False, 1, Outcome.FAIL, 0.0, None, False),
        # 429: the body's retry_after wins over the header
        (
            429,
            Headers(scope=Scope.USER, retry_after=2.0),
            0.5,
            False,
            1,
            Outcome.RETRY,
            0.5,
            Scope.USER,
            True,
        ),
        (429, Headers(retry_after=2.0), None, False, 1, Outcome.RETRY, 2.0, Scope.USER, True),
        (429, Headers(is_global=True), 0.3, True, 1, Outcome.RETRY, 0.3, Scope.GLOBAL, True),
        (429, Headers(), 0.3, True, 1, Outcome.RETRY, 0.3, Scope.GLOBAL, True),
        # shared-scope 429s do not count toward the invalid-request limit
        (429, Headers(scope=Scope.SHARED), 1.0, False, 1, Outcome.RETRY, 1.0, Scope.SHARED, False),
        (
            429,
            Headers(scope=Scope.USER),
            1.0,
            False,
            RATE_LIMIT_RETRIES + 1,
            Outcome.FAIL,
            0.0,
            Scope.USER,
            True,
        ),
        (500, Headers(), None, False, 1, Outcome.RETRY, 0.5, None, False),
        (502, Headers(), None, False, 2, Outcome.RETRY, 1.0, None, False),
        (503, Headers(), None, False, SERVER_RETRIES + 1, Outcome.FAIL, 0.0, None, False),
        (501, Headers(), None, False, 1, Outcome.FAIL, 0.0, None, False),
    ],
)
def test_decide(
    status: int,
    headers: Headers,
    body_retry: float | None,
    body_global: bool,
    attempt: int,
    outcome: Outcome,
    delay: float,
    scope: Scope | None,
    invalid: bool,
) -> None:
    d = decide(status, headers, body_retry, body_global, attempt)
    assert (d.outcome, d.scope, d.counts_invalid) == (outcome, scope, invalid)
    assert d.delay == pytest.approx(delay)


def test_backoff_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff(50) == BACKOFF_CAP_S


def test_invalid_requests_refuse_at_the_limit_until_the_oldest_ages_out() -> None:
    guard = InvalidRequests(3, window_s=600.0)
    for t in (0.0, 1.0, 2.0):
        assert guard.refuse_for(t) == 0.0
        guard.add(t)
    assert guard.refuse_for(3.0) == pytest.approx(597.0)
    assert guard.refuse_for(600.0) == 0.0  # the answer at 0.0 left the window
    assert guard.count(600.0) == 2


def test_invalid_request_limit_must_stay_below_discords() -> None:
    with pytest.raises(ValueError, match=r"1\.\.10000"):
        InvalidRequests(10_001)


def test_global_ledger_grants_at_most_limit_per_window() -> None:
    ledger = GlobalLedger(10)
    assert ledger.take(0.0, 4) == 4
    assert ledger.take(0.5, 10) == 6
    assert ledger.take(0.9, 1) == 0
    assert ledger.next_free_in(0.9) == pytest.approx(GLOBAL_WINDOW_S - 0.9)
    assert ledger.take(GLOBAL_WINDOW_S, 10) == 4  # the first grant left the window
    assert ledger.take(0.5 + GLOBAL_WINDOW_S, 10) == 6


def test_global_window_covers_a_second_plus_the_lease() -> None:
    # A token sent LEASE_S after its grant must still count when the next second's grants
    # go out: otherwise two windows' worth could reach Discord within one second.
    assert GLOBAL_WINDOW_S > 1.0 + LEASE_S

"""What the decide functions report besides the next step: the reason (it labels the
reconnect metrics and logs) and the minimum wait. Each test kills a mutant of
workers/decisions.py that the table tests let through (`make mutate`)."""

from __future__ import annotations

import dataclasses

import pytest

from workers import decisions
from workers.decisions import Reason


@pytest.mark.parametrize("code", [1000, 1001, 1005, 4000])
def test_a_close_frame_below_or_above_1006_is_a_close_code_reason(code: int) -> None:
    assert decisions.decide_close(code, has_session=True).reason is Reason.CLOSE_CODE


@pytest.mark.parametrize("code", [None, 1006])
def test_no_close_frame_or_1006_is_a_network_reason(code: int | None) -> None:
    # 1006 arrives as a plain int from the socket, never as the CloseCode member
    assert decisions.decide_close(code, has_session=True).reason is Reason.NETWORK


@pytest.mark.parametrize(
    "action",
    [
        decisions.decide_close(4000, has_session=True),
        decisions.decide_close(None, has_session=False),
        decisions.decide_reconnect_request(has_session=True),
        decisions.decide_invalid_session(resumable=True, has_session=True),
        decisions.decide_zombie(has_session=True),
        decisions.decide_network(has_session=True, detail="reset"),
    ],
)
def test_only_a_non_resumable_op9_imposes_a_wait_before_reconnecting(
    action: decisions.Action,
) -> None:
    assert action.min_delay == (0.0, 0.0)


def test_an_action_cannot_be_changed_after_the_decision() -> None:
    action = decisions.decide_close(4000, has_session=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.next = decisions.Next.STOP  # type: ignore[misc]

"""Protocol decisions as pure functions: what a shard does after a close code, an op 7,
an op 9, a zombie or a bad payload. The shard's I/O code only carries them out.

The table follows the protocol reference (section 5.5): fatal codes stop the shard and are
never retried; 4003/4007/4009 need a new session; everything else (including 1000/1001
sent by the server, 1006 with no close frame, and unknown codes) tries to resume, because
a wrong "resume" guess costs one op 9 while a wrong "identify" guess costs a session start.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from workers.protocol import RESUMABLE_CLIENT_CLOSE, CloseCode


class Next(enum.Enum):
    RESUME = "resume"
    IDENTIFY = "identify"
    STOP = "stop"


class Reason(enum.StrEnum):
    """The closed set reported in ``ipc.Reconnecting.reason``."""

    CLOSE_CODE = "close_code"
    ZOMBIE = "zombie"
    OP7 = "op7"
    OP9 = "op9"
    NETWORK = "network"
    BAD_PAYLOAD = "bad_payload"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Action:
    next: Next
    reason: Reason
    close_code: int | None = None  # the code that caused it (server close), if any
    # the close code *we* send when we end the connection for this action (None: the
    # server already closed it)
    send_close: int | None = None
    # lower bound on the wait before reconnecting (op 9 false: 1-5 s)
    min_delay: tuple[float, float] = (0.0, 0.0)
    detail: str = ""


FATAL_CLOSE_CODES: Final = frozenset(
    {
        CloseCode.AUTHENTICATION_FAILED,
        CloseCode.INVALID_SHARD,
        CloseCode.SHARDING_REQUIRED,
        CloseCode.INVALID_API_VERSION,
        CloseCode.INVALID_INTENTS,
        CloseCode.DISALLOWED_INTENTS,
    }
)

NEW_SESSION_CLOSE_CODES: Final = frozenset(
    {CloseCode.NOT_AUTHENTICATED, CloseCode.INVALID_SEQ, CloseCode.SESSION_TIMED_OUT}
)

FATAL_REASONS: Final[dict[int, str]] = {
    CloseCode.AUTHENTICATION_FAILED: "authentication failed: the token is wrong or was reset",
    CloseCode.INVALID_SHARD: "invalid shard: the shard id or count is not allowed; re-plan",
    CloseCode.SHARDING_REQUIRED: "sharding required: too many guilds per shard; use more shards",
    CloseCode.INVALID_API_VERSION: "invalid API version",
    CloseCode.INVALID_INTENTS: "invalid intents: undefined bits in the intents mask",
    CloseCode.DISALLOWED_INTENTS: "disallowed intents: enable the privileged intents in the "
    "Developer Portal or drop them",
}


def _resume_or_identify(has_session: bool) -> Next:
    return Next.RESUME if has_session else Next.IDENTIFY


def decide_close(code: int | None, has_session: bool) -> Action:
    """The server closed the connection with ``code`` (None: no close frame at all)."""
    if code is None or code == CloseCode.ABNORMAL:
        return Action(_resume_or_identify(has_session), Reason.NETWORK, code)
    if code in FATAL_CLOSE_CODES:
        return Action(Next.STOP, Reason.CLOSE_CODE, code, detail=FATAL_REASONS[code])
    if code in NEW_SESSION_CLOSE_CODES:
        return Action(Next.IDENTIFY, Reason.CLOSE_CODE, code)
    # 4005 (already authenticated), 4008 (rate limited), 4000-4002, 1000/1001/1011 and
    # unknown codes: the session may well be alive, so try it; op 9 false falls back.
    return Action(_resume_or_identify(has_session), Reason.CLOSE_CODE, code)


def decide_invalid_session(resumable: bool, has_session: bool) -> Action:
    """Op 9. ``d=false``: the session is gone; wait a random 1-5 s, then identify anew."""
    if resumable and has_session:
        return Action(Next.RESUME, Reason.OP9, send_close=RESUMABLE_CLIENT_CLOSE)
    return Action(Next.IDENTIFY, Reason.OP9, send_close=CloseCode.NORMAL, min_delay=(1.0, 5.0))


def decide_reconnect_request(has_session: bool) -> Action:
    """Op 7, which may even arrive before Hello."""
    return Action(_resume_or_identify(has_session), Reason.OP7, send_close=RESUMABLE_CLIENT_CLOSE)


def decide_zombie(has_session: bool, close_code: int = RESUMABLE_CLIENT_CLOSE) -> Action:
    """No ACK and nothing else received since the previous beat: resume, never identify."""
    return Action(_resume_or_identify(has_session), Reason.ZOMBIE, send_close=close_code)


def decide_bad_payload(has_session: bool, detail: str) -> Action:
    """Corrupt compression, malformed JSON or an oversized message: drop this connection
    but keep the session."""
    return Action(
        _resume_or_identify(has_session),
        Reason.BAD_PAYLOAD,
        send_close=RESUMABLE_CLIENT_CLOSE,
        detail=detail,
    )


def decide_timeout(has_session: bool, detail: str) -> Action:
    """No Hello, READY or RESUMED in time."""
    return Action(
        _resume_or_identify(has_session),
        Reason.TIMEOUT,
        send_close=RESUMABLE_CLIENT_CLOSE,
        detail=detail,
    )


def decide_network(has_session: bool, detail: str) -> Action:
    """Connect failure or a dropped TCP connection."""
    return Action(_resume_or_identify(has_session), Reason.NETWORK, detail=detail)


def keeps_session(close_code: int) -> bool:
    """Whether a close *we* send leaves the session resumable."""
    return close_code not in (CloseCode.NORMAL, CloseCode.GOING_AWAY)

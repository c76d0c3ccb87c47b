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

from workers.ipc import Reason
from workers.protocol import RESUMABLE_CLIENT_CLOSE, CloseCode

__all__ = ["Action", "Next", "Reason", "StopKind"]


class Next(enum.Enum):
    RESUME = "resume"
    IDENTIFY = "identify"
    STOP = "stop"


class StopKind(enum.Enum):
    """Why a shard was asked to stop: the value is what ``ShardStopped.reason`` says."""

    STOP = "stopped"
    SUSPEND = "suspended"
    KILL = "killed"


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


# ---------------------------------------------------------------- the shard's own rules

# Bad payloads at the same (session, seq) before the event there is skipped. More than
# two, so that two unrelated faults in a row (a cut, then corrupt data) never lose an event.
SKIP_AFTER_FAILURES: Final = 3

# Close codes that say the gateway could not read what we sent.
IDENTIFY_REJECTED: Final = frozenset({CloseCode.UNKNOWN_OPCODE, CloseCode.DECODE_ERROR})

# Rejections of our IDENTIFY in a row after which identifying again is hopeless.
IDENTIFY_REJECTS_TO_STOP: Final = 2

# A HELLO's ``heartbeat_interval`` (ms) outside this range is refused. Discord sends
# 41 250. Below 100 ms a beat is due before an ACK from a distant gateway can return, so
# every connection would look like a zombie (the fake gateway of the tests beats every
# 200 ms, still above it). Above 10 minutes zombie detection is in effect switched off:
# a dead connection would go unnoticed for longer than a session stays resumable.
MIN_HEARTBEAT_INTERVAL_MS: Final = 100
MAX_HEARTBEAT_INTERVAL_MS: Final = 600_000

# How far past the last seq one dispatch may jump. Discord numbers every dispatch of a
# session one by one and a resume replays from our seq + 1, so a real gap is 1; other
# servers may leave small gaps. Past the bound the jump is a bad payload: accepting it
# would make every real event up to it look like an already-received replay and drop it.
MAX_SEQ_JUMP: Final = 10_000


def should_skip_event(failures_in_a_row: int) -> bool:
    """The same point of the replay failed this many times in a row: the event there can
    never be taken (too large, bad JSON, corrupt, an invalid seq) and resuming would loop
    on it forever, so resume past it (logged and counted, never silent)."""
    return failures_in_a_row >= SKIP_AFTER_FAILURES


def decide_server_close(
    code: int | None, has_session: bool, identifying: bool, rejects_before: int
) -> tuple[Action, int]:
    """A server close, counting rejections of our IDENTIFY (4001/4002 while identifying):
    returns the action and the new count of rejections in a row. Twice in a row stops the
    shard: the gateway rejects the very payload we send, and sending it again can only
    loop (and spend identify budget)."""
    action = decide_close(code, has_session)
    if not (identifying and code in IDENTIFY_REJECTED):
        return action, rejects_before
    rejects = rejects_before + 1
    if rejects >= IDENTIFY_REJECTS_TO_STOP:
        action = Action(
            Next.STOP,
            Reason.CLOSE_CODE,
            close_code=code,
            detail=f"gateway rejected our identify twice in a row (close {code})",
        )
    return action, rejects


def decide_permit_refused(reason: str) -> Action:
    """The identify budget refused us (e.g. the daily session starts are spent): waiting
    cannot help, so the shard ends its session and stops."""
    return Action(
        Next.STOP,
        Reason.CLOSE_CODE,
        send_close=CloseCode.NORMAL,
        detail=f"identify refused: {reason}",
    )


def decide_stop(kind: StopKind) -> Action:
    """A requested stop ends the session (1000); suspend and kill keep it resumable."""
    return Action(
        Next.STOP,
        Reason.CLOSE_CODE,
        send_close=CloseCode.NORMAL if kind is StopKind.STOP else RESUMABLE_CLIENT_CLOSE,
        detail=kind.value,
    )


def is_quick_reconnect(action: Action) -> bool:
    """The server asked us to go (op 7) or the peer went silent (zombie): no failure of
    ours, so a connection that worked may come back at once (see ``Backoff``)."""
    return action.reason is Reason.OP7 or action.reason is Reason.ZOMBIE


def decide_reconnect_delay(action: Action, backoff_s: float, draw: float) -> float:
    """Seconds to wait before the next connection. ``backoff_s``: what the backoff offers
    for this disconnect; ``draw``: a uniform random number in [0, 1). An action with its
    own wait (op 9 false: Discord's random 1-5 s) takes that wait instead of the backoff,
    which after an outage can be far longer than a healthy gateway asks for."""
    low, high = action.min_delay
    if high > 0:
        return low + (high - low) * draw
    return backoff_s


def hello_interval_refused(interval_ms: int) -> str | None:
    """Why a HELLO's heartbeat interval is refused (None: it is sane)."""
    if interval_ms < MIN_HEARTBEAT_INTERVAL_MS:
        return f"heartbeat_interval {interval_ms} ms is below {MIN_HEARTBEAT_INTERVAL_MS} ms"
    if interval_ms > MAX_HEARTBEAT_INTERVAL_MS:
        return f"heartbeat_interval {interval_ms} ms is above {MAX_HEARTBEAT_INTERVAL_MS} ms"
    return None

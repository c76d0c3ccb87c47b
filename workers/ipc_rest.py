"""The REST-limit messages of the IPC vocabulary (issue 14), re-exported by
``workers.ipc``: import them from there."""

from __future__ import annotations

import msgspec

# ---------------------------------------------------------------- REST limits (issue 14)
# The supervisor is the shared ledger of the REST limits of the token: it grants slices of
# the global limit, and hands the ownership of a rate-limit key (a channel, a guild, a
# webhook) to one worker at a time, with the state of its buckets.


class RestBucket(msgspec.Struct, frozen=True):
    """One Discord bucket's state, with the reset relative to when it was written."""

    bucket: str
    limit: int
    remaining: int
    reset_after_s: float


class RestKeyState(msgspec.Struct, frozen=True):
    """What the owner of a key knows: its buckets, and which bucket each route uses."""

    buckets: list[RestBucket] = []
    routes: dict[str, str] = {}


class RestGlobalAsk(msgspec.Struct, tag="rest_global_ask", kw_only=True):
    """worker -> supervisor: ``want`` tokens of the global limit, please."""

    gen: int
    nonce: int
    want: int


class RestGlobalGrant(msgspec.Struct, tag="rest_global_grant", kw_only=True):
    """supervisor -> worker: ``tokens`` granted ``waited_s`` after the ask arrived; each is
    good for ``workers.rest.buckets.LEASE_S`` from the grant."""

    gen: int
    nonce: int
    tokens: int
    waited_s: float


class RestClaim(msgspec.Struct, tag="rest_claim", kw_only=True):
    """worker -> supervisor: this worker wants to send on ``key``."""

    gen: int
    key: str


class RestOwned(msgspec.Struct, tag="rest_owned", kw_only=True):
    """supervisor -> worker: ``key`` is yours, with what the previous owner knew."""

    gen: int
    key: str
    state: RestKeyState | None = None


class RestYield(msgspec.Struct, tag="rest_yield", kw_only=True):
    """supervisor -> worker: another worker waits for ``key``; release it after the
    request in flight."""

    gen: int
    key: str


class RestRelease(msgspec.Struct, tag="rest_release", kw_only=True):
    """worker -> supervisor: ``key`` is no longer ours; here is its state."""

    gen: int
    key: str
    state: RestKeyState


class RestRouteCount(msgspec.Struct, frozen=True):
    route: str  # "METHOD /template", never ids or tokens
    status: int
    count: int


class RestStats(msgspec.Struct, tag="rest_stats", kw_only=True):
    """worker -> supervisor, about once a second while REST is used: deltas, and the
    invalid-request count of the last 10 minutes as a gauge."""

    gen: int
    requests: list[RestRouteCount] = []
    rate_limited: dict[str, int] = {}  # 429s by scope
    bucket_wait_s: float = 0.0
    bucket_waits: int = 0
    invalid_requests: int = 0
    refused: int = 0


RestToSupervisor = (RestGlobalAsk, RestClaim, RestRelease)
RestToWorker = (RestGlobalGrant, RestOwned, RestYield)

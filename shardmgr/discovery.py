"""``GET /gateway/bot``: the gateway URL, recommended shard count and session-start budget."""

from __future__ import annotations

import logging
import random
from typing import Final

import aiohttp
import msgspec

from shardmgr.errors import UserError
from shardmgr.identify import SessionStartLimit
from workers.backoff import Backoff
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

log = logging.getLogger(__name__)

USER_AGENT: Final = "DiscordBot (https://github.com/shardmgr/shardmgr, 0.1.0) shardmgr"


class _WireLimit(msgspec.Struct):
    total: int
    remaining: int
    reset_after: int
    max_concurrency: int = 1


class _WireGatewayBot(msgspec.Struct):
    url: str
    shards: int
    session_start_limit: _WireLimit


class GatewayInfo(msgspec.Struct, frozen=True):
    url: str
    recommended_shards: int
    limits: SessionStartLimit


class TokenRejected(UserError):
    def __init__(self) -> None:
        super().__init__(
            "the token was rejected (401 from GET /gateway/bot): check DISCORD_TOKEN or the token "
            "file, it may have been reset"
        )


class DiscoveryFailed(UserError):
    """Discovery gave up after its retries (unreachable API, persistent 5xx, bad body)."""


def _decode(body: bytes) -> GatewayInfo:
    wire = msgspec.json.decode(body, type=_WireGatewayBot)
    lim = wire.session_start_limit
    if wire.shards < 1 or lim.max_concurrency < 1:
        raise msgspec.ValidationError(
            f"shards={wire.shards} max_concurrency={lim.max_concurrency} must be positive"
        )
    return GatewayInfo(
        url=wire.url,
        recommended_shards=wire.shards,
        limits=SessionStartLimit(
            total=lim.total,
            remaining=lim.remaining,
            reset_after_s=lim.reset_after / 1000.0,
            max_concurrency=lim.max_concurrency,
        ),
    )


def _retry_after(resp: aiohttp.ClientResponse, body: bytes) -> float | None:
    """Discord's JSON ``retry_after`` is finer than the ``Retry-After`` header; prefer it."""
    try:
        doc = msgspec.json.decode(body)
        if isinstance(doc, dict) and isinstance(doc.get("retry_after"), (int, float)):
            return max(0.0, float(doc["retry_after"]))
    except msgspec.DecodeError:
        pass
    header = resp.headers.get("Retry-After")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            return None
    return None


async def fetch_gateway_bot(
    api_base: str,
    token: str,
    *,
    clock: Clock = REAL_CLOCK,
    attempts: int = 6,
    backoff_base_s: float = 0.5,
    backoff_cap_s: float = 30.0,
    timeout_s: float = 10.0,
    rng: random.Random | None = None,
) -> GatewayInfo:
    """Fetch with retries: 429 waits ``retry_after``, 5xx and network errors back off
    exponentially with full jitter, 401 fails at once (retrying would only count toward
    Cloudflare's invalid-request ban)."""
    backoff = Backoff(base_s=backoff_base_s, cap_s=backoff_cap_s, clock=clock, rng=rng)
    url = api_base.rstrip("/") + "/gateway/bot"
    headers = {"Authorization": f"Bot {token}", "User-Agent": USER_AGENT}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    last_problem = "no attempt made"
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for attempt in range(attempts):
            delay: float | None = None
            try:
                async with http.get(url, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        try:
                            return _decode(body)
                        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                            last_problem = f"unexpected response body: {exc}"
                    elif resp.status == 401:
                        raise TokenRejected()
                    elif resp.status == 429:
                        delay = _retry_after(resp, body)
                        last_problem = "rate limited (429)"
                    elif resp.status >= 500:
                        last_problem = f"server error {resp.status}"
                    else:
                        text = body[:200].decode(errors="replace")
                        raise DiscoveryFailed(f"GET {url} answered {resp.status}: {text}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last_problem = f"cannot reach {api_base}: {exc.__class__.__name__} {exc}".strip()
            if attempt == attempts - 1:
                break
            if delay is None:
                delay = backoff.next_delay()
            # DEBUG: when discovery finally fails, its one-line error says why; a retry that
            # succeeds is not worth a line.
            log.debug(
                "gateway discovery retry",
                extra=fields(attempt=attempt + 1, problem=last_problem, delay_s=round(delay, 3)),
            )
            await clock.sleep(delay)
    raise DiscoveryFailed(f"discovery failed after {attempts} attempts: {last_problem} ({url})")

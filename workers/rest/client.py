"""``RestClient``: Discord's REST API for handler code, with the token's rate limits shared
by every worker (through the supervisor) and every host (through Redis).

Requests on one owner key (a channel, guild or webhook; see ``routes``) go one at a time,
in call order, from the worker that owns the key: so an unknown bucket never sees two
requests before its headers arrive, a known one is never overdrawn, and messages to a
channel stay in order. ``Remaining``/``Reset-After`` are respected before sending; 429s,
5xx and the invalid-request guard are handled as ``buckets.decide`` says."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import msgspec

from workers import ipc
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields
from workers.rest import errors
from workers.rest.buckets import (
    BucketState,
    InvalidRequests,
    Outcome,
    Scope,
    decide,
    learn,
    parse_headers,
    spend,
    wait_before_send,
)
from workers.rest.files import File
from workers.rest.helpers import RestHelpers
from workers.rest.limiter import Coordinator, GlobalGate
from workers.rest.routes import Route, compile_route

log = logging.getLogger(__name__)

USER_AGENT: Final = "DiscordBot (https://github.com/shardmgr/shardmgr, 0.1) shardmgr"
MAX_KEYS: Final = 4096
REPORT_INTERVAL_S: Final = 1.0
REQUEST_TIMEOUT_S: Final = 30.0


class _RateLimitBody(msgspec.Struct):
    retry_after: float | None = None
    is_global: bool = msgspec.field(default=False, name="global")


_rl_body: Final = msgspec.json.Decoder(_RateLimitBody)
_encoder: Final = msgspec.json.Encoder()


class _Key:
    """One owner key in this worker: its FIFO lock, ownership and bucket knowledge."""

    __slots__ = ("buckets", "local", "lock", "owned", "routes", "yield_asked")

    def __init__(self, local: bool) -> None:
        self.lock = asyncio.Lock()
        self.local = local
        self.owned = local
        self.yield_asked = False
        self.buckets: dict[str, BucketState] = {}
        self.routes: dict[str, str] = {}

    def export(self, now: float) -> ipc.RestKeyState:
        return ipc.RestKeyState(
            buckets=[
                ipc.RestBucket(b, s.limit, s.remaining, max(0.0, s.reset_at - now))
                for b, s in self.buckets.items()
                if s.reset_at > now
            ],
            routes=dict(self.routes),
        )

    def adopt(self, state: ipc.RestKeyState | None, now: float) -> None:
        self.buckets.clear()
        if state is not None:
            for b in state.buckets:
                self.buckets[b.bucket] = BucketState(b.limit, b.remaining, now + b.reset_after_s)
            self.routes.update(state.routes)


class RestStatsCounter:
    """Deltas for ``ipc.RestStats``, reported about once a second."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.rate_limited: collections.Counter[str] = collections.Counter()
        self.wait_s = 0.0
        self.waits = 0
        self.refused = 0

    def take(self, gen: int, invalid: int) -> ipc.RestStats | None:
        if not (self.requests or self.rate_limited or self.waits or self.refused):
            return None
        stats = ipc.RestStats(
            gen=gen,
            requests=[ipc.RestRouteCount(r, s, n) for (r, s), n in self.requests.items()],
            rate_limited=dict(self.rate_limited),
            bucket_wait_s=self.wait_s,
            bucket_waits=self.waits,
            invalid_requests=invalid,
            refused=self.refused,
        )
        self.__init__()  # type: ignore[misc]
        return stats


class RestClient(RestHelpers):
    def __init__(
        self,
        token: str,
        api_base: str,
        coordinator: Coordinator,
        *,
        invalid_limit: int = 2000,
        clock: Clock = REAL_CLOCK,
        gen: int = 0,
        session: aiohttp.ClientSession | None = None,
        report_interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self._auth = f"Bot {token}"
        self.api_base = api_base.rstrip("/")
        self._coordinator = coordinator
        self._clock = clock
        self._gen = gen
        self._session = session
        self._own_session = session is None
        self._gate = GlobalGate(coordinator, clock)
        self._keys: dict[str, _Key] = {}
        self.invalid = InvalidRequests(invalid_limit)
        self.stats = RestStatsCounter()
        self._reporter: asyncio.Task[None] | None = None
        self._report_interval = report_interval_s
        self._closed = False
        coordinator.on_yield(self._on_yield)

    # ---------------------------------------------------------------- the generic call

    async def request(
        self,
        method: str,
        template: str,
        *,
        json: Any = None,
        query: Mapping[str, str | int | bool] | None = None,
        files: list[File] | None = None,
        reason: str | None = None,
        **params: str | int,
    ) -> Any:
        """``await rest.request("POST", "/channels/{channel_id}/messages", channel_id=1,
        json={"content": "hi"})``: the decoded JSON answer (None for 204), or a typed
        ``errors.HTTPError``."""
        if self._closed:
            raise RuntimeError("the REST client is closed")
        route = compile_route(method, template, params)
        data, content_type = self._body(json, files)
        headers = {"Authorization": self._auth, "User-Agent": USER_AGENT}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if reason:
            headers["X-Audit-Log-Reason"] = quote(reason[:512], safe=" ")
        params_q = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (query or {}).items()
        }
        self._ensure_reporter()
        key = self._key(route)
        async with key.lock:
            if not key.owned:
                state = await self._coordinator.claim(route.owner_key)
                key.adopt(state, self._clock.monotonic())
                key.owned = True
            try:
                return await self._send(route, key, headers, data, params_q)
            finally:
                if key.yield_asked and key.owned and not key.local:
                    self._give_back(route.owner_key, key)

    @staticmethod
    def _body(json: Any, files: list[File] | None) -> tuple[Any, str | None]:
        if not files:
            if json is None:
                return None, None
            return _encoder.encode(json), "application/json"
        form = aiohttp.FormData()
        if json is not None:
            form.add_field(
                "payload_json", _encoder.encode(json).decode(), content_type="application/json"
            )
        for i, f in enumerate(files):
            form.add_field(f"files[{i}]", f.data, filename=f.name, content_type=f.content_type)
        return form, None

    async def _send(
        self,
        route: Route,
        key: _Key,
        headers: dict[str, str],
        data: Any,
        query: dict[str, str],
    ) -> Any:
        attempt = 0
        waited_since: float | None = None
        while True:
            now = self._clock.monotonic()
            refuse = self.invalid.refuse_for(now)
            if refuse > 0:
                self.stats.refused += 1
                raise errors.InvalidRequestLimit(
                    0,
                    0,
                    f"{self.invalid.limit} answers with 401/403/429 in the last 10 minutes; "
                    f"sending again in {refuse:.0f} s keeps the IP from a Cloudflare ban",
                    route.label,
                )
            bucket_id = key.routes.get(route.route_id, route.route_id)
            state = key.buckets.get(bucket_id)
            wait = wait_before_send(state, now)
            if wait > 0:
                if waited_since is None:
                    waited_since = now
                await self._clock.sleep(wait)
                continue
            if not route.exempt_global:
                deadline = await self._gate.acquire()
                if self._clock.monotonic() >= deadline:
                    continue  # a busy loop resumed us after the token's lease: it is void
            now = self._clock.monotonic()
            if waited_since is not None:
                self.stats.wait_s += now - waited_since
                self.stats.waits += 1
                waited_since = None
            spend(state, now)
            attempt += 1
            status, answer_headers, body = await self._http(route, headers, data, query)
            now = self._clock.monotonic()
            h = parse_headers(answer_headers)
            if h.bucket:
                if key.routes.get(route.route_id) != h.bucket:
                    key.routes[route.route_id] = h.bucket
                    key.buckets.pop(bucket_id, None)
                bucket_id = h.bucket
            learned = learn(h, now)
            if learned is not None:
                key.buckets[bucket_id] = learned
            retry_after, is_global = None, False
            if status == 429:
                try:
                    rl = _rl_body.decode(body)
                    retry_after, is_global = rl.retry_after, rl.is_global
                except (msgspec.DecodeError, msgspec.ValidationError):
                    pass
            decision = decide(status, h, retry_after, is_global, attempt)
            self.stats.requests[(route.label, status)] += 1
            if decision.scope is not None:
                self.stats.rate_limited[decision.scope.value] += 1
            if decision.counts_invalid:
                self.invalid.add(now)
            if decision.outcome is Outcome.DONE:
                return self._decode(status, body, route)
            if decision.outcome is Outcome.FAIL:
                raise self._error(status, body, route, decision.delay, decision.scope)
            log.warning(
                "REST request retried",
                extra=fields(route=route.label, status=status, delay=round(decision.delay, 3)),
            )
            if decision.scope is Scope.GLOBAL:
                self._gate.pause(decision.delay)
            elif decision.scope is not None:
                limit = learned.limit if learned is not None else 1
                key.buckets[bucket_id] = BucketState(limit, 0, now + decision.delay)
            else:
                await self._clock.sleep(decision.delay)

    async def _http(
        self, route: Route, headers: dict[str, str], data: Any, query: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = self._http_session()
        try:
            async with session.request(
                route.method,
                self.api_base + route.path,
                headers=headers,
                data=data,
                params=query or None,
                allow_redirects=False,
            ) as resp:
                return resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Never retried: a POST that reached Discord before the failure would repeat.
            raise errors.RequestFailed(0, 0, f"{type(exc).__name__}: {exc}", route.label) from None

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            )
        return self._session

    @staticmethod
    def _decode(status: int, body: bytes, route: Route) -> Any:
        if status == 204 or not body:
            return None
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise errors.MalformedResponse(
                status, 0, f"answer is not JSON ({len(body)} bytes)", route.label
            ) from None

    @staticmethod
    def _error(
        status: int, body: bytes, route: Route, retry_after: float, scope: Scope | None
    ) -> errors.HTTPError:
        error = errors.error_for(status, body, route.label)
        if isinstance(error, errors.RateLimited):
            error.retry_after = retry_after
            error.scope = scope.value if scope else ""
        return error

    # ---------------------------------------------------------------- keys and ownership

    def _key(self, route: Route) -> _Key:
        key = self._keys.get(route.owner_key)
        if key is None:
            if len(self._keys) >= MAX_KEYS:
                self._evict()
            key = self._keys[route.owner_key] = _Key(route.local)
        return key

    def _evict(self) -> None:
        """Forget idle keys (the oldest first), giving shared ones back to the ledger."""
        for name in list(self._keys)[: MAX_KEYS // 4]:
            key = self._keys[name]
            if key.lock.locked():
                continue
            if key.owned and not key.local:
                self._give_back(name, key)
            del self._keys[name]

    def _give_back(self, name: str, key: _Key) -> None:
        key.owned = False
        key.yield_asked = False
        self._coordinator.release(name, key.export(self._clock.monotonic()))

    def _on_yield(self, name: str) -> None:
        key = self._keys.get(name)
        if key is None or key.local:
            return
        if key.lock.locked():
            # Given back when the request in flight (or the claim that is about to be
            # granted) is done.
            key.yield_asked = True
        elif key.owned:
            self._give_back(name, key)

    # ---------------------------------------------------------------- stats, lifecycle

    def _ensure_reporter(self) -> None:
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(
                self._report_loop(), name="rest-stats"
            )

    async def _report_loop(self) -> None:
        while True:
            await self._clock.sleep(self._report_interval)
            self.flush_stats()

    def flush_stats(self) -> None:
        stats = self.stats.take(self._gen, self.invalid.count(self._clock.monotonic()))
        if stats is not None:
            self._coordinator.report(stats)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
        self.flush_stats()
        await self._gate.aclose()
        if self._session is not None and self._own_session:
            await self._session.close()

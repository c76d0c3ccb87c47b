"""Calls across workers, from inside one: ``gateway.cluster`` (the caller's side) and the
``CallServer`` that runs calls other workers send here.

A call names a handler method ``rpc_<name>`` (or a built-in ``shardmgr.*`` call) and
carries msgpack-encoded arguments; the supervisor routes it to the worker(s) it targets
and answers one ``CallOutcome`` per worker. Nothing is evaluated and nothing is pickled:
arguments and results are plain msgspec-encodable values under ``call_max_bytes``.
Gateway commands for another worker's shard travel the same path as the built-in
``shardmgr.command`` and are queued on the owning shard's command queue, so they obey
that shard's send limit."""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import msgspec

from workers import ipc
from workers.commands import ShardClosed
from workers.members import MemberWaits
from workers.protocol import MAX_CLIENT_PAYLOAD

if TYPE_CHECKING:
    from workers.shard import Shard

log = logging.getLogger(__name__)

COMMAND: Final = "shardmgr.command"
STATS: Final = "shardmgr.stats"
MEMBERS: Final = "shardmgr.members"
RPC_PREFIX: Final = "rpc_"
# Calls this worker runs at once for others; more are refused (BUSY), never queued.
MAX_SERVING: Final = 256
# The caller's own guard beyond the call's timeout: the supervisor answers every call by
# its deadline, so this fires only when the supervisor itself is gone.
REPLY_GRACE_S: Final = 2.0
_MAX_TIMEOUT_S: Final = 600.0

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.decode


class CallError(enum.StrEnum):
    """Why one worker's part of a call failed (``CallOutcome.reason``, metric label)."""

    TIMEOUT = "timeout"
    WORKER_GONE = "worker_gone"
    OVERSIZED = "oversized"
    GARBAGE = "garbage"
    UNKNOWN_CALL = "unknown_call"
    FAILED = "failed"
    SHARD_UNAVAILABLE = "shard_unavailable"
    NO_TARGET = "no_target"
    BUSY = "busy"
    INVALID = "invalid"
    HOST_UNREACHABLE = "host_unreachable"


class ClusterCallError(Exception):
    """A cluster call failed for the worker it targeted."""

    def __init__(self, message: str, reason: CallError = CallError.FAILED) -> None:
        super().__init__(message)
        self.reason = reason


class ShardUnavailable(ShardClosed):
    """A gateway command's shard is stopped, or its worker did not come back in time."""


class WorkerKey(NamedTuple):
    """A worker of the whole bot: across hosts, workers are keyed by (host, worker)."""

    host: str
    worker: int


@dataclass
class CallResults:
    """``call_all``'s answer: each worker's result, and the errors of those that failed."""

    results: dict[WorkerKey, Any] = field(default_factory=dict)
    errors: dict[WorkerKey, ClusterCallError] = field(default_factory=dict)


class WorkerStats(msgspec.Struct, frozen=True, kw_only=True):
    """One worker's part of ``cluster.stats()``."""

    shards: list[int]
    guilds: int
    latency_s: dict[int, float | None]


@dataclass
class ClusterStats:
    workers: dict[WorkerKey, WorkerStats]
    errors: dict[WorkerKey, ClusterCallError]

    @property
    def guilds(self) -> int:
        return sum(w.guilds for w in self.workers.values())

    @property
    def shards(self) -> int:
        return sum(len(w.shards) for w in self.workers.values())


class CommandArgs(msgspec.Struct, array_like=True):
    shard_id: int
    op: int
    d: bytes


class MembersArgs(msgspec.Struct, kw_only=True):
    guild_id: str
    query: str | None = None
    limit: int = 0
    presences: bool = False
    user_ids: list[str | int] | str | None = None


class Sender(Protocol):
    def send(self, msg: ipc.ToSupervisor) -> None: ...

    @property
    def gen(self) -> int: ...


def check_timeout(timeout_s: float) -> float:
    if not (math.isfinite(timeout_s) and 0 < timeout_s <= _MAX_TIMEOUT_S):
        raise ValueError(f"timeout_s must be between 0 and {_MAX_TIMEOUT_S:g} seconds")
    return timeout_s


def outcome_error(outcome: ipc.CallOutcome) -> ClusterCallError:
    try:
        reason = CallError(outcome.reason)
    except ValueError:
        reason = CallError.FAILED
    return ClusterCallError(
        f"worker {outcome.worker} on host {outcome.host}: {outcome.error}", reason
    )


class Cluster:
    """``gateway.cluster``: calls to other workers (and this one) through the supervisor."""

    def __init__(self, channel: Sender, config: ipc.WorkerConfig) -> None:
        self._channel = channel
        self.worker_id = config.worker_id
        self.call_timeout_s = config.call_timeout_s
        self.command_timeout_s = config.command_timeout_s
        self.max_bytes = config.call_max_bytes
        self._nonces = itertools.count(1)
        self._pending: dict[int, asyncio.Future[list[ipc.CallOutcome]]] = {}

    def on_reply(self, msg: ipc.CallReply) -> None:
        future = self._pending.get(msg.nonce)
        if future is not None and not future.done():
            future.set_result(msg.outcomes)

    def fail_all(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClusterCallError(reason, CallError.WORKER_GONE))

    def _encode_args(self, args: Any) -> bytes:
        try:
            data = _encode(args)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ClusterCallError(
                f"call arguments must be msgspec-encodable values: {exc}", CallError.INVALID
            ) from None
        if len(data) > self.max_bytes:
            raise ClusterCallError(
                f"call arguments are {len(data)} bytes encoded, above the "
                f"{self.max_bytes}-byte limit (call_max_bytes)",
                CallError.OVERSIZED,
            )
        return data

    async def ask(
        self, name: str, args: Any, target: ipc.CallTarget, timeout_s: float | None
    ) -> list[ipc.CallOutcome]:
        """Every targeted worker's raw outcome."""
        timeout = check_timeout(self.call_timeout_s if timeout_s is None else timeout_s)
        data = args if isinstance(args, bytes) else self._encode_args(args)
        nonce = next(self._nonces)
        future: asyncio.Future[list[ipc.CallOutcome]] = asyncio.get_running_loop().create_future()
        self._pending[nonce] = future
        try:
            self._channel.send(
                ipc.ClusterCall(
                    gen=self._channel.gen,
                    nonce=nonce,
                    name=name,
                    args=data,
                    target=target,
                    timeout_s=timeout,
                )
            )
            async with asyncio.timeout(timeout + REPLY_GRACE_S):
                return await future
        except TimeoutError:
            raise ClusterCallError(
                f"no answer from the supervisor within {timeout:g} s", CallError.TIMEOUT
            ) from None
        finally:
            self._pending.pop(nonce, None)

    async def call_all(self, name: str, *args: Any, timeout_s: float | None = None) -> CallResults:
        """``rpc_<name>(*args)`` in every worker of every host."""
        outcomes = await self.ask(name, list(args), ipc.CallTarget(), timeout_s)
        out = CallResults()
        for outcome in outcomes:
            key = WorkerKey(outcome.host, outcome.worker)
            if not outcome.ok:
                out.errors[key] = outcome_error(outcome)
                continue
            try:
                out.results[key] = _decode(outcome.result)
            except msgspec.DecodeError:
                out.errors[key] = ClusterCallError(
                    f"worker {outcome.worker} on host {outcome.host} answered garbage",
                    CallError.GARBAGE,
                )
        return out

    async def call(
        self,
        name: str,
        *args: Any,
        shard: int | None = None,
        worker: int | None = None,
        host: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """``rpc_<name>(*args)`` in the worker running ``shard``, or worker ``worker`` (of
        ``host``); its result, or ``ClusterCallError``."""
        if (shard is None) == (worker is None):
            raise ValueError("cluster.call needs exactly one of shard= or worker=")
        target = ipc.CallTarget(shard=shard, worker=worker, host=host)
        return _single(await self.ask(name, list(args), target, timeout_s))

    async def stats(self, timeout_s: float | None = None) -> ClusterStats:
        """Guilds, shards and heartbeat latency of every worker, with no user code."""
        results = await self.call_all(STATS, timeout_s=timeout_s)
        workers: dict[WorkerKey, WorkerStats] = {}
        errors = dict(results.errors)
        for key, value in results.results.items():
            try:
                workers[key] = msgspec.convert(value, WorkerStats, strict=False)
            except msgspec.ValidationError:
                errors[key] = ClusterCallError(f"{key} answered bad stats", CallError.GARBAGE)
        return ClusterStats(workers, errors)

    async def command(self, shard_id: int, op: int, d: bytes) -> None:
        """A gateway command for a shard of another worker; ``ShardUnavailable`` if it is
        stopped or its worker does not come back within ``command_timeout_s``."""
        data = _encode(CommandArgs(shard_id, op, d))
        target = ipc.CallTarget(shard=shard_id)
        try:
            _single(await self.ask(COMMAND, data, target, self.command_timeout_s))
        except ClusterCallError as exc:
            if exc.reason is CallError.INVALID:
                raise ValueError(str(exc)) from None
            raise ShardUnavailable(f"shard {shard_id}: {exc}") from None

    async def request_members(self, shard_id: int, args: MembersArgs) -> Any:
        """Op 8 through the guild's owning worker, which collects the chunks."""
        target = ipc.CallTarget(shard=shard_id)
        data = _encode(args)
        try:
            return _single(await self.ask(MEMBERS, data, target, self.command_timeout_s))
        except ClusterCallError as exc:
            if exc.reason in (CallError.INVALID, CallError.OVERSIZED):
                raise ValueError(str(exc)) from None
            raise ShardUnavailable(f"shard {shard_id}: {exc}") from None


def _single(outcomes: list[ipc.CallOutcome]) -> Any:
    if len(outcomes) != 1:
        raise ClusterCallError(f"expected one answer, got {len(outcomes)}", CallError.GARBAGE)
    outcome = outcomes[0]
    if not outcome.ok:
        raise outcome_error(outcome)
    try:
        return _decode(outcome.result)
    except msgspec.DecodeError:
        raise ClusterCallError(
            f"worker {outcome.worker} on host {outcome.host} answered garbage", CallError.GARBAGE
        ) from None


class CallFailed(Exception):
    def __init__(self, reason: CallError, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CallServer:
    """Runs the calls the supervisor routes to this worker, each in its own task (at most
    ``MAX_SERVING``), and answers each with one ``RunResult``."""

    def __init__(
        self,
        channel: Sender,
        config: ipc.WorkerConfig,
        target: object,
        shards: Mapping[int, Shard],
        members: MemberWaits,
    ) -> None:
        self._channel = channel
        self._max_bytes = config.call_max_bytes
        self._target = target
        self._shards = shards
        self._members = members
        self._tasks: set[asyncio.Task[None]] = set()
        self._builtins: dict[str, Callable[[bytes, float], Awaitable[Any]]] = {
            COMMAND: self._command,
            STATS: self._stats,
            MEMBERS: self._request_members,
        }

    def serve(self, msg: ipc.RunCall) -> None:
        if len(self._tasks) >= MAX_SERVING:
            self._answer(msg.nonce, CallFailed(CallError.BUSY, "worker is busy with calls"))
            return
        task = asyncio.get_running_loop().create_task(self._run(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, msg: ipc.RunCall) -> None:
        try:
            async with asyncio.timeout(check_timeout(msg.timeout_s)):
                result: Any = await self._dispatch(msg.name, msg.args, msg.timeout_s)
        except CallFailed as exc:
            result = exc
        except ValueError as exc:
            result = CallFailed(CallError.INVALID, str(exc))
        except TimeoutError:
            result = CallFailed(CallError.TIMEOUT, f"{msg.name} did not finish in time")
        except ShardClosed as exc:
            result = CallFailed(CallError.SHARD_UNAVAILABLE, str(exc))
        except Exception as exc:
            log.warning("cluster call raised", extra={"call": msg.name}, exc_info=True)
            result = CallFailed(CallError.FAILED, f"{type(exc).__name__}: {exc}")
        self._answer(msg.nonce, result)

    async def _dispatch(self, name: str, args: bytes, timeout_s: float) -> Any:
        builtin = self._builtins.get(name)
        if builtin is not None:
            return await builtin(args, timeout_s)
        method = getattr(self._target, RPC_PREFIX + name, None) if name.isidentifier() else None
        if method is None or not asyncio.iscoroutinefunction(method):
            raise CallFailed(CallError.UNKNOWN_CALL, f"no async method rpc_{name} in the handler")
        try:
            values = _decode(args)
        except msgspec.DecodeError:
            raise CallFailed(CallError.GARBAGE, "undecodable call arguments") from None
        if not isinstance(values, list):
            raise CallFailed(CallError.GARBAGE, "call arguments are not a list")
        try:
            return await method(*values)
        except TypeError as exc:
            raise CallFailed(CallError.INVALID, f"rpc_{name}: {exc}") from None

    def _answer(self, nonce: int, result: Any) -> None:
        data = b""
        if not isinstance(result, CallFailed):
            try:
                data = _encode(result)
            except (TypeError, msgspec.EncodeError) as exc:
                result = CallFailed(CallError.INVALID, f"result is not msgspec-encodable: {exc}")
            else:
                if len(data) > self._max_bytes:
                    result = CallFailed(
                        CallError.OVERSIZED,
                        f"result of {len(data)} bytes exceeds call_max_bytes {self._max_bytes}",
                    )
        gen = self._channel.gen
        if isinstance(result, CallFailed):
            reply = ipc.RunResult(
                gen=gen, nonce=nonce, ok=False, error=str(result), reason=result.reason
            )
        else:
            reply = ipc.RunResult(gen=gen, nonce=nonce, ok=True, result=data)
        self._channel.send(reply)

    def _shard(self, shard_id: int) -> Shard:
        shard = self._shards.get(shard_id)
        if shard is None:
            raise CallFailed(CallError.NO_TARGET, f"shard {shard_id} does not run in this worker")
        return shard

    async def _command(self, args: bytes, timeout_s: float) -> None:
        try:
            cmd = _decode(args, type=CommandArgs)
        except msgspec.DecodeError:
            raise CallFailed(CallError.GARBAGE, "undecodable command") from None
        payload = b'{"op":%d,"d":%s}' % (cmd.op, cmd.d or b"null")
        if len(payload) > MAX_CLIENT_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_CLIENT_PAYLOAD}")
        # Queued like a local command: the owning shard's send limit paces it.
        await self._shard(cmd.shard_id).send_raw(payload)

    async def _stats(self, args: bytes, timeout_s: float) -> WorkerStats:
        shards = self._shards
        return WorkerStats(
            shards=sorted(shards),
            guilds=sum(s.guilds for s in shards.values()),
            latency_s={sid: s.latency_s for sid, s in shards.items()},
        )

    async def _request_members(self, args: bytes, timeout_s: float) -> Any:
        try:
            req = _decode(args, type=MembersArgs)
        except msgspec.DecodeError:
            raise CallFailed(CallError.GARBAGE, "undecodable member request") from None
        from workers.gateway import shard_for_guild

        shard = self._shard(shard_for_guild(req.guild_id, self._shards_total()))
        return await self._members.request(shard, req)

    def _shards_total(self) -> int:
        for shard in self._shards.values():
            return shard.config.num_shards
        raise CallFailed(CallError.NO_TARGET, "this worker runs no shard")

"""The supervisor's call router and the worker's call server with made-up peers: garbage
and oversized payloads are clear, counted errors that never raise out of the router."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from shardmgr.restarts import RestartPolicy
from shardmgr.routing import ClusterRouter, fit_reply
from shardmgr.shardtable import ShardTable
from shardmgr.workerslot import WorkerSlot, WorkerState
from workers import ipc
from workers.cluster import CallError, CallServer
from workers.members import MemberWaits

MAX = 1024
WORKER_0 = ipc.CallTarget(worker=0)


class FakeProc:
    """A worker process seen from the supervisor: what it was sent, and its exit."""

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.sent: list[ipc.ToWorker] = []
        self.got = asyncio.Event()
        self.exited = asyncio.Event()

    async def send(self, msg: ipc.ToWorker) -> bool:
        self.sent.append(msg)
        self.got.set()
        return True

    async def wait(self, within_s: float | None = None) -> int:
        await self.exited.wait()
        return -9


class Host:
    def __init__(self, slots: dict[int, WorkerSlot]) -> None:
        self._slots = slots
        self.stopping = False
        self.shards = ShardTable([slot.shard_ids for slot in slots.values()])

    @property
    def slots(self) -> Mapping[int, WorkerSlot]:
        return self._slots

    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> bool:
        return predicate()


def live_slot(worker_id: int, gen: int) -> tuple[WorkerSlot, FakeProc]:
    slot = WorkerSlot(worker_id, [worker_id], RestartPolicy())
    proc = FakeProc(gen)
    slot.proc = proc  # type: ignore[assignment]
    slot.gen = gen
    slot.up = True
    slot.state = WorkerState.RUNNING
    return slot, proc


def make_router(host: Host | None = None) -> tuple[ClusterRouter, FakeProc, CollectorRegistry]:
    slot, proc = live_slot(0, gen=7)
    registry = CollectorRegistry()
    router = ClusterRouter(host or Host({0: slot}), host_name="h", max_bytes=MAX, registry=registry)
    return router, proc, registry


def errors_metric(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("shardmgr_cluster_call_errors_total", {"reason": reason})
    return value or 0.0


async def call(
    router: ClusterRouter,
    args: bytes,
    timeout_s: float = 5.0,
    target: ipc.CallTarget = WORKER_0,
    name: str = "echo",
) -> ipc.CallReply:
    replies: list[ipc.CallReply] = []
    done = asyncio.Event()

    def send(msg: ipc.ToWorker) -> None:
        assert isinstance(msg, ipc.CallReply)
        replies.append(msg)
        done.set()

    msg = ipc.ClusterCall(gen=1, nonce=1, name=name, args=args, target=target, timeout_s=timeout_s)
    router.on_call(5, send, msg)
    await done.wait()
    return replies[0]


async def test_oversized_arguments_are_refused_before_any_worker_sees_them() -> None:
    router, proc, registry = make_router()
    reply = await call(router, b"\x90" * (MAX + 1))
    [outcome] = reply.outcomes
    assert (outcome.ok, outcome.reason) == (False, CallError.OVERSIZED)
    assert "call_max_bytes" in outcome.error
    assert proc.sent == []
    assert errors_metric(registry, "oversized") == 1


async def test_an_oversized_result_is_an_error_for_that_worker_and_counted() -> None:
    router, proc, registry = make_router()
    pending = asyncio.ensure_future(call(router, msgspec.msgpack.encode([1])))
    await proc.got.wait()
    [run] = proc.sent
    assert isinstance(run, ipc.RunCall)
    router.on_result(7, ipc.RunResult(gen=7, nonce=run.nonce, ok=True, result=b"x" * (MAX + 1)))
    [outcome] = (await pending).outcomes
    assert (outcome.ok, outcome.reason) == (False, CallError.OVERSIZED)
    assert errors_metric(registry, "oversized") == 1


async def test_results_with_unknown_nonces_or_another_generation_are_dropped_and_counted() -> None:
    router, proc, registry = make_router()
    pending = asyncio.ensure_future(call(router, msgspec.msgpack.encode([1])))
    await proc.got.wait()
    [run] = proc.sent
    assert isinstance(run, ipc.RunCall)
    router.on_result(7, ipc.RunResult(gen=7, nonce=run.nonce + 99, ok=True, result=b"\x01"))
    router.on_result(8, ipc.RunResult(gen=8, nonce=run.nonce, ok=True, result=b"\x02"))
    assert errors_metric(registry, "garbage") == 2
    router.on_result(7, ipc.RunResult(gen=7, nonce=run.nonce, ok=True, result=b"\x03"))
    [outcome] = (await pending).outcomes
    assert (outcome.ok, outcome.result) == (True, b"\x03")


async def test_a_worker_that_exits_mid_call_is_a_worker_gone_error_not_a_hang() -> None:
    router, proc, _ = make_router()
    pending = asyncio.ensure_future(call(router, msgspec.msgpack.encode([1]), timeout_s=600))
    await proc.got.wait()
    proc.exited.set()
    [outcome] = (await pending).outcomes
    assert (outcome.ok, outcome.reason) == (False, CallError.WORKER_GONE)


async def test_a_command_for_a_shard_that_stays_stopped_is_shard_unavailable() -> None:
    slot, proc = live_slot(0, gen=7)
    host = Host({0: slot})
    host.shards.apply(
        0, ipc.ShardStopped(gen=7, shard_id=0, reason="x", close_code=4014, fatal=True)
    )
    router, _, registry = make_router(host)
    reply = await call(router, b"\x90", target=ipc.CallTarget(shard=0))
    assert reply.outcomes[0].reason == CallError.SHARD_UNAVAILABLE
    assert proc.sent == []
    assert errors_metric(registry, "shard_unavailable") == 1


async def test_a_huge_call_name_is_invalid_and_never_forwarded() -> None:
    router, proc, registry = make_router()
    reply = await call(router, b"\x90", name="n" * 10_000)
    assert reply.outcomes[0].reason == CallError.INVALID
    assert proc.sent == []
    assert errors_metric(registry, "invalid") == 1


async def test_a_bad_timeout_is_an_invalid_call() -> None:
    router, proc, _ = make_router()
    reply = await call(router, b"\x90", timeout_s=float("nan"))
    assert reply.outcomes[0].reason == CallError.INVALID
    assert proc.sent == []


class Channel:
    gen = 3

    def __init__(self) -> None:
        self.sent: list[ipc.ToSupervisor] = []
        self.got = asyncio.Event()

    def send(self, msg: ipc.ToSupervisor) -> None:
        self.sent.append(msg)
        self.got.set()


class Target:
    async def start(self) -> None:
        raise AssertionError("not callable through the cluster")

    async def rpc_echo(self, value: Any) -> Any:
        return value


def config() -> ipc.WorkerConfig:
    return ipc.WorkerConfig(
        worker_id=0, token="t", gateway_url="ws://x", num_shards=1, shards=[], intents=0,
        call_max_bytes=MAX,
    )  # fmt: skip


async def serve(name: str, args: bytes) -> ipc.RunResult:
    channel = Channel()
    server = CallServer(channel, config(), Target(), {}, MemberWaits())
    server.serve(ipc.RunCall(gen=3, nonce=1, name=name, args=args, timeout_s=5))
    await channel.got.wait()
    [result] = channel.sent
    assert isinstance(result, ipc.RunResult)
    return result


async def test_garbage_arguments_are_answered_garbage_by_the_worker() -> None:
    result = await serve("echo", b"\xc1\xc1 not msgpack")
    assert (result.ok, result.reason) == (False, CallError.GARBAGE)


async def test_arguments_that_are_not_a_list_are_garbage() -> None:
    result = await serve("echo", msgspec.msgpack.encode({"a": 1}))
    assert (result.ok, result.reason) == (False, CallError.GARBAGE)


async def test_an_unknown_call_names_the_missing_rpc_method() -> None:
    result = await serve("nope", msgspec.msgpack.encode([]))
    assert (result.ok, result.reason) == (False, CallError.UNKNOWN_CALL)
    assert "rpc_nope" in result.error


async def test_only_rpc_methods_can_be_called() -> None:
    result = await serve("start", msgspec.msgpack.encode([]))
    assert result.reason == CallError.UNKNOWN_CALL


async def test_a_result_over_the_limit_is_refused_by_the_worker() -> None:
    result = await serve("echo", msgspec.msgpack.encode(["x" * (MAX + 1)]))
    assert (result.ok, result.reason) == (False, CallError.OVERSIZED)


async def test_a_call_is_answered_with_its_encoded_result() -> None:
    result = await serve("echo", msgspec.msgpack.encode([{"n": 3}]))
    assert result.ok and msgspec.msgpack.decode(result.result) == {"n": 3}


def ok(worker: int, size: int) -> ipc.CallOutcome:
    return ipc.CallOutcome(host="h", worker=worker, ok=True, result=b"x" * size)


def test_a_reply_within_its_budget_is_unchanged() -> None:
    outcomes = [ok(0, 40), ok(1, 60)]
    assert fit_reply(outcomes, budget=100) is outcomes


def test_the_largest_results_are_dropped_until_the_reply_fits() -> None:
    fitted = fit_reply([ok(0, 40), ok(1, 70), ok(2, 30)], budget=100)
    assert [(o.worker, o.ok, o.reason) for o in fitted] == [
        (0, True, ""),
        (1, False, CallError.OVERSIZED),
        (2, True, ""),
    ]
    assert "exceeds 100 bytes" in fitted[1].error

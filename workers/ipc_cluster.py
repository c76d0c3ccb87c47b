"""The cluster-call messages of the IPC vocabulary (issue 16; ``workers.cluster`` and
``shardmgr.routing``), re-exported by ``workers.ipc``: import them from there."""

from __future__ import annotations

import msgspec

# --- cluster calls (issue 16): ``workers.cluster`` and ``shardmgr.routing`` ---


class CallTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where a cluster call goes: the worker running ``shard``, worker ``worker`` (of
    ``host``, this host when None), or every worker of every host when all are None."""

    shard: int | None = None
    worker: int | None = None
    host: str | None = None


class CallAnswer(msgspec.Struct, kw_only=True):
    """A worker's answer to a cluster call: ``result`` msgpack-encoded, or an error and
    its reason (``workers.cluster.CallError``)."""

    ok: bool
    result: bytes = b""
    error: str = ""
    reason: str = ""


class CallOutcome(CallAnswer, kw_only=True):
    """One worker's answer, as the caller gets it: which worker of which host."""

    host: str
    worker: int


class RunCall(msgspec.Struct, tag="run_call", kw_only=True):
    """Run ``name`` (a handler's ``rpc_<name>`` or a built-in) with msgpack ``args``;
    answered by ``RunResult`` with the same nonce."""

    gen: int
    nonce: int
    name: str
    args: bytes
    timeout_s: float


class CallReply(msgspec.Struct, tag="call_reply", kw_only=True):
    """The answer to a worker's ``ClusterCall``: one outcome per worker reached."""

    gen: int
    nonce: int
    outcomes: list[CallOutcome]


class ClusterCall(msgspec.Struct, tag="cluster_call", kw_only=True):
    """A handler's call to other workers (or a gateway command for another worker's shard,
    as the built-in ``shardmgr.command``), routed by the supervisor."""

    gen: int
    nonce: int
    name: str
    args: bytes
    target: CallTarget
    timeout_s: float


class RunResult(CallAnswer, tag="run_result", kw_only=True):
    """The answer to ``RunCall``."""

    gen: int
    nonce: int

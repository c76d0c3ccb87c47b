"""`shardmgr reshard`: ask the running supervisor to reshard now (its POST /reshard)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardmgr.adminclient import request_json
from shardmgr.presence import _error_of, admin_secret


def request(address: str, env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> str:
    """POST /reshard; the one line to print. A reshard already running (409) or refused
    (422: the session start budget, a host running a slice) is a ``UserError`` with the
    supervisor's reason."""
    secret = admin_secret(env)
    doc = request_json(
        address, "/reshard", body={}, secret=secret, timeout_s=timeout_s, http_error=_error_of
    )
    if doc.get("from") == doc.get("to"):
        return f"no reshard needed: {doc.get('from')} shards is what Discord recommends"
    return (
        f"resharding from {doc.get('from')} to {doc.get('to')} shards in the background; "
        "`shardmgr status` shows its progress"
    )


def status_line(reshard: dict[str, Any] | None) -> str | None:
    """`shardmgr status`'s line about a reshard (``/status`` ``supervisor.reshard``): the one
    running, or the last one when it did not succeed; None when there is nothing to say."""
    if not reshard:
        return None
    if reshard.get("phase", "idle") != "idle":
        return (
            f"RESHARDING {reshard.get('from')} -> {reshard.get('to')} shards "
            f"({reshard.get('phase')}): {reshard.get('ready', 0)} of {reshard.get('to')} new "
            f"shards ready after {reshard.get('elapsed_s', 0):.0f} s"
        )
    last = reshard.get("last") or {}
    if last.get("outcome") in ("failed", "refused"):
        return (
            f"last reshard {last.get('from')} -> {last.get('to')} {last['outcome']}: "
            f"{last.get('reason')}"
        )
    return None

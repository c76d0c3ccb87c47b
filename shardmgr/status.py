"""``shardmgr status``: the running supervisor's workers and shards, as a table."""

from __future__ import annotations

from typing import Any

from shardmgr.adminclient import request_json
from shardmgr.errors import UserError
from shardmgr.reshardcli import status_line
from shardmgr.settingvalues import ranges_text


def fetch_status(address: str, timeout_s: float = 5.0) -> dict[str, Any]:
    url = f"http://{address}/status"
    doc = request_json(address, "/status", timeout_s=timeout_s)
    if not isinstance(doc, dict) or "shards" not in doc:
        raise UserError(f"{url} did not return a shardmgr status document")
    return doc


def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return format(float(value) * scale, fmt)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def render(doc: dict[str, Any]) -> str:
    sup = doc.get("supervisor", {})
    lines = [
        f"supervisor pid {sup.get('pid')}: {sup.get('connected_shards')}/"
        f"{sup.get('planned_shards')} shards connected (of {sup.get('total_shards')} total), "
        f"{'ready' if sup.get('ready') else 'not ready'}, "
        f"session starts left {sup.get('session_start_remaining', '-')}"
    ]
    if sup.get("budget_exhausted"):
        lines.append(f"IDENTIFY BUDGET EXHAUSTED: {sup['budget_exhausted']}")
    if (resharding := status_line(sup.get("reshard"))) is not None:
        lines.append(resharding)
    lines.append("")
    worker_rows = [
        [
            str(w.get("id")),
            str(w.get("pid") or "-"),
            str(w.get("gen")),
            w.get("state", "-") + (" (crash loop)" if w.get("crash_looping") else ""),
            str(w.get("restarts")),
            _shard_span(w.get("shards", [])),
            str(w.get("last_exit") or "-"),
        ]
        for w in doc.get("workers", [])
    ]
    worker_headers = ["WORKER", "PID", "GEN", "STATE", "RESTARTS", "SHARDS", "LAST EXIT"]
    lines += _table(worker_headers, worker_rows)
    lines.append("")
    shard_rows = [
        [
            str(s.get("id")),
            str(s.get("worker")),
            str(s.get("state")) + (f" ({s['stop_reason']})" if s.get("stop_reason") else ""),
            _num(s.get("latency_s"), ".0f", 1000.0),
            str(s.get("reconnects")),
            str(s.get("guilds")),
            _num(s.get("last_event_age_s"), ".1f"),
            _num(s.get("session_age_s"), ".0f"),
            str(s.get("session_kind") or "-"),
        ]
        for s in doc.get("shards", [])
    ]
    lines += _table(
        [
            "SHARD",
            "WORKER",
            "STATE",
            "LATENCY_MS",
            "RECONNECTS",
            "GUILDS",
            "LAST_EVENT_S",
            "SESSION_S",
            "SESSION",
        ],
        shard_rows,
    )
    return "\n".join(lines)


def _shard_span(ids: list[int]) -> str:
    return ranges_text(ids) or "-"


def show(address: str) -> int:
    print(render(fetch_status(address)))
    return 0

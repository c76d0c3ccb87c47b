"""``make bench`` = ``python -m bench``: run every benchmark, print the table, write results.json.

``--quick`` runs each benchmark small (the smoke run inside ``make test``: it checks that the
harness works, not the speed). ``--only receive,memory`` picks benchmarks by name.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results import Row, failed, machine, table, write_json

# name -> module; each module has ``run(quick: bool) -> list[Row]``.
BENCHMARKS: dict[str, str] = {
    "receive": "bench.receive",
    "coldstart": "bench.coldstart",
    "memory": "bench.memory",
    "scale": "bench.scale",
    "recovery": "bench.recovery",
    "overhead": "bench.overhead",
    "admin_load": "bench.admin_load",
    "rest": "bench.rest",
    "cluster": "bench.cluster",
    "reshard": "bench.reshard",
    "sink_redis": "bench.sink_redis",  # provided by the Redis engineer; run when present
}
OPTIONAL = frozenset({"sink_redis"})
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="small smoke run (seconds, not minutes)")
    p.add_argument(
        "--only", default="", help="comma-separated benchmark names: " + ",".join(BENCHMARKS)
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results.json path")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = names or list(BENCHMARKS)
    return args


def _runner(module_name: str) -> Callable[[bool], list[Any]] | None:
    if importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    fn: Callable[[bool], list[Any]] = module.run
    return fn


def run_one(name: str, quick: bool) -> list[Row]:
    module_name = BENCHMARKS[name]
    try:
        fn = _runner(module_name)
        if fn is None:
            if name in OPTIONAL:
                return []
            return [failed(name, "", f"{module_name} is missing")]
        out = fn(quick)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return [failed(name, "", f"{type(exc).__name__}: {exc}")]
    return [r if isinstance(r, Row) else Row.from_dict(r) for r in out]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rows: list[Row] = []
    print(f"shardmgr benchmarks ({'quick' if args.quick else 'full'}) on {machine()}", flush=True)
    for name in args.names:
        t0 = time.monotonic()
        print(f"-- {name} ...", flush=True)
        got = run_one(name, args.quick)
        rows.extend(got)
        print(f"   {name}: {len(got)} rows in {time.monotonic() - t0:.1f}s", flush=True)
    print()
    print(table(rows))
    write_json(rows, args.out)
    failures = sum(1 for r in rows if r.passed is False)
    print(f"\n{len(rows)} figures, {failures} below target; wrote {args.out}")
    # Missing a performance target is a finding, not a crash: exit 0 unless nothing ran.
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())

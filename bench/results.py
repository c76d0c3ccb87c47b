"""Benchmark results: one row per figure, the table printed to the terminal, results.json.

Every row compares a value with a baseline measured in the same run (``ratio``) and says which
way the target points; absolute numbers ride along for information only, because the machines
that run this are shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Direction = Literal["<=", ">=", "<", ">", "=="]


@dataclass(slots=True)
class Row:
    """One figure. ``ratio`` is value/baseline unless ``ratio`` is given explicitly (for
    throughput rows the ratio is of times, so "lower is better" reads naturally).
    ``target`` is a threshold on ``ratio`` (or on ``value`` when ``on_value``); no target means
    information only (``pass`` is null in results.json)."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    direction: Direction | None = None
    threshold: float | None = None
    on_value: bool = False
    note: str = ""
    error: str = ""
    # Rows from other harnesses (results.json dicts) carry their own target text and verdict.
    given_target: str | None = None
    given_pass: bool | None = None
    has_given_pass: bool = False

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        return cls(
            name=str(d["name"]),
            value=_opt_float(d.get("value")),
            unit=str(d.get("unit", "")),
            baseline=_opt_float(d.get("baseline")),
            ratio=_opt_float(d.get("ratio")),
            note=str(d.get("note", "")),
            given_target=str(d.get("target") or ""),
            given_pass=None if d.get("pass") is None else bool(d["pass"]),
            has_given_pass=True,
        )

    @property
    def target(self) -> str:
        if self.given_target is not None:
            return self.given_target
        if self.direction is None or self.threshold is None:
            return ""
        subject = "value" if self.on_value else "ratio"
        return f"{subject} {self.direction} {_fmt(self.threshold)}"

    @property
    def passed(self) -> bool | None:
        if self.error:
            return False
        if self.has_given_pass:
            return self.given_pass
        if self.direction is None or self.threshold is None:
            return None
        x = self.value if self.on_value else self.ratio
        if x is None or math.isnan(x):
            return False
        return _compare(x, self.direction, self.threshold)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _num(self.value),
            "unit": self.unit,
            "baseline": _num(self.baseline),
            "ratio": _num(self.ratio),
            "target": self.target,
            "pass": self.passed,
        }


def failed(
    name: str,
    unit: str,
    error: str,
    direction: Direction | None = None,
    threshold: float | None = None,
    on_value: bool = False,
) -> Row:
    """A row for a benchmark that could not run: it fails, and says why."""
    return Row(
        name, None, unit, direction=direction, threshold=threshold, on_value=on_value, error=error
    )


def _compare(x: float, op: Direction, t: float) -> bool:
    if op == "<=":
        return x <= t
    if op == ">=":
        return x >= t
    if op == "<":
        return x < t
    if op == ">":
        return x > t
    return x == t


def _opt_float(x: object) -> float | None:
    return None if x is None else float(x)  # type: ignore[arg-type]


def _num(x: float | None) -> float | None:
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return round(x, 6)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.2f}M"
    if a >= 1e4:
        return f"{x / 1e3:.1f}k"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def median_time(fn: Callable[[], object], runs: int) -> float:
    import time

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(rows: Sequence[Row]) -> str:
    head = ("benchmark", "value", "unit", "baseline", "ratio", "target", "result")
    body: list[tuple[str, ...]] = []
    for r in rows:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r.passed]
        body.append(
            (r.name, _fmt(r.value), r.unit, _fmt(r.baseline), _fmt(r.ratio), r.target, verdict)
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r, b in zip(rows, body, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip())
        for extra in (r.note, f"error: {r.error}" if r.error else ""):
            if extra:
                lines.append(f"    {extra}")
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu or platform.processor() or 'unknown cpu'}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {sys.version.split()[0]}"
    )


def write_json(rows: Iterable[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    tmp.replace(path)

"""Reading the PromQL that grafana/ ships: every dashboard query and alert expression, made
evaluable against a plain Prometheus (template variables expanded)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "shardmgr.json"
ALERTS = GRAFANA / "alerts.yml"
PROMETHEUS_CONFIG = GRAFANA / "prometheus.yml"

# What Grafana substitutes when "All" is selected (allValue) and for the rate window.
VARIABLES = {"$__rate_interval": "10s", "$instance": ".*", "$worker": ".*", "$shard": ".*"}

_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
_METRIC = re.compile(r"\b(shardmgr_[a-z_]+|process_[a-z_]+|up)\b(?!\s*\()")
_EXPR_LINE = re.compile(r"^\s*expr:\s*(?P<expr>.+?)\s*$", re.MULTILINE)
_ALERT_LINE = re.compile(r"^\s*-\s*alert:\s*(?P<name>\S+)\s*$", re.MULTILINE)


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in panels(load_dashboard())
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variable_queries() -> dict[str, tuple[str, str]]:
    """Template variable name -> (series selector, label) of its ``label_values`` query."""
    out: dict[str, tuple[str, str]] = {}
    for var in load_dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query.strip())
        assert match, f"variable {var['name']}: not a label_values() query: {query}"
        out[var["name"]] = (match["selector"], match["label"])
    return out


def alert_rules() -> dict[str, str]:
    """Alert name -> expression, read from alerts.yml (one-line ``expr:`` by convention)."""
    text = ALERTS.read_text()
    names = [m["name"] for m in _ALERT_LINE.finditer(text)]
    exprs = [m["expr"] for m in _EXPR_LINE.finditer(text)]
    assert len(names) == len(exprs), "every alert needs exactly one single-line expr"
    return dict(zip(names, exprs, strict=True))


def expand(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unexpanded template variable in {expr}"
    return expr


_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def with_bool(expr: str) -> str:
    """Turn every filtering comparison outside label matchers into its ``bool`` form, so an
    alert expression returns a 0/1 sample per series whether or not it would fire. That
    checks the metrics and the syntax without needing the failure the alert is about."""
    out: list[str] = []
    depth = 0
    quote: str | None = None
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
            i += 1
            continue
        if ch in "\"'`":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            op = next((c for c in _COMPARISONS if expr.startswith(c, i)), None)
            if op is not None:
                rest = expr[i + len(op) :].lstrip()
                out.append(op)
                i += len(op)
                if not rest.startswith("bool"):
                    out.append(" bool")
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (ours, the process collector's, ``up``)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    return {m.group(1) for m in _METRIC.finditer(without_matchers)}

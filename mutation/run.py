"""`make mutate`: mutation testing of the modules that hold the core rules, with cosmic-ray.

For every [[target]] of mutation/targets.toml: copy the repo to build/mutation/work-PID (cosmic-ray
edits the module on disk, so a killed run can never leave a mutant in the working tree), run
the target's tests once unmutated (they must pass; their time sets the per-mutant timeout),
create the mutants, skip those that cannot change behaviour here (inside type annotations,
which ``from __future__ import annotations`` never evaluates) or lie outside the target's
``functions``, run the target's tests against each remaining mutant, and list the survivors
with their diffs. Worker subprocesses started by a test import the mutated file too: the
mutant is on disk and PYTHONPATH points at the copy.

Usage: python mutation/run.py [--recheck | --report] [TARGET-NAME-WORD ...]
--recheck runs only the last run's survivors again (after adding tests: seconds, not minutes);
--report only summarizes the last runs.
Results: build/mutation/report.txt (summary and every survivor's diff).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cosmic_ray.work_db import WorkDB, WorkResultStorage, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "mutation" / "targets.toml"
OUT = REPO / "build" / "mutation"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", ".*_cache", ".hypothesis", "*.egg-info"
)
STARTUP_S = 10.0

Pos = tuple[int, int]


@dataclass
class Target:
    name: str
    module: str
    tests: list[str]
    functions: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    target: Target
    total: int = 0
    skipped: int = 0
    killed: int = 0
    timeouts: int = 0
    incompetent: int = 0
    survivors: list[str] = field(default_factory=list)


@dataclass
class Settings:
    timeout_factor: float
    exclude_operators: list[re.Pattern[str]]


def load_targets(path: Path) -> tuple[Settings, list[Target]]:
    doc = tomllib.loads(path.read_text())
    raw = doc.get("settings", {})
    settings = Settings(
        float(raw.get("timeout_factor", 3.0)),
        [re.compile(p) for p in raw.get("exclude_operators", [])],
    )
    targets = [
        Target(t["name"], t["module"], list(t["tests"]), list(t.get("functions", [])))
        for t in doc["target"]
    ]
    return settings, targets


def definitions(tree: ast.Module) -> list[tuple[Pos, Pos, str]]:
    """(start, end, qualified name) of every function and class, decorators included."""
    out: list[tuple[Pos, Pos, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                end = (child.end_lineno or child.lineno, child.end_col_offset or 0)
                out.append(((first, 0), end, name))
                walk(child, f"{name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def annotations(tree: ast.Module) -> list[tuple[Pos, Pos]]:
    spans: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            spans.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            spans.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            spans.append(node.annotation)
    return [
        ((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0)) for n in spans
    ]


def innermost(defs: list[tuple[Pos, Pos, str]], pos: Pos) -> str | None:
    inside = [(start, name) for start, end, name in defs if start <= pos <= end]
    return max(inside)[1] if inside else None


def wanted(qualname: str | None, functions: list[str]) -> bool:
    if not functions:
        return True
    return qualname is not None and any(
        qualname == f or qualname.startswith(f"{f}.") for f in functions
    )


def skip_unwanted(db: WorkDB, target: Target, source: Path, settings: Settings) -> int:
    tree = ast.parse(source.read_text())
    defs, notes = definitions(tree), annotations(tree)
    known = {name for _, _, name in defs}
    missing = [f for f in target.functions if f not in known]
    if missing:
        sys.exit(f"mutation/targets.toml: {target.module} has no {', '.join(missing)}")
    skipped = 0
    for item in list(db.pending_work_items):
        (mutation,) = item.mutations
        pos: Pos = tuple(mutation.start_pos)  # type: ignore[assignment]
        in_annotation = any(start <= pos < end for start, end in notes)
        excluded = any(p.search(mutation.operator_name) for p in settings.exclude_operators)
        if in_annotation or excluded or not wanted(innermost(defs, pos), target.functions):
            db.set_result(
                item.job_id,
                WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=None, diff=None),
            )
            skipped += 1
    return skipped


def pytest_command(target: Target) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests]


def baseline_seconds(target: Target, work: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(
        pytest_command(target), cwd=work, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"{target.name}: the unmutated tests fail:\n{result.stdout[-3000:]}")
    return time.monotonic() - started


def session_path(target: Target) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in target.name)[:60]
    return OUT / f"{slug}.sqlite"


def forget_survivors(session: Path) -> int:
    """Drop the survivors' (and incompetent runs') results: ``cosmic-ray exec`` reruns them."""
    with use_db(str(session), WorkDB.Mode.open) as db:
        again = [
            job_id
            for job_id, result in db.results
            if result.worker_outcome != WorkerOutcome.SKIPPED
            and result.test_outcome != TestOutcome.KILLED
        ]
        with db._session_maker.begin() as sql:  # cosmic-ray has no public "forget result"
            sql.query(WorkResultStorage).filter(WorkResultStorage.job_id.in_(again)).delete()
    return len(again)


def run_target(
    target: Target, settings: Settings, work: Path, env: dict[str, str], *, recheck: bool
) -> None:
    module = work / target.module
    if not module.is_file():
        sys.exit(f"mutation/targets.toml: {target.module} does not exist")
    session = session_path(target)
    if recheck and not session.exists():
        sys.exit(f"{target.name}: no earlier run to recheck ({session})")
    timeout = STARTUP_S + settings.timeout_factor * baseline_seconds(target, work, env)
    config = session.with_suffix(".toml")
    # cosmic-ray splits the command with shlex; a JSON string is a valid TOML string.
    test_command = shlex.join(pytest_command(target))
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(target.module)}\n"
        f"timeout = {timeout:.1f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    if recheck:
        print(f"   rechecking {forget_survivors(session)} survivors", flush=True)
    else:
        session.unlink(missing_ok=True)
        subprocess.run([*cosmic, "init", str(config), str(session)], cwd=work, env=env, check=True)
        with use_db(str(session), WorkDB.Mode.open) as db:
            skip_unwanted(db, target, module, settings)
    subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=work, env=env, check=True)


def summarize(target: Target) -> Outcome:
    outcome = Outcome(target)
    session = session_path(target)
    if not session.exists():
        return outcome
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        outcome.total = len(items)
        for job_id, result in db.results:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                outcome.skipped += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                (mutation,) = items[job_id].mutations
                line = mutation.start_pos[0]
                outcome.survivors.append(
                    f"{target.module}:{line} {mutation.operator_name}\n{result.diff}"
                )
            elif result.test_outcome == TestOutcome.KILLED:
                outcome.killed += 1
                outcome.timeouts += result.output == "timeout"
            else:
                outcome.incompetent += 1
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="run the targets whose name contains this")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--recheck", action="store_true", help="run only the last run's survivors again"
    )
    mode.add_argument("--report", action="store_true", help="only report the last runs")
    args = parser.parse_args()
    settings, targets = load_targets(CONFIG)
    if args.only:
        targets = [t for t in targets if any(o in t.name for o in args.only)]
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.report:
        # One copy per run: runs of different targets may go on side by side.
        work = OUT / f"work-{os.getpid()}"
        shutil.copytree(REPO, work, ignore=COPY_IGNORE)
        env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            for target in targets:
                print(f"== {target.name}: {target.module}", flush=True)
                started = time.monotonic()
                run_target(target, settings, work, env, recheck=args.recheck)
                print(f"   {time.monotonic() - started:.0f}s", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    outcomes = [summarize(t) for t in targets]
    lines = [
        f"{o.target.name} ({o.target.module}): {o.total - o.skipped} mutants run "
        f"({o.skipped} skipped), {o.killed} killed ({o.timeouts} by timeout), "
        f"{len(o.survivors)} survived, {o.incompetent} incompetent"
        for o in outcomes
    ]
    summary = "\n".join(lines)
    details = "\n\n".join(
        f"--- {o.target.name}\n" + "\n".join(o.survivors) for o in outcomes if o.survivors
    )
    report = OUT / "report.txt"
    report.write_text(f"{summary}\n\nSurvivors:\n\n{details}\n")
    print(f"\n{summary}\n\nsurviving mutants with their diffs: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""No core dump can carry the token: the supervisor and every worker run with RLIMIT_CORE 0
and are not dumpable, unless ``allow_core_dumps`` is set for debugging.

How dumpability is observed: the kernel gives the /proc/PID files of a non-dumpable process
to root (``task_dump_owner``), so for a process of another user ``/proc/PID/environ`` turns
root-owned (and unreadable to that user). For our own processes, run as root here, that
ownership shows nothing, so the mechanism is checked in a child of another user (or of this
user when not root), and the real supervisor and workers are checked for RLIMIT_CORE 0,
which they set themselves (the test raises the limit they inherit)."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.procs import REPO
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

NOBODY = 65534
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from workers.hardening import dumpable, protect_process
protect_process(allow_core_dumps=sys.argv[2] == "allow")
print("dumpable" if dumpable() else "protected", flush=True)
sys.stdin.read()
"""


def core_limit(pid: int) -> str:
    """The soft 'Max core file size' of ``pid``, as /proc/PID/limits shows it."""
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max core file size"):
                return line.split()[4]
    raise AssertionError(f"no core limit for {pid}")


@pytest.fixture
def cores_inherited_unlimited() -> Iterator[None]:
    """Children start with core dumps on, so a 0 they show is one they set themselves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


def _interpreter_for(uid: int) -> str | None:
    """A Python that ``uid`` can run (this venv's may sit in root's home)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "pass"], user=uid, capture_output=True, check=False, timeout=30
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


def _child(mode: str) -> tuple[subprocess.Popen[str], int]:
    """A process that ran protect_process, as another user when we are root; its uid."""
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    python = _interpreter_for(uid) if uid != os.geteuid() else sys.executable
    if python is None:
        pytest.skip(f"no Python interpreter uid {uid} may run")
    repo = tempfile.mkdtemp()
    os.chmod(repo, 0o755)
    (Path(repo) / "workers").mkdir(mode=0o755)
    for name in ("__init__.py", "hardening.py"):
        shutil.copy(REPO / "workers" / name, Path(repo) / "workers" / name)
        os.chmod(Path(repo) / "workers" / name, 0o644)
    proc = subprocess.Popen(
        [python, "-c", CHILD, repo, mode],
        user=uid if uid != os.geteuid() else None,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc, uid


def _environ_closed(pid: int, uid: int) -> bool:
    if os.geteuid() == 0:
        return os.stat(f"/proc/{pid}/environ").st_uid == 0 != uid
    try:
        with open(f"/proc/{pid}/environ", "rb"):
            return False
    except PermissionError:
        return True


@pytest.mark.parametrize(("mode", "closed", "core"), [("deny", True, "0"), ("allow", False, None)])
def test_protect_process_closes_environ_and_core_dumps_unless_allowed(
    cores_inherited_unlimited: None, mode: str, closed: bool, core: str | None
) -> None:
    proc, uid = _child(mode)
    try:
        assert _environ_closed(proc.pid, uid) is closed
        assert core_limit(proc.pid) == (core or core_limit(os.getpid()))
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_turns_core_dumps_off_before_it_is_sent_the_token(
    cores_inherited_unlimited: None,
) -> None:
    ours, theirs = socket.socketpair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMGR_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "--ipc-fd", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        env=env,
    )
    theirs.close()
    try:
        deadline = time.monotonic() + 30
        while core_limit(proc.pid) != "0":
            assert time.monotonic() < deadline, "the worker never set RLIMIT_CORE to 0"
            time.sleep(0.05)
    finally:
        ours.close()  # EOF before Start: the worker exits
        proc.wait(30)


async def _system_core_limits(tmp_path: Path, env: dict[str, str]) -> dict[int, str]:
    fake = await FakeGatewayProc.start(shards=2)
    sup = None
    try:
        sup = await SupervisorProc.start(fake, tmp_path, "--workers", "2", env=env)
        doc = await sup.wait_status(all_connected)
        pids = [sup.proc.pid] + [int(w["pid"]) for w in doc["workers"] if w.get("pid")]
        assert len(pids) == 3
        return {pid: core_limit(pid) for pid in pids}
    finally:
        if sup is not None:
            await sup.close()
        await fake.close()


@pytest.mark.integration
async def test_the_supervisor_and_every_worker_run_without_core_dumps(
    tmp_path: Path, cores_inherited_unlimited: None
) -> None:
    limits = await _system_core_limits(tmp_path, {})
    assert set(limits.values()) == {"0"}, limits


@pytest.mark.integration
async def test_allow_core_dumps_leaves_the_core_limit_alone(
    tmp_path: Path, cores_inherited_unlimited: None
) -> None:
    limits = await _system_core_limits(tmp_path, {"SHARDMGR_ALLOW_CORE_DUMPS": "true"})
    assert set(limits.values()) == {core_limit(os.getpid())}, limits
    assert core_limit(os.getpid()) != "0"

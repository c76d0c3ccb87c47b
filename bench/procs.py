"""Process plumbing for the system benchmarks: start the fake gateway, the supervisor and bare
workers on 127.0.0.1, read their HTTP endpoints, sample CPU and RSS from /proc, and stop every
process on every path.

Every wait here is bounded; every process is started in its own session so that stopping it
also stops whatever it spawned (workers), and only the process groups started here are
signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fakegateway import FakeConfig, FakeStartError, spawn

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# A well-formed fake bot token (base64 of a user id . timestamp . hmac), the shape the fake
# gateway issues and accepts; it is not a secret.
BENCH_TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAwMQ.GbEnCh.YmVuY2htYXJrLXRva2VuLW5vdC1hLXNlY3JldA"


class BenchError(RuntimeError):
    """The system under test did not reach the state the benchmark needs in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns a non-None value, or raise BenchError after timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            got = probe()
            if got is not None:
                return got
        except (OSError, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_post(url: str, doc: Any, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url,
        data=json.dumps(doc).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_json(url: str, timeout: float = 5.0) -> Any:
    status, body = http_get(url, timeout)
    if status != 200:
        raise ValueError(f"GET {url}: HTTP {status}")
    return json.loads(body)


# ---------------------------------------------------------------- /proc sampling


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass(slots=True)
class CpuSample:
    """CPU used by some processes between two instants, as a percentage of one core."""

    pids: list[int]
    t0: float = 0.0
    c0: dict[int, float] = field(default_factory=dict)

    def start(self) -> CpuSample:
        self.t0 = time.monotonic()
        self.c0 = {p: cpu_seconds(p) for p in self.pids}
        return self

    def percent(self) -> dict[int, float]:
        dt = time.monotonic() - self.t0
        return {p: 100.0 * (cpu_seconds(p) - c) / dt for p, c in self.c0.items()}


# ---------------------------------------------------------------- processes


@dataclass(slots=True)
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def first_line(self, timeout: float) -> str:
        """The first stdout line (the fake gateway prints its URL there)."""
        assert self.popen.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.popen.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + timeout
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    raise BenchError(
                        f"{self.name} printed no first line within {timeout:.0f}s "
                        f"(exit {self.popen.poll()}):\n{self.tail()}"
                    )
                if sel.select(left):
                    chunk = os.read(self.popen.stdout.fileno(), 4096)
                    if not chunk:
                        continue
                    buf += chunk
        finally:
            sel.close()
        first, _, rest = buf.partition(b"\n")
        # Keep the pipe flowing so the process never blocks on a full stdout.
        threading.Thread(target=self._drain, args=(rest,), daemon=True).start()
        return first.decode().strip()

    def _drain(self, pending: bytes) -> None:
        assert self.popen.stdout is not None
        with open(self.log, "ab") as logf:
            logf.write(pending)
            try:
                while chunk := os.read(self.popen.stdout.fileno(), 65536):
                    logf.write(chunk)
            except (OSError, ValueError):
                return


class Cluster(contextlib.AbstractContextManager["Cluster"]):
    """Owns every process a benchmark starts; leaving the ``with`` block stops them all."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []
        self._dir = tempfile.TemporaryDirectory(prefix="shardmgr-bench-")
        self.dir = Path(self._dir.name)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> Proc:
        log = self.dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        with open(log, "wb") as logf:
            popen = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else logf,
                stderr=logf,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
            )
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def fake_gateway(
        self,
        *,
        shards: int,
        max_concurrency: int,
        identify_window: float,
        heartbeat_interval: float,
        event_rate: float = 0.0,
        extra: Sequence[str] = (),
    ) -> tuple[Proc, str]:
        config = FakeConfig(
            shards=shards,
            max_concurrency=max_concurrency,
            identify_window_s=identify_window,
            heartbeat_interval_s=heartbeat_interval,
            event_rate=event_rate,
            token=BENCH_TOKEN,
        )
        log = self.dir / "fake-gateway.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            fake = spawn(config, args=extra, env=env, cwd=ROOT, stderr=log)
        except FakeStartError as exc:
            raise BenchError(f"{exc} (its log: {log})") from None
        proc = Proc("fake-gateway", fake.popen, log)
        self._procs.append(proc)
        return proc, fake.url

    def supervisor(
        self,
        api_base: str,
        *,
        http_port: int,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "shardmgr",
            "start",
            "--api-base",
            api_base,
            "--http",
            f"127.0.0.1:{http_port}",
            *extra,
        ]
        # The supervisor's own state (pid file, saved sessions) stays inside this run's
        # temporary directory, never in the operator's real state directory.
        base = {**token_env(), "SHARDMGR_STATE_DIR": str(self.dir / "state")}
        return self.spawn("supervisor", argv, env={**base, **(env or {})})

    def stop(self, proc: Proc, grace: float = 10.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL the whole process group if it lingers."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()

    def close(self) -> None:
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()
        self._dir.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.close()


def token_env() -> dict[str, str]:
    return {"DISCORD_TOKEN": BENCH_TOKEN}


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()

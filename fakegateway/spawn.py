"""One way to run the fake as a child process, for tests, benchmarks and the demo.

``spawn(config)`` (blocking) and ``await spawn_async(config)`` start ``python -m
fakegateway`` with the flags generated from ``config``, wait for the URL it prints, and
return a ``FakeProcess``: ``url``/``base_url``, ``port``, ``api_base``, ``gateway_url``,
``pid`` and ``stop()`` / ``await stop_async()``; both work as context managers. The token
travels in the environment (on argv, ``ps`` would show it). The child runs in its own
session, so Ctrl-C reaches only the parent and ``stop`` can end the whole group.

In-process, ``FakeGateway(config)`` (``async with``) has the same addresses and more."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from fakegateway.cli import TOKEN_ENV, to_argv
from fakegateway.config import FakeConfig

STARTUP_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
Stderr = int | IO[Any] | Path | None


class FakeStartError(RuntimeError):
    """The fake exited or stayed silent instead of printing its URL."""


class FakeProcess:
    """A fake gateway running as a child process (see the module docstring)."""

    def __init__(self, config: FakeConfig, popen: subprocess.Popen[bytes], url: str) -> None:
        self.config = config
        self.popen = popen
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        return self.url

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/api/v10``: what a bot's REST base points at."""
        return self.url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    @property
    def token(self) -> str | None:
        return self.config.token

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def get_json(self, path: str, timeout: float = 10.0) -> Any:
        """``GET`` a control route (``/_fake/stats`` ...), blocking: for synchronous callers."""
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (the fake exits 0), then SIGKILL of its process group if it lingers."""
        return _terminate(self.popen, timeout)

    async def stop_async(self, timeout: float = STOP_TIMEOUT_S) -> int:  # noqa: ASYNC109
        """``stop`` without blocking the event loop."""
        return await _terminate_async(self.popen, timeout)

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProcess:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()


def _kill(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)


def _close_pipe(popen: subprocess.Popen[bytes]) -> None:
    if popen.stdout is not None:
        popen.stdout.close()


def _terminate(popen: subprocess.Popen[bytes], timeout: float) -> int:
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(popen)
    _close_pipe(popen)
    return popen.wait()


async def _terminate_async(popen: subprocess.Popen[bytes], timeout: float) -> int:  # noqa: ASYNC109
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGTERM)
        if not await _exited(popen, timeout):
            _kill(popen)
            await _exited(popen, timeout)
    _close_pipe(popen)
    return popen.wait()


async def _exited(popen: subprocess.Popen[bytes], timeout: float) -> bool:  # noqa: ASYNC109
    """Wait for the child's exit on a pidfd, so the loop is never blocked."""
    if popen.poll() is not None:
        return True
    try:
        fd = os.pidfd_open(popen.pid)
    except ProcessLookupError:
        return popen.poll() is not None
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    loop.add_reader(fd, gone.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return popen.poll() is not None


def command(
    config: FakeConfig, args: Sequence[str] = (), python: str = sys.executable
) -> list[str]:
    """The argv that runs ``config`` (``args``: extra raw flags, after the generated ones)."""
    return [python, "-m", "fakegateway", *to_argv(config), *args]


# The directory that holds this package: the child runs the same code as its parent
# (a checkout's, not an older installed copy).
_HOME: Final = str(Path(__file__).resolve().parent.parent)


def _child_env(config: FakeConfig, env: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    # A token inherited from the parent's environment must not change what config says.
    out.pop(TOKEN_ENV, None)
    if config.token is not None:
        out[TOKEN_ENV] = config.token
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _HOME not in paths:
        out["PYTHONPATH"] = os.pathsep.join([_HOME, *paths])
    return out


def _launch(
    config: FakeConfig,
    args: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | Path | None,
    stderr: Stderr,
) -> subprocess.Popen[bytes]:
    target: int | IO[Any] | None
    opened: IO[Any] | None = None
    if isinstance(stderr, Path):
        target = opened = stderr.open("ab")
    else:
        target = stderr
    try:
        return subprocess.Popen(
            command(config, args),
            env=_child_env(config, env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=target,
            start_new_session=True,
        )
    finally:
        if opened is not None:
            opened.close()


def _url_from(buffer: bytes) -> str:
    line = buffer.partition(b"\n")[0].decode(errors="replace").strip()
    if not line.startswith("http://"):
        raise FakeStartError(f"the fake gateway printed {line!r} instead of its URL")
    return line.rstrip("/")


def _failure(
    popen: subprocess.Popen[bytes],
    timeout: float,
    eof: bool = False,
) -> FakeStartError:
    if eof:
        # Its stdout closed: it is exiting; give it a moment to say with which status.
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(2.0)
    code = popen.poll()
    if code is not None:
        return FakeStartError(f"the fake gateway exited with {code} before printing its URL")
    return FakeStartError(f"the fake gateway printed no URL within {timeout:g} s")


def spawn(
    config: FakeConfig | None = None,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stderr: Stderr = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> FakeProcess:
    """Start the fake and return once it serves. ``env`` replaces the inherited environment;
    ``stderr`` (its logs): inherited (None), ``subprocess.DEVNULL``, a file or a Path."""
    config = config or FakeConfig()
    popen = _launch(config, args, env, cwd, stderr)
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise _failure(popen, timeout)
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise _failure(popen, timeout, eof=True)
                buffer += chunk
        return FakeProcess(config, popen, _url_from(buffer))
    except BaseException:
        _terminate(popen, STOP_TIMEOUT_S)
        raise


async def spawn_async(
    config: FakeConfig | None = None,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stderr: Stderr = None,
    timeout: float = STARTUP_TIMEOUT_S,  # noqa: ASYNC109
) -> FakeProcess:
    """``spawn`` for asyncio code: waits for the URL without blocking the loop; cancelled
    (Ctrl-C), it stops the child rather than leave it running alone."""
    config = config or FakeConfig()
    popen = _launch(config, args, env, cwd, stderr)
    try:
        async with asyncio.timeout(timeout):
            url = await _read_url(popen, timeout)
    except TimeoutError:
        error = _failure(popen, timeout)
        await _terminate_async(popen, STOP_TIMEOUT_S)
        raise error from None
    except BaseException:
        await _terminate_async(popen, STOP_TIMEOUT_S)
        raise
    return FakeProcess(config, popen, url)


async def _read_url(popen: subprocess.Popen[bytes], timeout: float) -> str:  # noqa: ASYNC109
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    buffer = b""
    try:
        while b"\n" not in buffer:
            await readable.wait()
            readable.clear()
            chunk = os.read(fd, 4096)
            if not chunk:
                raise _failure(popen, timeout, eof=True)
            buffer += chunk
    finally:
        loop.remove_reader(fd)
    return _url_from(buffer)

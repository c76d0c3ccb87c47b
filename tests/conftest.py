"""Suite-wide rules: tests that drive a real server binary (redis-server, prometheus, promtool)
skip on a developer machine without it, but FAIL under CI (``CI=true``) and in ``make test``
(``SHARDMGR_REQUIRE_SERVERS=1``), so a broken install step can never turn into a green run.

Mark a test or module with ``@pytest.mark.needs_binary("promtool", ...)``; a fixture that
starts a server calls :func:`require_binary` itself (fixtures cannot carry marks).
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "SHARDMGR_REQUIRE_SERVERS"
INSTALL_HINT = "run `make system-deps` (Debian packages prometheus, redis-server)"


def servers_required() -> bool:
    """True where a missing server binary is a broken setup, not an optional extra."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(REQUIRE_ENV) == "1"


def require_binary(name: str) -> str:
    """The path of ``name``; skips the calling test when it is missing, or fails it where
    servers are required."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed: {INSTALL_HINT}"
    if servers_required():
        pytest.fail(f"{message} (required because CI=true or {REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_binary(*names): skip without these executables, fail under CI or make test",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs_binary"):
        for name in marker.args:
            require_binary(name)

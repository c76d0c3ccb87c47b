"""Fixtures the supervisor's unit tests share with its integration suite."""

from tests.supervisor.conftest import token

__all__ = ["token"]

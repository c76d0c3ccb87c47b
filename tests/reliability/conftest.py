"""Shards in these tests check their state changes strictly, as in tests/worker."""

from tests.worker.conftest import strict_shard_transitions

__all__ = ["strict_shard_transitions"]

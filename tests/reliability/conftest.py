"""Shards in these tests check their state changes strictly, as in tests/unit/workers."""

from tests.unit.workers.conftest import strict_shard_transitions

__all__ = ["strict_shard_transitions"]

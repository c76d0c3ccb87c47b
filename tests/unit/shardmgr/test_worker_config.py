"""What a worker starts with, derived from the supervisor's settings in one place."""

from __future__ import annotations

import msgspec

from shardmgr.config import Settings
from shardmgr.workerconfig import SAME_NAMED_FIELDS, worker_config
from workers import ipc


def _types(struct: type[msgspec.Struct]) -> dict[str, object]:
    return {f.name: f.type for f in msgspec.structs.fields(struct)}


def test_same_named_settings_have_the_worker_configs_type() -> None:
    # Passed through without a conversion, so a type that differs would reach the worker.
    settings, config = _types(Settings), _types(ipc.WorkerConfig)
    assert SAME_NAMED_FIELDS
    assert {n: settings[n] for n in SAME_NAMED_FIELDS} == {n: config[n] for n in SAME_NAMED_FIELDS}


def test_same_named_settings_and_derived_ones_reach_the_worker() -> None:
    settings = Settings(
        compress="zstd-stream",
        large_threshold=99,
        log_level="debug",
        heartbeat_ack_check=False,
        intents="GUILDS",
    )
    config = worker_config(
        settings, worker_id=3, token="t", gateway_url="ws://x", num_shards=8, shards=[]
    )
    assert (config.compress, config.large_threshold) == ("zstd-stream", 99)
    assert config.log_level == "DEBUG"
    assert config.check_heartbeat_acks is False
    assert config.intents == 1
    assert (config.worker_id, config.num_shards) == (3, 8)

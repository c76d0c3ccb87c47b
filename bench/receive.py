"""Benchmark 1: receive-path throughput, and the choice of inflater.

Contenders run in one process, interleaved run by run (so a noisy neighbour slows all of them
alike), median of the runs:

* ``limit``: the smallest possible Python receive loop: one decompressor, the suffix check,
  ``msgspec.json.decode`` of the envelope with ``d`` left raw;
* ``stdlib``: the same loop with ``json.loads`` of the whole message (a naive client);
* ``shardmgr``: the worker's real receive path (``bench.receive_shardmgr``);
* ``shardmgr_model`` / ``shardmgr_data``: the same with a handler that calls
  ``event.model()`` (typed models) / ``event.data()`` (dicts) on every event.

The loops are written out one by one on purpose: a shared helper would add a call per
message to the very thing being measured.

Each runs over the zlib-stream corpus and over the zstd-stream corpus. The inflaters (stdlib
zlib, zlib-ng, isal) are also timed alone over the zlib-stream corpus, so the worker's choice
is backed by a number from the same run.
"""

from __future__ import annotations

import json
import statistics
import time
import zlib
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any, Final

import msgspec
import zstandard

from bench import corpus as corpus_mod
from bench import receive_shardmgr
from bench.results import Row, failed
from workers import codec
from workers.events import Event

SUFFIX: Final = corpus_mod.ZLIB_SUFFIX


class _Envelope(msgspec.Struct):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")
    s: int | None = None
    t: str | None = None


_decode_envelope: Final = msgspec.json.Decoder(_Envelope).decode

Loop = Callable[[list[bytes]], int]


def limit_zlib(frames: list[bytes]) -> int:
    inflate = zlib.decompressobj().decompress
    decode = _decode_envelope
    buf = bytearray()
    n = 0
    for frame in frames:
        if frame[-4:] != SUFFIX:
            buf += frame
            continue
        if buf:
            buf += frame
            data = inflate(buf)
            buf = bytearray()
        else:
            data = inflate(frame)
        decode(data)
        n += 1
    return n


def stdlib_zlib(frames: list[bytes]) -> int:
    inflate = zlib.decompressobj().decompress
    loads = json.loads
    buf = bytearray()
    n = 0
    for frame in frames:
        if frame[-4:] != SUFFIX:
            buf += frame
            continue
        if buf:
            buf += frame
            data = inflate(buf)
            buf = bytearray()
        else:
            data = inflate(frame)
        loads(data)
        n += 1
    return n


def limit_zstd(frames: list[bytes]) -> int:
    inflate = zstandard.ZstdDecompressor().decompressobj().decompress
    decode = _decode_envelope
    n = 0
    for frame in frames:
        decode(inflate(frame))
        n += 1
    return n


def stdlib_zstd(frames: list[bytes]) -> int:
    inflate = zstandard.ZstdDecompressor().decompressobj().decompress
    loads = json.loads
    n = 0
    for frame in frames:
        loads(inflate(frame))
        n += 1
    return n


async def _noop(event: Event) -> None:
    return None


async def _model_of_every_event(event: Event) -> None:
    event.model()


async def _data_of_every_event(event: Event) -> None:
    event.data()


async def _floor_zlib(frames: list[bytes]) -> int:
    inflate = receive_shardmgr.inflater_module().decompressobj().decompress
    decode = _decode_envelope
    handler = _noop
    buf = bytearray()
    last_seq = 0
    n = 0
    for frame in frames:
        if frame[-4:] != SUFFIX:
            buf += frame
            continue
        if buf:
            buf += frame
            data = inflate(buf)
            buf = bytearray()
        else:
            data = inflate(frame)
        env = decode(data)
        if env.op == 0:
            seq = env.s
            if seq is not None:
                if seq <= last_seq:
                    continue
                last_seq = seq
            await handler(Event(0, seq, env.t or "", env.d))
        n += 1
    return n


async def _floor_zstd(frames: list[bytes]) -> int:
    inflate = codec.zstd.ZstdDecompressor().decompress
    decode = _decode_envelope
    handler = _noop
    last_seq = 0
    n = 0
    for frame in frames:
        env = decode(inflate(frame))
        if env.op == 0:
            seq = env.s
            if seq is not None:
                if seq <= last_seq:
                    continue
                last_seq = seq
            await handler(Event(0, seq, env.t or "", env.d))
        n += 1
    return n


def floor_loop(stream: str) -> Loop:
    """The limit loop plus the least that delivering each event to an async handler costs
    in Python: the seq check, an ``Event`` and awaiting a no-op coroutine, with the
    worker's own inflater. No receive path that calls an ``async def handler(event)`` per
    event can be faster than this one with that inflater, so it shows how much of
    shardmgr's distance to the limit loop is there for any design."""
    body = _floor_zlib if stream == "zlib" else _floor_zstd
    loop = receive_shardmgr.new_loop()
    return lambda frames: loop.run_until_complete(body(frames))


def inflate_only(module: ModuleType) -> Loop:
    """Inflate the zlib-stream corpus with ``module.decompressobj`` and nothing else."""

    def run(frames: list[bytes]) -> int:
        inflate = module.decompressobj().decompress
        buf = bytearray()
        total = 0
        for frame in frames:
            if frame[-4:] != SUFFIX:
                buf += frame
                continue
            if buf:
                buf += frame
                total += len(inflate(buf))
                buf = bytearray()
            else:
                total += len(inflate(frame))
        return total

    return run


def inflater_modules() -> dict[str, ModuleType]:
    """Every zlib-compatible inflater installed here, stdlib first."""
    mods: dict[str, ModuleType] = {"zlib": zlib}
    try:
        from zlib_ng import zlib_ng

        mods["zlib-ng"] = zlib_ng
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        mods["isal"] = isal_zlib
    except ImportError:
        pass
    return mods


def _interleaved(contenders: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median seconds per contender; each run times every contender once, in rotating order."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for name in names:  # warm-up: imports, caches, first-touch allocations
        contenders[name]()
    for i in range(runs):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            t0 = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _check_dispatches(got: int, want: int) -> None:
    if got != want:
        raise RuntimeError(f"shardmgr's handler saw {got} dispatches, corpus has {want}")


def _swapped(loop: Loop, frames: list[bytes], module: ModuleType) -> Callable[[], int]:
    def run() -> int:
        with receive_shardmgr.zlib_swapped(module):
            return loop(frames)

    return run


def run(quick: bool) -> list[Row]:
    events = 2_000 if quick else 20_000
    runs = 5 if quick else 9
    c = corpus_mod.build(events, quick=quick)
    mb = c.inflated_bytes / 1e6
    n_msgs = len(c.messages)
    rows: list[Row] = []

    # Every loop must see every message, or the timings compare different work.
    for name, fn, frames in (
        ("limit_zlib", limit_zlib, c.zlib_frames),
        ("stdlib_zlib", stdlib_zlib, c.zlib_frames),
        ("limit_zstd", limit_zstd, c.zstd_frames),
        ("stdlib_zstd", stdlib_zstd, c.zstd_frames),
    ):
        got = fn(frames)
        if got != n_msgs:
            raise RuntimeError(f"{name} decoded {got} messages, corpus has {n_msgs}")

    # Inflaters alone.
    mods = inflater_modules()
    inflate_times = _interleaved(
        {name: partial(inflate_only(m), c.zlib_frames) for name, m in mods.items()}, runs
    )
    base = inflate_times["zlib"]
    for name, secs in inflate_times.items():
        if name == "zlib":
            rows.append(Row("inflate.zlib", mb / secs, "MB/s", note="stdlib zlib, the baseline"))
            continue
        rows.append(
            Row(
                f"inflate.{name}",
                mb / secs,
                "MB/s",
                baseline=mb / base,
                ratio=secs / base,
                note="ratio = time vs stdlib zlib (< 1 is faster)",
            )
        )

    # The worker's zlib inflater should be the fastest one installed (within noise).
    used = next((n for n, m in mods.items() if m is receive_shardmgr.inflater_module()), None)
    if used is not None:
        fastest = min(inflate_times, key=inflate_times.__getitem__)
        rows.append(
            Row(
                "inflate.worker_inflater_vs_fastest",
                mb / inflate_times[used],
                "MB/s",
                baseline=mb / inflate_times[fastest],
                ratio=inflate_times[used] / inflate_times[fastest],
                direction="<=",
                threshold=1.05,
                note=f"workers/codec.py inflates zlib-stream with {used}; fastest here: {fastest}",
            )
        )

    for stream, frames, limit, stdlib in (
        ("zlib", c.zlib_frames, limit_zlib, stdlib_zlib),
        ("zstd", c.zstd_frames, limit_zstd, stdlib_zstd),
    ):
        contenders: dict[str, Callable[[], Any]] = {
            "limit": partial(limit, frames),
            "stdlib": partial(stdlib, frames),
            "floor": partial(floor_loop(stream), frames),
        }
        shard_error = ""
        try:
            shard_loop = receive_shardmgr.make_loop(f"{stream}-stream")
            _check_dispatches(shard_loop(frames), c.dispatches)
            contenders["shardmgr"] = partial(shard_loop, frames)
            decoders = (("model", _model_of_every_event), ("data", _data_of_every_event))
            for decoded, handler in decoders:
                decoding_loop = receive_shardmgr.make_loop(f"{stream}-stream", handler)
                _check_dispatches(decoding_loop(frames), c.dispatches)
                contenders[f"shardmgr_{decoded}"] = partial(decoding_loop, frames)
        except Exception as exc:  # the worker's code is absent or broken: report, don't hide
            shard_error = f"{type(exc).__name__}: {exc}"
        # What the worker would gain from each other inflater: its own receive path with the
        # zlib module swapped (only for zlib-stream, and only for modules it does not use).
        swaps: dict[str, ModuleType] = {}
        if stream == "zlib" and not shard_error:
            current = receive_shardmgr.inflater_module()
            swaps = {n: m for n, m in mods.items() if m is not current}
            for n, m in swaps.items():
                contenders[f"shardmgr+{n}"] = _swapped(shard_loop, frames, m)
                _check_dispatches(contenders[f"shardmgr+{n}"](), c.dispatches)
        t = _interleaved(contenders, runs)
        for n in swaps:
            ts = t[f"shardmgr+{n}"]
            rows.append(
                Row(
                    f"receive.{stream}.shardmgr_with_{n}_time_vs_limit",
                    n_msgs / ts,
                    "msgs/s",
                    baseline=n_msgs / t["limit"],
                    ratio=ts / t["limit"],
                    note=f"the worker's receive path with {n} as its inflater; time vs "
                    f"the shipped one: {ts / t['shardmgr']:.3f}",
                )
            )
        rows.append(
            Row(
                f"receive.{stream}.limit",
                n_msgs / t["limit"],
                "msgs/s",
                note=f"{mb / t['limit']:.0f} MB/s inflated",
            )
        )
        rows.append(
            Row(
                f"receive.{stream}.stdlib",
                n_msgs / t["stdlib"],
                "msgs/s",
                note=f"{mb / t['stdlib']:.0f} MB/s inflated",
            )
        )
        rows.append(
            Row(
                f"receive.{stream}.floor_time_vs_limit",
                n_msgs / t["floor"],
                "msgs/s",
                baseline=n_msgs / t["limit"],
                ratio=t["floor"] / t["limit"],
                note="the limit loop + the least any per-event async handler costs "
                "(seq check, Event, await of a no-op), with the worker's inflater",
            )
        )
        if shard_error:
            rows.append(
                failed(f"receive.{stream}.shardmgr_time_vs_limit", "msgs/s", shard_error, "<=", 1.1)
            )
            rows.append(
                failed(f"receive.{stream}.stdlib_time_vs_shardmgr", "x", shard_error, ">=", 2.2)
            )
            rows.append(
                failed(
                    f"receive.{stream}.shardmgr_model_time_vs_limit",
                    "msgs/s",
                    shard_error,
                    "<=",
                    2.0,
                )
            )
            continue
        ts = t["shardmgr"]
        rows.append(
            Row(
                f"receive.{stream}.shardmgr_time_vs_floor",
                n_msgs / ts,
                "msgs/s",
                baseline=n_msgs / t["floor"],
                ratio=ts / t["floor"],
                note="what shardmgr's bookkeeping (counters, state machine, backlog) adds "
                "to the per-event floor",
            )
        )
        rows.append(
            Row(
                f"receive.{stream}.shardmgr_time_vs_limit",
                n_msgs / ts,
                "msgs/s",
                baseline=n_msgs / t["limit"],
                ratio=ts / t["limit"],
                direction="<=",
                threshold=1.1,
                note=f"{mb / ts:.0f} MB/s inflated, {c.dispatches / ts:.0f} events/s; "
                f"stretch: ratio <= 1.0 ({'met' if ts <= t['limit'] else 'not met'})",
            )
        )
        rows.append(
            Row(
                f"receive.{stream}.stdlib_time_vs_shardmgr",
                n_msgs / ts,
                "msgs/s",
                baseline=n_msgs / t["stdlib"],
                ratio=t["stdlib"] / ts,
                direction=">=",
                threshold=2.2,
                note="ratio = how many times faster than the stdlib loop",
            )
        )
        tm = t["shardmgr_model"]
        rows.append(
            Row(
                f"receive.{stream}.shardmgr_model_time_vs_limit",
                n_msgs / tm,
                "msgs/s",
                baseline=n_msgs / t["limit"],
                ratio=tm / t["limit"],
                direction="<=",
                threshold=2.0,
                note=f"event.model() on every event (typed models); with event.data() "
                f"(dicts) instead: {t['shardmgr_data'] / t['limit']:.2f}x; "
                f"discord.py's models are about 5.4x",
            )
        )
    return rows

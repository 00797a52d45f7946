"""Streams: how many session runs go at once on the CPU, and how a batch is split between them.

One onnxruntime session is safe to run from several threads at once. With one intra-op thread a run executes on
the calling thread, so each decoding thread can decode its share of a batch and then run the model on it, and
the cores never wait for each other between ops (docs/runtime.md, "Threads").
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_PROVIDERS = ("cpu", "auto")  # "auto" may end on the CPU; a GPU session gets one stream after it opens


@dataclass(frozen=True)
class ThreadPlan:
    intra_op_threads: int  # onnxruntime intra-op threads of the one session
    streams: int  # session runs at once, each on its own share of a batch


def plan_threads(provider: str, intra_op_threads: int | None, streams: int | None, cores: int) -> ThreadPlan:
    """The session's intra-op threads and the number of concurrent runs, from what the caller fixed.

    Nothing fixed: on the CPU one intra-op thread per run and one run per core; on a GPU every core for the
    session and one run. Only ``intra_op_threads`` fixed: one run with that many threads (what a thread-count
    benchmark means). Only ``streams`` fixed: the cores shared between them.
    """
    for name, value in (("intra_op_threads", intra_op_threads), ("streams", streams)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    cores = max(1, cores)
    if streams is not None:
        return ThreadPlan(intra_op_threads or max(1, cores // streams), streams)
    if intra_op_threads is not None:
        return ThreadPlan(intra_op_threads, 1)
    if provider in CPU_PROVIDERS:
        return ThreadPlan(1, cores)
    return ThreadPlan(cores, 1)


def split_bounds(count: int, parts: int, unit: int = 1) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous (start, stop) ranges covering ``count`` rows, each a multiple of ``unit`` rows
    but the last (a model with a fixed batch axis runs whole batches of ``unit``); no empty range."""
    if count <= 0:
        return []
    units = -(-count // unit)
    per_part = -(-units // max(1, parts)) * unit
    return [(start, min(count, start + per_part)) for start in range(0, count, per_part)]

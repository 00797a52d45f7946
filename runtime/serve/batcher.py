"""Dynamic batching: requests from many clients gathered into one model call, answered one by one.

A request is a job: one array of N items (images or tensors, first axis) and an asyncio future. The gatherer (a task
on the event loop) waits for a free worker, takes the oldest job, then keeps taking jobs until the batch holds
``max_batch_size`` items or the oldest job has waited ``max_queue_delay``; the batch's jobs are grouped by what can
be stacked (kind, dtype and item shape: pixel tensors of different sizes run apart) and run on a worker thread;
each job's future then gets its own rows. The event loop never waits on the model. A request with more items than
``max_batch_size`` still runs as one call; ``max_batch_size`` 1 is one request per call (batching off).

The queue is bounded: ``submit`` raises QueueFull when ``max_queue_size`` jobs are waiting (queued, or gathered into
a batch that has not started), so an overloaded server answers 503 at once instead of growing without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# (kind, batch) -> (N, classes) scores; kind is "pixels" (uint8 NHWC images) or "tensor" (the model's own input).
RunBatch = Callable[[str, np.ndarray], np.ndarray]


class QueueFull(RuntimeError):
    """The queue holds max_queue_size jobs already."""


class BatchObserver(Protocol):
    def batch_ran(self, size: int, queue_seconds: list[float], compute_seconds: float) -> None: ...

    def queued(self, jobs: int) -> None: ...


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 64  # items (images) per model call
    max_queue_delay_s: float = 0.0  # how long the oldest job may wait for others
    max_queue_size: int = 1024  # jobs waiting before submit refuses
    workers: int = 2  # model calls at once


@dataclass
class _Job:
    kind: str
    items: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[object, ...]:
        return (self.kind, self.items.dtype.str, self.items.shape[1:])


class Batcher:
    """Gathers submitted jobs into batches for ``run`` on worker threads; start() on the serving loop first."""

    def __init__(self, run: RunBatch, settings: BatchSettings, observer: BatchObserver | None = None) -> None:
        self.run = run
        self.settings = settings
        self.observer = observer
        self._jobs: deque[_Job] = deque()
        self._waiting = 0  # jobs submitted whose batch has not started running
        self._arrived = asyncio.Event()
        self._flush = False  # draining: run what is queued without waiting for more
        self._slots = asyncio.Semaphore(settings.workers)
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="cifar-serve-batch")
        self._gatherer: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return self._waiting

    def start(self) -> None:
        self._gatherer = asyncio.get_running_loop().create_task(self._gather_forever())

    async def submit(self, kind: str, items: np.ndarray) -> np.ndarray:
        """The model's scores for ``items`` (N first), computed in some batch; QueueFull when the queue is full."""
        if self._waiting >= self.settings.max_queue_size:
            raise QueueFull(f"the queue holds {self._waiting} requests")
        job = _Job(kind, items, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._waiting += 1
        self._arrived.set()
        self._observe_queue()
        return await job.future

    def flush(self) -> None:
        """From now on run queued jobs at once (the server is draining: no more are coming)."""
        self._flush = True
        self._arrived.set()

    async def stop(self) -> None:
        """Run every queued job, wait for the running batches, stop the gatherer and the worker threads."""
        self.flush()
        while self._waiting or self._running:
            await asyncio.sleep(0.005)
        if self._gatherer is not None:
            self._gatherer.cancel()
            await asyncio.gather(self._gatherer, return_exceptions=True)
        self._pool.shutdown(wait=True)

    def _observe_queue(self) -> None:
        if self.observer is not None:
            self.observer.queued(self._waiting)

    async def _gather_forever(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._gather()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _gather(self) -> list[_Job]:
        """The next batch: the oldest job, and more until it is full or the oldest job's delay is over."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        limit = self.settings.max_batch_size
        batch = [self._jobs.popleft()]
        count = len(batch[0].items)
        deadline = batch[0].enqueued + self.settings.max_queue_delay_s
        while count < limit:
            if self._jobs:
                if count + len(self._jobs[0].items) > limit:
                    break
                job = self._jobs.popleft()
                batch.append(job)
                count += len(job.items)
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or self._flush:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch

    async def _run_batch(self, batch: list[_Job]) -> None:
        self._waiting -= len(batch)
        self._observe_queue()
        try:
            live = [job for job in batch if not job.future.done()]  # a client that went away costs nothing
            groups: dict[tuple[object, ...], list[_Job]] = {}
            for job in live:
                groups.setdefault(job.key, []).append(job)
            started = time.perf_counter()
            for jobs in groups.values():
                await self._run_group(jobs, started)
        finally:
            self._slots.release()

    async def _run_group(self, jobs: list[_Job], started: float) -> None:
        loop = asyncio.get_running_loop()
        stacked = jobs[0].items if len(jobs) == 1 else np.concatenate([job.items for job in jobs])
        try:
            scores = await loop.run_in_executor(self._pool, self.run, jobs[0].kind, stacked)
        except Exception as error:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        finished = time.perf_counter()
        if self.observer is not None:
            self.observer.batch_ran(len(stacked), [started - job.enqueued for job in jobs], finished - started)
        start = 0
        for job in jobs:
            stop = start + len(job.items)
            if not job.future.done():
                job.future.set_result(scores[start:stop])
            start = stop

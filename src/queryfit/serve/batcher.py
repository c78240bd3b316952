"""Micro-batching: concurrent requests share one model call.

A model embeds 16 short texts in one call in little more time than one, so a server that calls
the model once per request wastes most of it under load. Requests wait in a queue; one worker
takes the first, adds whatever else is already waiting (and whatever arrives within
``max_wait`` seconds) up to ``max_batch`` texts, and makes one model call per kind (queries and
documents have different prefixes). While the model runs, the next batch gathers by itself, so
under load the batches grow without any extra wait. The wait for company is only spent when the
previous batch had company: a client sending one request at a time never waits at all.

The model runs on one worker thread: the event loop keeps accepting requests meanwhile, and the
model (not thread-safe in general) never sees two calls at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from queryfit.embedders.base import Kind

#: ``(texts, kind) -> (vectors [n, dim], tokens per text [n])``, called on the worker thread.
EmbedFn = Callable[[list[str], Kind], tuple[np.ndarray, Sequence[int]]]


@dataclass
class BatchStats:
    """Counters since start: requests served, texts embedded, model calls, largest call."""

    requests: int = 0
    texts: int = 0
    model_calls: int = 0
    largest_call: int = 0


@dataclass
class _Job:
    texts: list[str]
    kind: Kind
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Coalesces concurrent ``embed`` calls into few calls of ``fn``; start it inside a loop.

    A request larger than ``max_batch`` texts is never split: it makes one call on its own (the
    embedder batches internally), so its vectors come from one call as they would in-process.
    """

    def __init__(self, fn: EmbedFn, *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        if max_batch <= 0:
            raise ValueError(f"max_batch must be positive, not {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be 0 or more seconds, not {max_wait}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._held: _Job | None = None  # taken from the queue, but did not fit the last batch
        self._company = False  # the last batch held several requests: worth waiting for more
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the worker on the running loop."""
        if self._task is not None:
            raise RuntimeError("the batcher is already running")
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queryfit-model")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="queryfit-batcher")

    async def close(self) -> None:
        """Finish every queued request, then stop the worker and its thread."""
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def embed(self, texts: list[str], kind: Kind) -> tuple[np.ndarray, list[int]]:
        """Vectors and token counts for ``texts``, computed in a batch with other requests."""
        if self._queue is None or self._task is None:
            raise RuntimeError("the batcher is not running; call start() first")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(list(texts), kind, future))
        return await future

    # -- the worker ------------------------------------------------------------------------------

    async def _next_batch(self) -> list[_Job]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = self._held if self._held is not None else await self._queue.get()
        self._held = None
        batch, size = [first], len(first.texts)
        deadline = loop.time() + (self.max_wait if self._company else 0.0)
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:  # TimeoutError itself only from 3.11 on
                    break
            if size + len(job.texts) > self.max_batch:
                self._held = job  # first in the next batch: requests keep their order
                break
            batch.append(job)
            size += len(job.texts)
        self._company = len(batch) > 1
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            try:
                for kind in ("query", "document"):
                    jobs = [job for job in batch if job.kind == kind]
                    if jobs:
                        await self._call(loop, jobs, kind)  # type: ignore[arg-type]
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _call(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], kind: Kind) -> None:
        texts = [text for job in jobs for text in job.texts]
        try:
            vectors, tokens = await loop.run_in_executor(self._executor, self.fn, texts, kind)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the failure
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.stats.model_calls += 1
        self.stats.largest_call = max(self.stats.largest_call, len(texts))
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            self.stats.requests += 1
            self.stats.texts += len(job.texts)
            if not job.future.done():  # the client may have hung up meanwhile
                job.future.set_result((vectors[start:end], list(tokens[start:end])))
            start = end

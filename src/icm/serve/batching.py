"""Requests that arrive together, judged together: jobs for the same policy that come within
``wait`` seconds of the first are handed to one worker as one batch (at most ``size``), so a model
backend scores their images in one forward pass."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from icm.serve.errors import NotReady

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class _Open(Generic[Job, Result]):
    jobs: list[Job] = field(default_factory=list)
    futures: list[Future[Result]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batcher(Generic[Job, Result]):
    """``submit(key, job)`` on the event loop returns the job's future; ``run(jobs)`` runs on the
    executor with one result per job, in order. Jobs under different keys never share a batch.
    Should ``run`` raise, every job of its batch gets that exception. A job whose future is
    cancelled before its batch starts is left out of it; once the batch runs, its futures can no
    longer be cancelled, so each of them ends when the work really ends, with its own result."""

    def __init__(
        self, run: Callable[[list[Job]], list[Result]], executor: Executor, size: int, wait: float
    ) -> None:
        if size < 1:
            raise ValueError("a batch holds at least one job")
        self.run = run
        self.executor = executor
        self.size = size
        self.wait = wait
        self._open: dict[Hashable, _Open[Job, Result]] = {}

    def submit(self, key: Hashable, job: Job) -> Future[Result]:
        future: Future[Result] = Future()
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Open()
            if self.size > 1:
                batch.timer = asyncio.get_running_loop().call_later(self.wait, self._flush, key)
        batch.jobs.append(job)
        batch.futures.append(future)
        if len(batch.jobs) >= self.size:
            self._flush(key)
        return future

    def _flush(self, key: Hashable) -> None:
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        try:
            self.executor.submit(self._run, batch)
        except RuntimeError:  # the executor is shutting down
            for future in batch.futures:
                if future.set_running_or_notify_cancel():
                    future.set_exception(NotReady("the service is shutting down"))

    def _run(self, batch: _Open[Job, Result]) -> None:
        started = [(job, future) for job, future in zip(batch.jobs, batch.futures, strict=True)
                   if future.set_running_or_notify_cancel()]
        if not started:
            return
        try:
            results = self.run([job for job, _ in started])
            if len(results) != len(started):
                raise RuntimeError(f"{len(results)} results for a batch of {len(started)}")
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for _, future in started:
                future.set_exception(exc)
            return
        for (_, future), result in zip(started, results, strict=True):
            future.set_result(result)

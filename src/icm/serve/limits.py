"""Per-key rate limits (429) and the bounded admission in front of the judging workers (503).

Rate limits use the ``limits`` library (a moving window; counters in memory, or in a shared store
such as Redis when several replicas serve). Admission is a counter on the event loop: a request
either gets a place among ``workers + queue_size`` at once or is answered 503, so a burst never
grows memory."""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import Future
from typing import Any

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from icm.errors import InputError
from icm.serve.errors import Overloaded, RateLimited


class RateLimit:
    """``600/minute`` per key; ``None`` for no limit."""

    def __init__(self, spec: str | None, storage: str = "memory://") -> None:
        try:
            self.item = parse(spec) if spec else None
        except ValueError as exc:
            raise InputError(f"bad rate limit {spec!r}: write e.g. 10/second or 600/minute") from exc
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage)) if self.item else None

    def hit(self, key_id: str) -> None:
        """Count one request of ``key_id``; RateLimited when it is over its limit."""
        if self.item is None or self._limiter is None:
            return
        if not self._limiter.hit(self.item, key_id):
            stats = self._limiter.get_window_stats(self.item, key_id)
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(f"rate limit of {self.item} per key reached; retry in {retry_after} s", retry_after)


class Admission:
    """At most ``workers + queue_size`` requests judged or waiting; the rest get 503 at once."""

    def __init__(self, workers: int, queue_size: int, retry_after: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.retry_after = retry_after
        self.in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued(self) -> int:
        return max(0, self.in_flight - self.workers)

    def enter(self) -> None:
        """Take a place (on the event loop), or raise Overloaded."""
        if self.in_flight >= self.capacity:
            raise Overloaded(
                f"all {self.workers} workers are busy and {self.capacity - self.workers} requests are "
                f"waiting; retry in {self.retry_after} s",
                self.retry_after,
            )
        self._loop = asyncio.get_running_loop()
        self.in_flight += 1

    def leave_when_done(self, work: Future[Any]) -> None:
        """Give the place back when the work really ends: a request that timed out keeps its
        place until its worker is free again, so the bound stays true."""
        loop = self._loop
        assert loop is not None

        def done(_: Future[Any]) -> None:
            loop.call_soon_threadsafe(self.leave)

        work.add_done_callback(done)

    def leave(self) -> None:
        """Give a place back (on the event loop)."""
        self.in_flight -= 1

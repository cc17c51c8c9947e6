"""Judging behind the API: the store's cache, the bounded admission, a worker pool off the event
loop (requests that arrive together judged as one batch) and the request timeout. What is done
with a judgement (its stored row, its review, its image) is :mod:`icm.serve.recording`'s."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from icm.backends.base import Backend, load_backend, load_backend_options
from icm.banks.matcher import BankMatcher
from icm.media import MediaLimits, name_warnings
from icm.moderator import Moderator, error_result
from icm.policy.schema import Policy
from icm.results import KNOWN_CONTENT, ErrorCode, ErrorInfo, ModerationResult
from icm.serve.batching import Batcher
from icm.serve.errors import NotReady
from icm.serve.limits import Admission
from icm.serve.metrics import Metrics
from icm.serve.settings import ServeSettings
from icm.serve.store.banks import SqlBanks
from icm.serve.store.database import Store
from icm.sources import ImageItem

log = logging.getLogger("icm.serve")

# the Moderators of the (narrowed) policies judged lately, each prepared once
_MODERATORS = 64


@dataclass
class Job:
    """One image to judge under one (possibly narrowed) policy, and who asked."""

    data: bytes
    name: str
    policy: Policy
    rules_key: str
    key_id: str | None
    request_id: str | None
    endpoint: str
    fresh: bool = False
    source: str | None = None
    dsa_facts: dict[str, object] | None = None
    #: a decisions request's choice and score questions (:mod:`icm.serve.choosing`): judged with
    #: the rules in one prefill, their label probabilities written to ``choice_answers``
    choices: tuple[Any, ...] = ()
    choice_answers: list[list[float]] | None = None
    sha256: str = ""  # of ``data``: computed once, here, for the cache, the decoding and the record

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.data).hexdigest()

    @property
    def batch_key(self) -> tuple[str, int, str]:
        """Jobs judged in one batch share their (narrowed) policy; a job with choice questions
        is a batch of its own."""
        own = f"|choices:{id(self)}" if self.choices else ""
        return self.policy.id, self.policy.version, self.rules_key + own


@dataclass(frozen=True)
class Judged:
    """A job's result, and whether it is a judgement of the same image reused from the store."""

    result: ModerationResult
    cached: bool


class Judging:
    """Owns the backend and the workers; ``await judge(job)`` is the one way an image is judged."""

    def __init__(
        self, settings: ServeSettings, store: Store, metrics: Metrics, backend: Backend | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        #: the store's known-content banks, indexed once and shared by every worker and the HMA routes
        self.banks = BankMatcher(SqlBanks(store), refresh_s=1.0)
        self.limits = MediaLimits(
            max_bytes=settings.max_body_bytes,
            max_pixels=settings.max_pixels,
            min_side=settings.min_side,
            max_frames=settings.max_frames,
            max_decoded_pixels=settings.max_decoded_pixels,
        )
        self.options = load_backend_options(settings.backend_options) if settings.backend_options else {}
        self.backend_key = settings.backend + (
            "?" + json.dumps(self.options, sort_keys=True, default=str) if self.options else ""
        )
        self._given_backend = backend
        self.backend: Backend | None = None
        self.load_error: str | None = None
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="icm-judge")
        self.batch_size = 1
        self.admission = Admission(settings.workers, settings.queue_size, settings.retry_after)
        self.batcher: Batcher[Job, ModerationResult] = Batcher(self._moderate, self.pool, 1, 0.0)
        self._moderators: OrderedDict[tuple[str, int, str], Moderator] = OrderedDict()
        self._moderators_lock = threading.Lock()

    # -- life ------------------------------------------------------------------------------

    def load(self, policies: list[Policy]) -> None:
        """Load the backend and what the policies need (in a thread: /readyz says when it is done)."""
        try:
            backend = self._given_backend or load_backend(self.settings.backend, **self.options)
            for policy in policies:
                backend.prepare(policy)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise
        self.batch_size = self.settings.batch_size or (8 if backend.batches_images else 1)
        # a worker holds a whole batch: the bound counts requests, so it grows with the batch
        self.admission = Admission(
            self.settings.workers * self.batch_size, self.settings.queue_size, self.settings.retry_after
        )
        self.batcher = Batcher(self._moderate, self.pool, self.batch_size, self.settings.batch_wait_ms / 1000)
        self.backend = backend

    @property
    def ready(self) -> bool:
        return self.backend is not None

    @property
    def not_ready_reason(self) -> str:
        if self.load_error is not None:
            return f"the backend failed to load: {self.load_error}"
        return "the backend is still loading; retry shortly (see /readyz)"

    def close(self) -> None:
        """Finish the work in hand, then free the backend."""
        self.pool.shutdown(wait=True, cancel_futures=False)
        if self.backend is not None and self._given_backend is None:
            self.backend.close()

    # -- judging ---------------------------------------------------------------------------

    async def judge(self, job: Job) -> Judged:
        """The job's result: a stored judgement of the same image when there is one (unless
        ``fresh``), else judged in a batch within the request timeout (an error result when it
        is not, or the batch failed)."""
        backend = self.backend
        if backend is None:
            raise NotReady(self.not_ready_reason)
        if not job.fresh:
            row = await run_in_threadpool(
                self.store.cached, job.sha256, job.policy.id, job.policy.version, self.backend_key, job.rules_key
            )
            if row is not None:
                stored = ModerationResult.model_validate(row.result)
                if await run_in_threadpool(self._banks_still_agree, stored):
                    self.metrics.cache_hits.inc()
                    return Judged(_reused(stored, job.name), cached=True)
        self.admission.enter()
        self._gauge()
        work = self.batcher.submit(job.batch_key, job)
        self.admission.leave_when_done(work)
        loop = asyncio.get_running_loop()  # after the place is given back, on the loop that counts it
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._gauge))
        waiting = asyncio.wrap_future(work)
        # asyncio.wait never cancels what it waits for: on a timeout the work goes on, holding its
        # place in the admission and its batch, until it really ends
        done, _ = await asyncio.wait({waiting}, timeout=self.settings.request_timeout)
        if not done:
            waiting.add_done_callback(_ignore_outcome)
            timeout = ErrorInfo(
                code=ErrorCode.timeout,
                message=f"not judged within the request timeout of {self.settings.request_timeout:g} s",
            )
            return Judged(error_result(job.policy, backend, job.name, job.sha256, timeout), cached=False)
        try:
            return Judged(waiting.result(), cached=False)
        except NotReady:
            raise
        except Exception as exc:  # noqa: BLE001 - the batch itself failed: stored as this image's error
            log.error("judging failed", exc_info=exc)
            error = ErrorInfo(code=ErrorCode.backend_error, message=f"{type(exc).__name__}: {exc}")
            return Judged(error_result(job.policy, backend, job.name, job.sha256, error), cached=False)

    def _banks_still_agree(self, stored: ModerationResult) -> bool:
        """Whether a stored judgement still stands beside the banks as they are now: one that no
        bank entry matches and that no bank decided (a bank changed since: an entry added for a
        copy, or removed by an appeal, so the image is judged again, banks first)."""
        if any(e.criterion == KNOWN_CONTENT for v in stored.verdicts for e in v.evidence):
            return False
        return stored.hashes is None or not self.banks.match(stored.hashes, stored.sha256)

    def _gauge(self) -> None:
        self.metrics.queue_depth.set(self.admission.queued)
        self.metrics.in_flight.set(self.admission.in_flight)

    def _moderate(self, jobs: list[Job]) -> list[ModerationResult]:
        """One batch (jobs of one policy) in one backend call, on a worker thread."""
        self.metrics.batch_size.observe(len(jobs))
        if jobs[0].choices:  # one job (its own batch key): rules and choice questions together
            from icm.serve.choosing import ChoosingBackend

            assert self.backend is not None
            choosing = ChoosingBackend(self.backend, jobs[0].choices)
            moderator = Moderator(jobs[0].policy, backend=choosing, limits=self.limits, banks=self.banks)
            results = moderator.moderate_batch([ImageItem(key=jobs[0].name, data=jobs[0].data,
                                                          sha256=jobs[0].sha256)])
            jobs[0].choice_answers = choosing.answers
            return results
        moderator = self._moderator(jobs[0])
        return moderator.moderate_batch([ImageItem(key=job.name, data=job.data, sha256=job.sha256) for job in jobs])

    def _moderator(self, job: Job) -> Moderator:
        """The Moderator of the job's (narrowed) policy, shared by every worker: the backend
        prepares a policy once, not every batch."""
        assert self.backend is not None
        with self._moderators_lock:
            moderator = self._moderators.get(job.batch_key)
            if moderator is None:
                moderator = Moderator(job.policy, backend=self.backend, limits=self.limits, banks=self.banks)
                self._moderators[job.batch_key] = moderator
                if len(self._moderators) > _MODERATORS:
                    self._moderators.popitem(last=False)
            else:
                self._moderators.move_to_end(job.batch_key)
            return moderator


def _reused(result: ModerationResult, name: str) -> ModerationResult:
    """A stored judgement as this request's answer: its own image name, and the warnings that
    name earns (not those of the upload judged first)."""
    media = {k: v for k, v in result.media.items() if k != "warnings"}
    warnings = name_warnings(name, str(media.get("format", "")))
    if warnings:
        media["warnings"] = warnings
    return result.model_copy(update={"image": name, "media": media})


def _ignore_outcome(future: asyncio.Future[ModerationResult]) -> None:
    """The outcome of work nobody waits for any more (its request timed out) is not an error."""
    if not future.cancelled():
        future.exception()

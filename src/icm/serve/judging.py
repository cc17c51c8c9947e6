"""Judging behind the API: the store's cache, the bounded admission, a worker pool off the event
loop (requests that arrive together judged as one batch), the request timeout, and one stored
record for every answered request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from icm.backends.base import Backend, Explain, load_backend, load_backend_options
from icm.decision import error_statement
from icm.errors import InputError
from icm.media import MediaLimits
from icm.moderator import Moderator
from icm.policy.schema import Policy
from icm.results import ErrorCode, ErrorInfo, ModerationResult, PolicyRef, Verdict
from icm.serve.batching import Batcher
from icm.serve.errors import AnswerUnreadable, ImageRejected, JudgeFailed, JudgeTimeout, NotReady
from icm.serve.limits import Admission
from icm.serve.metrics import Metrics
from icm.serve.review.queue import choose
from icm.serve.settings import ServeSettings
from icm.serve.store.database import Store
from icm.serve.store.images import image_store
from icm.serve.store.models import StoredResult, utcnow
from icm.serve.store.review import ReviewStore
from icm.sources import ImageItem

log = logging.getLogger("icm.serve")

_MODEL_CODES = {ErrorCode.backend_error, ErrorCode.model_output, ErrorCode.timeout}


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
    #: a decisions request's choice and score questions (:mod:`icm.serve.choosing`): judged with
    #: the rules in one prefill, their label probabilities written to ``choice_answers``
    choices: tuple[Any, ...] = ()
    choice_answers: list[list[float]] | None = None

    @property
    def batch_key(self) -> tuple[str, int, str]:
        """Jobs judged in one batch share their (narrowed) policy; a job with choice questions
        is a batch of its own."""
        own = f"|choices:{id(self)}" if self.choices else ""
        return self.policy.id, self.policy.version, self.rules_key + own


@dataclass
class Judgement:
    id: str
    result: ModerationResult
    cached: bool


class Judging:
    """Owns the backend and the workers; ``await judge(job)`` is the one way an image is judged."""

    def __init__(
        self, settings: ServeSettings, store: Store, metrics: Metrics, backend: Backend | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.reviews = ReviewStore(store)
        self.metrics = metrics
        self.images = image_store(settings, store)
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

    async def judge(self, job: Job) -> Judgement:
        if self.backend is None:
            raise NotReady(self.not_ready_reason)
        sha256 = hashlib.sha256(job.data).hexdigest()
        if not job.fresh:
            row = await run_in_threadpool(
                self.store.cached, sha256, job.policy.id, job.policy.version, self.backend_key, job.rules_key
            )
            if row is not None:
                self.metrics.cache_hits.inc()
                # the judgement is reused; the answer is this request's own, stored as its own
                reused = ModerationResult.model_validate(row.result).model_copy(update={"image": job.name})
                stored = await run_in_threadpool(self._store, job, reused, True)
                return Judgement(stored.id, reused, cached=True)
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
            result = self._error_result(job, sha256, ErrorInfo(
                code=ErrorCode.timeout,
                message=f"not judged within the request timeout of {self.settings.request_timeout:g} s",
            ))
        else:
            try:
                result = waiting.result()
            except NotReady:
                raise
            except Exception as exc:  # noqa: BLE001 - the batch itself failed: stored as this image's error
                log.error("judging failed", exc_info=exc)
                result = self._error_result(
                    job, sha256, ErrorInfo(code=ErrorCode.backend_error, message=f"{type(exc).__name__}: {exc}")
                )
        row = await run_in_threadpool(self._store, job, result)
        self.metrics.decisions.labels(job.policy.id, result.decision.value).inc()
        if result.error is not None:
            raise _error_for(result.error, row.id)
        return Judgement(row.id, result, cached=False)

    def _gauge(self) -> None:
        self.metrics.queue_depth.set(self.admission.queued)
        self.metrics.in_flight.set(self.admission.in_flight)

    def _moderate(self, jobs: list[Job]) -> list[ModerationResult]:
        """One batch (jobs of one policy) in one backend call, on a worker thread."""
        assert self.backend is not None
        self.metrics.batch_size.observe(len(jobs))
        if jobs[0].choices:  # one job (its own batch key): rules and choice questions together
            from icm.serve.choosing import ChoosingBackend

            choosing = ChoosingBackend(self.backend, jobs[0].choices)
            moderator = Moderator(jobs[0].policy, backend=choosing, limits=self.limits)
            results = moderator.moderate_batch([ImageItem(key=jobs[0].name, data=jobs[0].data)])
            jobs[0].choice_answers = choosing.answers
            return results
        moderator = Moderator(jobs[0].policy, backend=self.backend, limits=self.limits)
        return moderator.moderate_batch([ImageItem(key=job.name, data=job.data) for job in jobs])

    def _error_result(self, job: Job, sha256: str, error: ErrorInfo) -> ModerationResult:
        """The record of an image the worker gave no result for (never allow: not judged)."""
        assert self.backend is not None
        return ModerationResult(
            image=job.name,
            sha256=sha256,
            policy=PolicyRef(id=job.policy.id, version=job.policy.version),
            decision=job.policy.uncertainty.error_action,
            explanation=error_statement(job.policy, error),
            backend=self.backend.info(),
            error=error,
        )

    def _store(self, job: Job, result: ModerationResult, reused: bool = False) -> StoredResult:
        """This request's row; a reused judgement is not queued again (its first row was offered
        to people when it was judged), but its image is kept like that row's."""
        queued = None if reused else choose(result, self.settings.review_sample, self.settings.review_double)
        kept = self._keep_image(job.data, result, queued is not None)
        row = StoredResult(
            id="res_" + uuid.uuid4().hex,
            created_at=utcnow(),
            sha256=result.sha256,
            policy_id=job.policy.id,
            policy_version=job.policy.version,
            rules=job.rules_key,
            backend=self.backend_key,
            key_id=job.key_id,
            request_id=job.request_id,
            endpoint=job.endpoint,
            decision=result.decision.value,
            error_code=result.error.code.value if result.error is not None else None,
            image_kept=kept,
            total_ms=result.timing_ms.get("total"),
            result=result.model_dump(mode="json"),
        )
        stored = self.store.add_result(row)
        if queued is not None:
            self.reviews.enqueue(stored, queued.kind, queued.needed)
        return stored

    def _keep_image(self, data: bytes, result: ModerationResult, queued: bool = False) -> bool:
        """Keep, named by its sha256, an image a person may need to see: one sent to review, or a
        judged one whose decision restricts it (an appeal shows it). An upload that could not be
        judged for what it is (no image, truncated, too large) is never queued: its bytes are not
        kept."""
        if self.images is None or result.sha256 is None or not data:
            return False
        if not queued and (result.error is not None or result.decision.value == "allow"):
            return False
        self.images.put(result.sha256, data)
        return True


def _ignore_outcome(future: asyncio.Future[ModerationResult]) -> None:
    """The outcome of work nobody waits for any more (its request timed out) is not an error."""
    if not future.cancelled():
        future.exception()


def narrow(policy: Policy, rules: list[str] | None) -> tuple[Policy, str]:
    """The policy limited to ``rules`` (in the policy's order), and the key the store files it under."""
    if not rules:
        return policy, ""
    known = {rule.id for rule in policy.rules}
    unknown = [r for r in rules if r not in known]
    if unknown:
        raise InputError(f"{policy.id} v{policy.version} has no rule {', '.join(unknown)}; its rules: "
                         f"{', '.join(sorted(known))}")
    chosen = [rule for rule in policy.rules if rule.id in set(rules)]
    return policy.model_copy(update={"rules": chosen}), ",".join(rule.id for rule in chosen)


def with_explanations(result: ModerationResult, explain: Explain) -> ModerationResult:
    """The answer carries the explanations ``explain`` asks for (the store keeps them all)."""
    if explain is Explain.all:
        return result
    keep = Verdict.violates if explain is Explain.violations else None
    verdicts = [v if v.verdict is keep else v.model_copy(update={"explanation": ""}) for v in result.verdicts]
    return result.model_copy(update={"verdicts": verdicts})


def _error_for(error: ErrorInfo, result_id: str) -> Exception:
    message = f"{error.code.value}: {error.message}"
    if error.code is ErrorCode.timeout:
        return JudgeTimeout(message, result_id)
    if error.code is ErrorCode.model_output:
        return AnswerUnreadable(message, result_id)
    if error.code in _MODEL_CODES:
        return JudgeFailed(message, result_id)
    return ImageRejected(error.code.value, error.message, result_id)

"""Moderator: sources -> decoding -> backend -> results, with streaming, resume and per-item errors."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from icm.backends.base import Backend, BackendError, Judged, load_backend
from icm.decision import decide, error_statement, explain_decision
from icm.media import DecodedImage, MediaError, MediaLimits, file_stamp, load_image
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.results import ErrorCode, ErrorInfo, ModerationResult, PolicyRef
from icm.sink import OutputRules, ResultSink
from icm.sources import ImageItem, fetch, iter_sources
from icm.summary import RunSummary

ImageSource = str | Path | ImageItem


class Moderator:
    """Judges images against a policy with a backend.

    >>> moderator = Moderator("general")                      # doctest: +SKIP
    >>> for result in moderator.stream(["photos/"]):          # doctest: +SKIP
    ...     print(result.image, result.decision, result.explanation)
    """

    def __init__(
        self,
        policy: str | Path | Policy,
        backend: str | Backend = "local",
        *,
        workers: int | None = None,
        limits: MediaLimits | None = None,
        **backend_options: Any,
    ) -> None:
        """``workers``: images judged at once (default: as many as the backend asks for in its
        ``parallel_images``, e.g. the local engine one per core; 1 otherwise)."""
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.policy = load_policy(policy)
        self.backend = load_backend(backend, **backend_options)
        self.workers = workers or max(1, int(getattr(self.backend, "parallel_images", 1)))
        self.limits = limits or MediaLimits()
        self._prepared = False

    # -- one image ---------------------------------------------------------------------------

    def moderate(self, image: ImageSource | bytes, name: str = "<bytes>") -> ModerationResult:
        """Judge one image (a path, an ImageItem, or raw bytes)."""
        item = ImageItem(key=name, data=image) if isinstance(image, bytes) else _as_item(image)
        self.prepare()
        return self._judge(item, self._decode(item))

    def moderate_batch(self, images: Sequence[ImageSource]) -> list[ModerationResult]:
        """Judge several images together, in order: the backend sees every decodable one in one
        ``judge_batch`` call (one model batch where it can); each failure stays its image's own."""
        items = [_as_item(image) for image in images]
        return self.judge_decoded(items, [self._decode(item) for item in items])

    def judge_decoded(
        self, items: Sequence[ImageItem], decoded: Sequence[DecodedImage | ErrorInfo]
    ) -> list[ModerationResult]:
        """:meth:`moderate_batch` for images decoded elsewhere by :func:`decode_item` (in Ray Data
        tasks, say): one ``judge_batch`` call for the decodable ones, in order."""
        self.prepare()
        images_ok = [d for d in decoded if not isinstance(d, ErrorInfo)]
        started = time.perf_counter()
        outcomes = iter(self._judge_batch(images_ok))
        return [
            self._result(item, d, None if isinstance(d, ErrorInfo) else next(outcomes), started)
            for item, d in zip(items, decoded, strict=True)
        ]

    def _judge_batch(self, images: Sequence[DecodedImage]) -> list[Judged]:
        """The backend's ``judge_batch``, held to its protocol as ``_judge`` holds ``judge``: one
        outcome per image, and a failure of the whole call recorded for each image, never raised."""
        if not images:
            return []
        try:
            outcomes = list(self.backend.judge_batch(images, self.policy))
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded per item
            return [exc] * len(images)
        if len(outcomes) != len(images):
            failed = BackendError(f"the backend answered {len(outcomes)} of {len(images)} images")
            return [failed] * len(images)
        return outcomes

    # -- many images -------------------------------------------------------------------------

    def stream(
        self, sources: Iterable[ImageSource], skip: Callable[[ImageItem], bool] | None = None
    ) -> Iterator[ModerationResult]:
        """Results in input order; decoding runs ahead of judging so the two overlap."""
        self.prepare()
        window = max(2, 2 * self.workers + 2)
        pending: deque[Future[ModerationResult]] = deque()
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="icm-decode") as decoders,
            ThreadPoolExecutor(self.workers, thread_name_prefix="icm-judge") as judges,
        ):
            for item in _expand(sources):
                if skip is not None and skip(item):
                    continue
                decoded = decoders.submit(self._decode, item)
                pending.append(judges.submit(self._judge_when_decoded, item, decoded))
                while len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def run(
        self,
        sources: Iterable[ImageSource],
        out: Path | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        retry_errors: bool = False,
        on_result: Callable[[ModerationResult], None] | None = None,
    ) -> RunSummary:
        """Judge everything, append each result to ``out`` as it comes, return a summary.

        ``out`` is written by this run alone (a second run on it raises
        :class:`~icm.lock.OutputLockedError`), and a file that already holds results is refused
        (:class:`~icm.sink.OutputExistsError`) unless ``resume`` or ``overwrite``.

        With ``resume``, images already judged under the same policy version in ``out`` are
        skipped, and so are images whose file failed to decode and has not changed since (their
        error line stands); the rest (timeouts, backend failures, missing files, changed files)
        are judged again and appended. ``retry_errors`` judges every image with an error again.
        A retry that fails exactly as recorded adds no line.
        """
        rules = OutputRules(resume=resume, overwrite=overwrite, retry_errors=retry_errors,
                            has_out=out is not None)
        if isinstance(sources, list | tuple) and "-" not in sources:
            # Walked before ``out`` is opened: a missing folder leaves no file. Paths on stdin stay
            # a stream (judged as they come), so a list naming "-" is walked as it is judged.
            sources = list(_expand(sources))
        summary = RunSummary()
        start = time.perf_counter()
        policy = PolicyRef(id=self.policy.id, version=self.policy.version)
        sink = ResultSink(out, policy, rules) if out is not None else None

        try:
            for result in self.stream(sources, skip=partial(rules.skip, summary=summary)):
                if sink is not None and rules.writes(result):
                    sink.write(result)
                summary.add(result)
                if on_result is not None:
                    on_result(result)
        finally:
            summary.seconds = time.perf_counter() - start
            if sink is not None:
                sink.close()
        return summary

    def close(self) -> None:
        self.backend.close()

    # -- internals ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Prepare the backend for the policy, once (the first judgement does it otherwise)."""
        if not self._prepared:
            self.backend.prepare(self.policy)
            self._prepared = True

    def _decode(self, item: ImageItem) -> DecodedImage | ErrorInfo:
        return decode_item(item, self.limits)

    def _judge_when_decoded(
        self, item: ImageItem, decoded: Future[DecodedImage | ErrorInfo]
    ) -> ModerationResult:
        return self._judge(item, decoded.result())

    def _judge(self, item: ImageItem, decoded: DecodedImage | ErrorInfo) -> ModerationResult:
        started = time.perf_counter()
        if isinstance(decoded, ErrorInfo):
            return self._result(item, decoded, None, started)
        try:
            outcome: Judged = self.backend.judge(decoded, self.policy)
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded per item
            outcome = exc
        return self._result(item, decoded, outcome, started)

    def _result(
        self,
        item: ImageItem,
        decoded: DecodedImage | ErrorInfo,
        outcome: Judged | None,
        started: float,
    ) -> ModerationResult:
        """The result of one image: its decode error, its backend failure, or its judgement
        (``outcome`` is None only when it did not decode)."""
        policy_ref = PolicyRef(id=self.policy.id, version=self.policy.version)
        if isinstance(decoded, ErrorInfo):
            # bytes in hand (an upload, an image read from a URI) name the record even when they
            # do not decode, so the rejected image can be found by its sha256
            sha256 = hashlib.sha256(item.data).hexdigest() if item.data else None
            return self._error_result(item, decoded, policy_ref, sha256, {})
        assert outcome is not None, "a decoded image always has an outcome"
        if isinstance(outcome, Exception):
            error = ErrorInfo(code=_error_code(outcome), message=f"{type(outcome).__name__}: {outcome}")
            return self._error_result(item, error, policy_ref, decoded.sha256, decoded.describe())
        verdicts = outcome
        decision = decide(self.policy, verdicts)
        return ModerationResult(
            image=item.key,
            sha256=decoded.sha256,
            policy=policy_ref,
            decision=decision,
            verdicts=verdicts,
            explanation=explain_decision(self.policy, verdicts, decision),
            backend=self.backend.info(),
            timing_ms=_timing(decoded.decode_ms, started),
            media=decoded.describe(),
        )

    def _error_result(
        self,
        item: ImageItem,
        error: ErrorInfo,
        policy_ref: PolicyRef,
        sha256: str | None,
        media: dict[str, Any],
    ) -> ModerationResult:
        return ModerationResult(
            image=item.key,
            sha256=sha256,
            policy=policy_ref,
            decision=self.policy.uncertainty.error_action,  # never allow: the schema refuses it
            explanation=error_statement(self.policy, error),
            backend=self.backend.info(),
            media=media,
            error=error,
        )


def decode_item(item: ImageItem, limits: MediaLimits) -> DecodedImage | ErrorInfo:
    """One image decoded, or why it could not be (an error to record, never an exception)."""
    # Looked at before reading: a file rewritten while it is read then differs from its
    # stamp, and --resume tries it again.
    stamp = file_stamp(item.path) if item.data is None and item.path is not None else None
    fetched = fetch(item, limits)  # a URI's bytes, read here
    if isinstance(fetched, ErrorInfo):
        return fetched
    item = fetched
    try:
        if item.data is not None:
            return load_image(item.key, data=item.data, limits=limits)
        return load_image(item.path or item.key, limits=limits)
    except MediaError as exc:
        error = ErrorInfo(code=exc.code, message=exc.message)
        error.file = stamp if error.code.permanent else None
        return error
    except Exception as exc:  # a decoder bug must not stop the batch
        return ErrorInfo(code=ErrorCode.not_an_image, message=f"{type(exc).__name__}: {exc}",
                         file=stamp)


def _error_code(exc: Exception) -> ErrorCode:
    """``timeout`` for a model or server that did not answer in time (backends raise
    :class:`~icm.backends.base.BackendTimeout`, a TimeoutError), else ``backend_error``."""
    return ErrorCode.timeout if isinstance(exc, TimeoutError) else ErrorCode.backend_error


def _timing(decode_ms: float, judge_started: float) -> dict[str, float]:
    judge_ms = round((time.perf_counter() - judge_started) * 1000, 2)
    return {"decode": decode_ms, "judge": judge_ms, "total": round(decode_ms + judge_ms, 2)}


def _as_item(source: ImageSource) -> ImageItem:
    return source if isinstance(source, ImageItem) else ImageItem.at(str(source), str(source))


def _expand(sources: Iterable[ImageSource]) -> Iterator[ImageItem]:
    for source in sources:
        if isinstance(source, ImageItem):
            yield source
        else:
            yield from iter_sources([source])

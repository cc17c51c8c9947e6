"""Moderator: sources -> decoding -> backend -> results, with streaming, resume and per-item errors."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from icm.backends.base import Backend, BackendError, Judged, load_backend
from icm.banks.hashing import hash_image
from icm.banks.matcher import BankMatcher
from icm.banks.store import BankStore
from icm.banks.verdicts import bank_verdicts, merge, settles
from icm.decision import decide, error_statement, explain_decision
from icm.media import DecodedImage, MediaError, MediaLimits, file_stamp, load_image
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.results import ErrorCode, ErrorInfo, Hashes, ModerationResult, PolicyRef, RuleVerdict
from icm.sink import OutputRules, ResultSink
from icm.sources import ImageItem, fetch, iter_sources
from icm.summary import RunSummary

ImageSource = str | Path | ImageItem
#: known-content banks: a bank folder's path, a store of banks, or a matcher over one (shared)
BankSource = BankMatcher | BankStore | str | Path


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
        banks: BankSource | None = None,
        **backend_options: Any,
    ) -> None:
        """``workers``: images judged at once (default: as many as the backend asks for in its
        ``parallel_images``, e.g. the local engine one per core; 1 otherwise).

        ``banks``: known-content banks, matched before the backend is called: a deny match decides
        the rule it names (and, when that settles the decision, no model runs), an allow match the
        rules it clears. A folder path (see ``icm bank``), a :class:`~icm.banks.store.BankStore`,
        or a :class:`~icm.banks.matcher.BankMatcher` (shared by several Moderators)."""
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.policy = load_policy(policy)
        self.backend = load_backend(backend, **backend_options)
        self.workers = workers or max(1, int(getattr(self.backend, "parallel_images", 1)))
        self.limits = limits or MediaLimits()
        self.banks = as_matcher(banks)
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
        known = {id(image): self._known(image) for image in images_ok}
        # an image whose decision the banks settle never reaches the backend
        to_judge = [image for image in images_ok if not known[id(image)][1]]
        started = time.perf_counter()
        outcomes = iter(self._judge_batch(to_judge))
        results = []
        for item, d in zip(items, decoded, strict=True):
            if isinstance(d, ErrorInfo):
                results.append(self._result(item, d, None, started))
                continue
            decided, settled = known[id(d)]
            outcome: Judged = [] if settled else next(outcomes)
            results.append(self._result(item, d, outcome, started, decided, settled))
        return results

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
        if isinstance(decoded, ErrorInfo):
            return self._result(item, decoded, None, time.perf_counter())
        decided, settled = self._known(decoded)
        started = time.perf_counter()
        if settled:
            return self._result(item, decoded, [], started, decided, settled)
        try:
            outcome: Judged = self.backend.judge(decoded, self.policy)
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded per item
            outcome = exc
        return self._result(item, decoded, outcome, started, decided)

    def _known(self, image: DecodedImage) -> tuple[dict[str, RuleVerdict], bool]:
        """The image hashed and matched against the banks: the verdicts the banks decide, and
        whether they settle the image's decision (then no model runs)."""
        _hash(image, dihedral=self.banks is not None and self.banks.dihedral)
        if self.banks is None:
            return {}, False
        started = time.perf_counter()
        matches = self.banks.match(image.hashes or Hashes(), image.sha256)
        if image.animated:  # the evidence names the frame of the animation, not of the judged list
            matches = [replace(m, frame=image.frame_indices[m.frame]) for m in matches]
        decided = bank_verdicts(self.policy, matches)
        image.match_ms = round((time.perf_counter() - started) * 1000, 2)
        return decided, settles(self.policy, decided)

    def _result(
        self,
        item: ImageItem,
        decoded: DecodedImage | ErrorInfo,
        outcome: Judged | None,
        started: float,
        decided: dict[str, RuleVerdict] | None = None,
        settled: bool = False,
    ) -> ModerationResult:
        """The result of one image: its decode error, its backend failure, or its judgement
        (``outcome`` is None only when it did not decode), with the verdicts the banks decided in
        place of the backend's (``settled``: the banks alone decided it; no model ran)."""
        policy_ref = PolicyRef(id=self.policy.id, version=self.policy.version)
        if isinstance(decoded, ErrorInfo):
            # bytes in hand (an upload, an image read from a URI) name the record even when they
            # do not decode, so the rejected image can be found by its sha256
            sha256 = item.sha256 or (hashlib.sha256(item.data).hexdigest() if item.data else None)
            return error_result(self.policy, self.backend, item.key, sha256, decoded)
        assert outcome is not None, "a decoded image always has an outcome"
        if isinstance(outcome, Exception):
            error = ErrorInfo(code=_error_code(outcome), message=f"{type(outcome).__name__}: {outcome}")
            return error_result(self.policy, self.backend, item.key, decoded.sha256, error, decoded.describe(),
                                decoded.hashes)
        verdicts = merge(outcome, decided or {})
        decision = decide(self.policy, verdicts)
        return ModerationResult(
            image=item.key,
            sha256=decoded.sha256,
            policy=policy_ref,
            decision=decision,
            verdicts=verdicts,
            explanation=explain_decision(self.policy, verdicts, decision, settled=settled),
            backend=self.backend.info(),
            timing_ms=_timing(decoded, None if settled else started),
            media=decoded.describe(),
            hashes=decoded.hashes,
        )


def error_result(policy: Policy, backend: Backend, image: str, sha256: str | None, error: ErrorInfo,
                 media: dict[str, Any] | None = None, hashes: Hashes | None = None) -> ModerationResult:
    """The record of an image that has no judgement: its error, and the policy's error action
    (never allow: the schema refuses it), explained."""
    return ModerationResult(
        image=image,
        sha256=sha256,
        policy=PolicyRef(id=policy.id, version=policy.version),
        decision=policy.uncertainty.error_action,
        explanation=error_statement(policy, error),
        backend=backend.info(),
        media=media or {},
        error=error,
        hashes=hashes,
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
            return load_image(item.key, data=item.data, limits=limits, sha256=item.sha256)
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


def as_matcher(banks: BankSource | None) -> BankMatcher | None:
    """A matcher over the banks given to a Moderator (a folder path is opened as a bank folder)."""
    if banks is None or isinstance(banks, BankMatcher):
        return banks
    if isinstance(banks, str | Path):
        from icm.banks.folder import BankFolder

        return BankMatcher(BankFolder(banks))
    return BankMatcher(banks)


def _hash(image: DecodedImage, dihedral: bool = False) -> None:
    """The image's hashes, computed once from its decoded frames, with how long that took."""
    if image.hashes is None or (dihedral and not image.hashes.dihedral):
        started = time.perf_counter()
        hash_image(image, dihedral=dihedral)
        image.hash_ms = round((time.perf_counter() - started) * 1000, 2)


def _timing(image: DecodedImage, judge_started: float | None) -> dict[str, float]:
    """Milliseconds per step. ``match`` is there when banks were matched; ``judge`` is 0 when
    they settled the decision and no model ran (``judge_started`` None)."""
    judge_ms = 0.0 if judge_started is None else round((time.perf_counter() - judge_started) * 1000, 2)
    timing = {"decode": image.decode_ms, "hash": image.hash_ms}
    if image.match_ms is not None:
        timing["match"] = image.match_ms
    timing["judge"] = judge_ms
    return {**timing, "total": round(sum(timing.values()), 2)}


def _as_item(source: ImageSource) -> ImageItem:
    return source if isinstance(source, ImageItem) else ImageItem.at(str(source), str(source))


def _expand(sources: Iterable[ImageSource]) -> Iterator[ImageItem]:
    for source in sources:
        if isinstance(source, ImageItem):
            yield source
        else:
            yield from iter_sources([source])

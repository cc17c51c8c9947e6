"""``icm data generate``: labelled images + a policy -> instruction data, stage by stage.

    explain   an MLLM explains each image under the policy, given its label's prior
    filter    prior leaks removed; looping, empty or over-long explanations rejected
    qa        a text LLM writes yes/no, what, how and multiple-choice questions
    filter    malformed, duplicate and unanswerable questions rejected
    augment   the same image under every rule set of the family, and with violated rules relaxed
    export    JSONL + Parquet splits by image, plus LLaVA and ShareGPT layouts

Every model call is cached on disk (``OUT/cache``) by its inputs, prompt version and model, so a
killed run resumes where it stopped and a re-run with a changed stage recomputes only that stage.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from icm.backends.base import load_chat_model
from icm.datagen.cache import StageCache
from icm.datagen.dataset import write_dataset
from icm.datagen.exporters.layouts import write_layouts
from icm.datagen.sample import Sample
from icm.datagen.stages.augment import explanation_samples, question_samples, verdict_samples
from icm.datagen.stages.explain import Explainer, ExplainStage, LabelledImage, StageResult, load_explainer
from icm.datagen.stages.filter import filter_explanation, filter_questions
from icm.datagen.stages.qa import DEFAULT_COUNTS, QAStage
from icm.errors import InputError
from icm.llm import ChatModel
from icm.lock import output_lock
from icm.media import MediaError, load_image
from icm.policy.categories import LabelError, label_criteria, load_label_map
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.sources import iter_images, iter_manifest

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[str, int], Callable[[], None]]


class PipelineError(InputError):
    """A run that cannot start: no images, unknown labels, an output directory in the way."""


@dataclass
class GenerateConfig:
    images: Path
    out: Path
    policy: str = "icm-r1"
    family: list[str] | None = None  # None: every built-in policy of the primary policy's family
    mllm: str = "local"
    llm: str = "llama-cpp:smollm2"
    label_map: Path | None = None
    validation: float = 0.1
    parquet: bool = False
    concurrency: int = 1
    qa_counts: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_COUNTS))
    relax: bool = True
    limit: int | None = None
    resume: bool = False


@dataclass
class StageReport:
    inputs: int = 0
    outputs: int = 0
    cached: int = 0
    tokens: int = 0
    seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # the first few distinct error messages

    def as_dict(self) -> dict[str, Any]:
        report = {"in": self.inputs, "out": self.outputs, "cached": self.cached, "tokens": self.tokens,
                  "seconds": round(self.seconds, 2), "rejected": dict(self.rejected)}
        return {**report, "errors": self.errors} if self.errors else report


def collect_images(source: Path, label_map: dict[str, list[str]], policies: list[Policy]) -> list[LabelledImage]:
    """A folder with one sub-folder per label, or a manifest (.csv / .jsonl with image and label)."""
    pairs: list[tuple[str, Path, str]] = []
    if source.is_dir():
        for label_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in iter_images(label_dir):
                pairs.append((str(path.relative_to(source)), path, label_dir.name))
    elif source.is_file():
        for item in iter_manifest(source):
            if "label" not in item.meta:
                raise PipelineError(f"{source}: every row needs a 'label' (the image's category)")
            pairs.append((item.key, item.path or Path(item.key), str(item.meta["label"])))
    else:
        raise PipelineError(f"no image folder or manifest at {source}")
    if not pairs:
        raise PipelineError(f"{source} holds no labelled images (a folder per label, or an image,label manifest)")
    unknown = sorted({label for _, _, label in pairs if label not in label_map
                      and label not in {c.id for p in policies for r in p.rules for c in r.criteria}})
    if unknown:
        raise PipelineError(f"labels not in the label map and not criterion ids: {unknown}; pass --label-map")
    return [LabelledImage(image_id=key, path=path, label=label,
                          criteria=tuple(label_criteria(label, label_map, policies)))
            for key, path, label in pairs]


def family_of(policy: Policy, names: list[str] | None) -> list[Policy]:
    from icm.policy.load import builtin_policy_names

    if names is not None:
        return [load_policy(n) for n in names]
    if policy.family is None:
        return [policy]
    members = [load_policy(n) for n in builtin_policy_names()]
    family = [p for p in members if p.family == policy.family and p.id != policy.id]
    return [policy, *family]


class Pipeline:
    def __init__(
        self,
        config: GenerateConfig,
        *,
        explainer: Explainer | None = None,
        llm: ChatModel | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.policy = load_policy(config.policy)
        self.family = family_of(self.policy, config.family)
        self.label_map = load_label_map(config.label_map)
        self._explainer = explainer
        self._llm = llm
        self._progress = progress
        self.report: dict[str, StageReport] = {}

    def _map(self, stage: str, items: list[T], work: Callable[[T], R]) -> Iterator[tuple[T, R]]:
        tick = self._progress(stage, len(items)) if self._progress else (lambda: None)
        with ThreadPoolExecutor(max(1, self.config.concurrency)) as pool:
            for item, result in zip(items, pool.map(work, items), strict=True):
                tick()
                yield item, result

    def run(self) -> dict[str, Any]:
        config = self.config
        if (config.out / "train.jsonl").exists() and not config.resume:
            raise PipelineError(f"{config.out} already holds a dataset; pass --resume to continue it")
        started = time.perf_counter()
        items = collect_images(config.images, self.label_map, self.family)[: config.limit]
        cache_root = config.out / "cache"
        explainer = self._explainer or load_explainer(config.mllm)
        explain_stage = ExplainStage(explainer, self.policy, StageCache(cache_root, "explain"))

        explain = self.report["explain"] = StageReport(inputs=len(items))
        begin = time.perf_counter()
        explained: list[dict[str, Any]] = []
        for _item, result in self._map("explain", items, partial(_explain_one, explain_stage)):
            self._count(explain, result)
            if result.record is not None:
                explained.append(result.record)
        explain.seconds = time.perf_counter() - begin
        explain.outputs = len(explained)

        flt = self.report["filter_explanations"] = StageReport(inputs=len(explained))
        kept: list[dict[str, Any]] = []
        leaks = 0
        for record in explained:
            cleaned, problem, removed = filter_explanation(record)
            leaks += removed
            if cleaned is None:
                flt.rejected[problem or "unknown"] += 1
            else:
                kept.append(cleaned)
        flt.outputs = len(kept)

        llm = self._llm or load_chat_model(config.llm, temperature=0.2)
        qa_stage = QAStage(llm, StageCache(cache_root, "qa"), config.qa_counts)
        qa = self.report["qa"] = StageReport(inputs=len(kept))
        begin = time.perf_counter()
        answers: dict[str, dict[str, Any]] = {}
        for record, result in self._map("qa", kept, qa_stage.run):
            self._count(qa, result)
            if result.record is not None:
                answers[record["image_id"]] = result.record
        qa.seconds = time.perf_counter() - begin
        qa.outputs = len(answers)

        fq = self.report["filter_questions"] = StageReport()
        augment = self.report["augment"] = StageReport(inputs=len(kept))
        samples: list[Sample] = []
        for record in kept:
            image = os.path.relpath(record["path"], config.out)
            samples += explanation_samples(record, self.policy, image, config.relax)
            samples += verdict_samples(record, self.family, image)
            answer = answers.get(record["image_id"])
            if answer is None:
                continue
            fq.inputs += len(answer["questions"]) + len(answer["multiple_choice"])
            questions, choices, reasons = filter_questions(answer)
            fq.rejected.update(reasons)
            fq.outputs += len(questions) + len(choices)
            samples += question_samples(record, self.policy, image, questions, choices)
        augment.outputs = len(samples)

        manifest = write_dataset(
            samples, config.out, validation_fraction=config.validation, parquet=config.parquet,
            info={"source": "icm data generate", "policy": [self.policy.id, self.policy.version],
                  "family": [[p.id, p.version] for p in self.family], "mllm": explainer.spec, "llm": llm.spec},
        )
        layouts = write_layouts(config.out)
        summary = {
            "stages": {name: stage.as_dict() for name, stage in self.report.items()},
            "rejected": dict(sum((s.rejected for s in self.report.values()), Counter())),
            "tokens": sum(s.tokens for s in self.report.values()),
            "prior_sentences_removed": leaks,
            "samples": {split: info["samples"] for split, info in manifest["splits"].items()},
            "kinds": dict(sum((Counter(info["kinds"]) for info in manifest["splits"].values()), Counter())),
            "layouts": [str(p.relative_to(config.out)) for p in layouts],
            "seconds": round(time.perf_counter() - started, 2),
        }
        (config.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        return summary

    @staticmethod
    def _count(report: StageReport, result: StageResult) -> None:
        """Called on the main thread only, so the counters need no lock."""
        report.cached += int(result.cached)
        report.tokens += result.tokens
        if result.record is None:
            report.rejected[result.rejected or "unknown"] += 1
        if result.error is not None and len(report.errors) < 5 and result.error not in report.errors:
            report.errors.append(result.error)


def _explain_one(stage: ExplainStage, item: LabelledImage) -> StageResult:
    try:
        image = load_image(item.path)
    except MediaError as exc:
        return StageResult(record=None, rejected=f"image unreadable ({exc.code})", error=f"{item.path}: {exc.message}")
    return stage.run(item, image)


def run_pipeline(config: GenerateConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run every stage; returns the report that is also written to ``OUT/report.json``.

    The run holds OUT's one-writer lock throughout: a second run on the same OUT raises
    :class:`~icm.lock.OutputLockedError` at once.
    """
    try:
        with output_lock(config.out):
            return Pipeline(config, progress=progress).run()
    except LabelError as exc:
        raise PipelineError(str(exc)) from exc

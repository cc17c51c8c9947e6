"""``icm data generate``: labelled images + a policy -> instruction data, stage by stage.

The pipeline is a list of stages (:class:`~icm.datagen.stages.base.Stage`), each turning one
typed record per image into the next (:mod:`icm.datagen.records`):

    explain              an MLLM explains each image under the policy, given its label's prior
    filter_explanations  prior leaks removed; looping, empty or over-long explanations rejected
    qa                   a text LLM writes yes/no, what, how and multiple-choice questions
    filter_questions     malformed, duplicate and unanswerable questions rejected
    augment              the same image under every rule set of the family, and with violated
                         rules relaxed: the image's samples

then export: JSONL (+ Parquet) splits by image, the LLaVA and ShareGPT layouts and the report.

Every model call is cached on disk (``OUT/cache``) by its inputs, prompt version and model, so a
killed run resumes where it stopped and a re-run with a changed stage recomputes only that stage.

The model stages run on threads here, or elsewhere through a :data:`FanOut` (``icm data generate
--engine ray`` hands them to :func:`icm.scale.ray.map_on_ray`): each worker then builds the stage
itself from the run's config (:func:`build_model_stage`), so its model is loaded once per worker.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from icm.backends.base import ModelKind, check_spec, load_chat_model
from icm.datagen.cache import StageCache
from icm.datagen.config import MIN_YIELD, GenerateConfig
from icm.datagen.dataset import write_dataset
from icm.datagen.exporters.layouts import write_layouts
from icm.datagen.records import LabelledImage
from icm.datagen.sample import Sample
from icm.datagen.stages.augment import AugmentStage
from icm.datagen.stages.base import Stage, StageReport, StageResult
from icm.datagen.stages.explain import Explainer, ExplainStage, load_explainer
from icm.datagen.stages.filter import PRIOR_SENTENCES, ExplanationFilter, QuestionFilter
from icm.datagen.stages.qa import QAStage
from icm.errors import InputError
from icm.llm import ChatModel
from icm.lock import output_lock
from icm.policy.categories import LabelError, label_criteria, load_label_map
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.sources import iter_images, iter_manifest

Progress = Callable[[str, int], Callable[[], None]]
#: runs a model stage elsewhere: (a picklable factory of the stage's per-item function, the items,
#: a tick per finished item) -> the results in the order of the items
FanOut = Callable[[Callable[[], Callable[[Any], StageResult[Any]]], list[Any], Callable[[], None]],
                  list[StageResult[Any]]]
#: the stages every image goes through, whose yield says whether the run produced anything
YIELD_STAGES = ("explain", "filter_explanations", "qa")


class PipelineError(InputError):
    """A run that cannot start: no images, unknown labels, an output directory in the way."""


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
    """The stages of one run, in order; :meth:`run` passes each stage's records to the next."""

    def __init__(
        self,
        config: GenerateConfig,
        *,
        explainer: Explainer | None = None,
        llm: ChatModel | None = None,
        progress: Progress | None = None,
        fan_out: FanOut | None = None,
    ) -> None:
        self.config = config
        self.policy = load_policy(config.policy)
        self.family = family_of(self.policy, config.family)
        self.label_map = load_label_map(config.label_map)
        self._explainer = explainer
        self._llm = llm
        self._progress = progress
        self._fan_out = fan_out
        self.report: dict[str, StageReport] = {}

    def stages(self, explainer: Explainer, llm: ChatModel) -> list[Stage[Any, Any]]:
        return self._stages(explain_stage(self.config, self.policy, explainer), qa_stage(self.config, llm))

    def _stages(self, explain: Stage[Any, Any], qa: Stage[Any, Any]) -> list[Stage[Any, Any]]:
        return [
            explain,
            ExplanationFilter(),
            qa,
            QuestionFilter(),
            AugmentStage(self.policy, self.family, self.config.out, self.config.relax),
        ]

    def run(self) -> dict[str, Any]:
        config = self.config
        if (config.out / "train.jsonl").exists() and not config.resume:
            raise PipelineError(f"{config.out} already holds a dataset; pass --resume to continue it")
        started = time.perf_counter()
        items = collect_images(config.images, self.label_map, self.family)[: config.limit]
        if self._fan_out is None:
            explainer = self._explainer or load_explainer(config.mllm)
            llm = self._llm or load_question_writer(config)
            stages, specs = self.stages(explainer, llm), (explainer.spec, llm.spec)
        else:  # each worker loads the models itself; a misspelt model fails here, before any work
            check_spec(config.mllm, ModelKind.backend)
            check_spec(config.llm, ModelKind.chat)
            stages, specs = self._stages(RunsElsewhere("explain"), RunsElsewhere("qa")), (config.mllm, config.llm)
        records: list[Any] = items
        for stage in stages:
            records = self._run_stage(stage, records)
        samples: list[Sample] = [sample for batch in records for sample in batch]

        manifest = write_dataset(
            samples, config.out, validation_fraction=config.validation, parquet=config.parquet,
            info={"source": "icm data generate", "policy": [self.policy.id, self.policy.version],
                  "family": [[p.id, p.version] for p in self.family], "mllm": specs[0], "llm": specs[1]},
        )
        layouts = write_layouts(config.out)
        problems = shortfalls(self.report)
        summary = {
            "ok": not problems and bool(samples),
            "problems": problems if samples else ["no samples were written", *problems],
            "stages": {name: stage.as_dict() for name, stage in self.report.items()},
            "rejected": dict(sum((s.rejected for s in self.report.values()), Counter())),
            "tokens": sum(s.tokens for s in self.report.values()),
            "prior_sentences_removed": self.report["filter_explanations"].notes[PRIOR_SENTENCES],
            "samples": {split: info["samples"] for split, info in manifest["splits"].items()},
            "kinds": dict(sum((Counter(info["kinds"]) for info in manifest["splits"].values()), Counter())),
            "layouts": [str(p.relative_to(config.out)) for p in layouts],
            "seconds": round(time.perf_counter() - started, 2),
        }
        (config.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        return summary

    def _run_stage(self, stage: Stage[Any, Any], items: list[Any]) -> list[Any]:
        """Every item through one stage (model stages ``concurrency`` at a time); the records it passes on."""
        report = self.report[stage.name] = StageReport()
        begin = time.perf_counter()
        passed = []
        for result in self._map(stage, items):
            report.add(result)
            if result.record is not None:
                passed.append(result.record)
        report.seconds = time.perf_counter() - begin
        return passed

    def _map(self, stage: Stage[Any, Any], items: list[Any]) -> Iterator[StageResult[Any]]:
        if not stage.calls_model:
            yield from map(stage.run, items)
            return
        tick = self._progress(stage.name, len(items)) if self._progress else (lambda: None)
        if self._fan_out is not None:
            yield from self._fan_out(partial(build_model_stage, self.config, stage.name), items, tick)
            return
        with ThreadPoolExecutor(max(1, self.config.concurrency)) as pool:
            for result in pool.map(stage.run, items):
                tick()
                yield result


class RunsElsewhere:
    """A model stage that a :data:`FanOut` runs: workers build it themselves (:func:`build_model_stage`)."""

    calls_model = True

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, item: Any) -> StageResult[Any]:
        raise RuntimeError(f"stage {self.name} runs where the fan-out sends it, not here")


def build_model_stage(config: GenerateConfig, name: str) -> Callable[[Any], StageResult[Any]]:
    """The model stage ``name`` of a run (explain or qa), built from the run's config with its own
    model and the run's cache: what each worker of a :data:`FanOut` runs."""
    if name == "explain":
        return explain_stage(config, load_policy(config.policy), load_explainer(config.mllm)).run
    if name == "qa":
        return qa_stage(config, load_question_writer(config)).run
    raise ValueError(f"{name!r} is not a model stage")


def explain_stage(config: GenerateConfig, policy: Policy, explainer: Explainer) -> ExplainStage:
    return ExplainStage(explainer, policy, StageCache(config.cache_root, "explain"))


def qa_stage(config: GenerateConfig, llm: ChatModel) -> QAStage:
    return QAStage(llm, StageCache(config.cache_root, "qa"), config.qa_counts)


def load_question_writer(config: GenerateConfig) -> ChatModel:
    """The run's question-writing model (``--llm``), sampled a little for varied questions."""
    return load_chat_model(config.llm, temperature=0.2)


def shortfalls(report: dict[str, StageReport], min_yield: float = MIN_YIELD) -> list[str]:
    """Why a run produced (almost) nothing: each stage every image goes through that passed on
    fewer than ``min_yield`` of its images, with its most frequent rejection reasons."""
    problems = []
    for name in YIELD_STAGES:
        stage = report.get(name)
        if stage is None or stage.inputs == 0 or stage.outputs >= min_yield * stage.inputs:
            continue
        problem = f"{name}: {stage.outputs} of {stage.inputs} images came through"
        if stage.rejected:
            problem += "; rejected: " + ", ".join(f"{why} ({n})" for why, n in stage.rejected.most_common(3))
        if stage.errors:
            problem += f"; first error: {stage.errors[0]}"
        problems.append(problem)
    return problems


def run_pipeline(
    config: GenerateConfig, progress: Progress | None = None, fan_out: FanOut | None = None
) -> dict[str, Any]:
    """Run every stage; returns the report that is also written to ``OUT/report.json``.

    The report's ``ok`` is false, and ``problems`` says why, when no sample was written or a stage
    every image goes through passed on under 5% of its images (:data:`~icm.datagen.config.MIN_YIELD`).

    The run holds OUT's one-writer lock throughout: a second run on the same OUT raises
    :class:`~icm.lock.OutputLockedError` at once.
    """
    try:
        with output_lock(config.out):
            return Pipeline(config, progress=progress, fan_out=fan_out).run()
    except LabelError as exc:
        raise PipelineError(str(exc)) from exc

"""What the model backends (transformers, openai, vllm) share: one ``judge()``, prompts, verdicts.

A model backend judges an image in two steps: one Yes/No question per rule, scored from the
first answer token (the backend's ``_score_batch`` hook, several images at once where the model
can batch them); then, only for the rules ``explain``
selects, one JSON explanation for the image (through the backend's ``_chat`` hook), validated
against :class:`~icm.explanation.ImageExplanation` and re-asked once by
:func:`icm.llm.ask_validated`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from icm.backends.base import BackendError, Explain, Judged, judge_each
from icm.backends.facts import LocalFacts
from icm.backends.options import ImageUrlOptions, ModelOptions, parse_options
from icm.errors import ModelError
from icm.explanation import ImageExplanation, check_explanation
from icm.llm import Chat, UnreadableAnswer, ask_validated
from icm.media import DecodedImage, data_url, pick_frames
from icm.policy.schema import Policy, Rule
from icm.prompts import render, template_id
from icm.prompts.moderation import EXPLAIN, explain_prompt, verdict_prompts, verdict_template
from icm.results import BackendInfo, Evidence, RuleVerdict, Verdict


class PromptSet:
    """The templates one backend uses, and their ids for the result's backend info."""

    def __init__(self, with_signals: bool) -> None:
        self.with_signals = with_signals
        self.verdict = verdict_template(with_signals)
        self.explain = EXPLAIN

    @property
    def ids(self) -> str:
        return ",".join(template_id(n) for n in (self.verdict, self.explain, "reask"))

    @property
    def decision_ids(self) -> str:
        """The templates of a decisions request (one per image) instead of per-rule questions."""
        return ",".join(template_id(n) for n in ("decision_input", "predicate", self.explain, "reask"))

    def decision_input(self, policy: Policy, facts: list[str]) -> str:
        """The text shown with the image in a decisions request."""
        return render("decision_input", policy=policy, facts=facts if self.with_signals else None)

    def predicates(self, policy: Policy) -> list[str]:
        """One statement per rule whose probability is p(violates), in the policy's order."""
        return [render("predicate", rule=rule) for rule in policy.rules]

    def verdict_prompts(self, policy: Policy, facts: list[str]) -> list[str]:
        """One question per rule, in the policy's order (:func:`icm.prompts.moderation.verdict_prompts`,
        which the data engine's verdict samples are written with). All share the text up to the rule."""
        return verdict_prompts(policy, facts, with_signals=self.with_signals)

    def explain_prompt(self, policy: Policy, rules: list[Rule], facts: list[str]) -> str:
        return explain_prompt(policy, rules, facts)


class ModelBackend:
    """A backend that asks a model: ``judge()`` once, with hooks for seeing, scoring and chatting.

    Subclasses set ``name`` and ``options_model`` and implement :meth:`_see` (what the model is
    shown of an image), :meth:`_score` (one verdict per rule question) and :meth:`_chat` (a
    conversation about what was seen).
    """

    name: ClassVar[str]
    options_model: ClassVar[type[ModelOptions]] = ModelOptions
    supports_images: bool = True
    supports_logprobs: bool = True
    supports_generation: bool = True
    batches_images: bool = False

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(self.name, self.options_model, options)
        self.prompts = PromptSet(self.options.with_signals)
        self._facts = LocalFacts() if self.options.with_signals else None

    def prepare(self, policy: Policy) -> None:
        if self._facts is not None:
            self._facts.prepare(policy)

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        return self._judge_together([image], policy)[0]

    def judge_batch(self, images: Sequence[DecodedImage], policy: Policy) -> list[Judged]:
        """Where the model batches images (``batches_images``), all images' rule questions are
        scored in one ``_score_batch`` call; should that call fail, each image is judged alone, so
        one bad image costs the others nothing. A backend that does not batch images judges each
        alone from the start: a failed image then sends none of the others' requests again."""
        if self.batches_images and len(images) > 1:
            try:
                return list(self._judge_together(images, policy))
            except Exception:  # noqa: BLE001 - retried one by one, where each failure is kept
                pass
        return judge_each(self.judge, images, policy)

    def _judge_together(self, images: Sequence[DecodedImage], policy: Policy) -> list[list[RuleVerdict]]:
        seen = [self._see(image) for image in images]
        facts = [self._facts(image, policy) if self._facts is not None else [] for image in images]
        prompts = [self._questions(policy, f) for f in facts]
        scored = self._score_batch(seen, prompts, policy)
        for one_seen, one_facts, verdicts in zip(seen, facts, scored, strict=True):
            rules = rules_to_explain(self.options.explain, policy, verdicts)
            if rules:
                self._explain(one_seen, self.prompts.explain_prompt(policy, rules, one_facts), rules, verdicts)
        return scored

    def chat_about(self, image: DecodedImage) -> Chat:
        """A conversation with the model about one image (the data engine's explainer)."""
        return self._chat(self._see(image))

    def _explain(self, seen: Any, prompt: str, rules: list[Rule], verdicts: list[RuleVerdict]) -> None:
        try:
            answer = ask_validated(
                self._chat(seen), prompt, ImageExplanation,
                check=lambda explanation: check_explanation(explanation, rules),
                max_tokens=self.options.max_tokens,
            )
        except UnreadableAnswer as exc:
            attach_explanations(verdicts, rules, None, exc.raw or "", str(exc))
        except ModelError as exc:
            attach_explanations(verdicts, rules, None, "", f"the request failed: {exc}")
        else:
            attach_explanations(verdicts, rules, answer.value, answer.raw, None)

    # -- hooks ---------------------------------------------------------------------------------

    def _see(self, image: DecodedImage) -> Any:
        """What the model is shown of the image (frames, data URLs ...), prepared once per image."""
        raise NotImplementedError

    def _questions(self, policy: Policy, facts: list[str]) -> list[str]:
        """What ``_score`` is asked for one image: one question per rule, in the policy's order."""
        return self.prompts.verdict_prompts(policy, facts)

    def _score(self, seen: Any, prompts: list[str], policy: Policy) -> list[RuleVerdict]:
        """One verdict per rule, from its question in ``prompts`` (the policy's order)."""
        raise NotImplementedError

    def _score_batch(
        self, seen: Sequence[Any], prompts: Sequence[list[str]], policy: Policy
    ) -> list[list[RuleVerdict]]:
        """``_score`` for several images; a backend that batches images overrides this."""
        return [self._score(one, questions, policy) for one, questions in zip(seen, prompts, strict=True)]

    def _chat(self, seen: Any) -> Chat:
        """A conversation about what was seen; the first user turn goes with the image."""
        raise NotImplementedError


class ModelDirectoryBackend(ModelBackend):
    """``info`` of the backends that load a model directory (transformers, vllm)."""

    model_path: str
    adapter_path: Path | None

    def info(self) -> BackendInfo:
        models = {"model": self.model_path, "prompts": self.prompts.ids}
        if self.adapter_path is not None:
            models["adapter"] = str(self.adapter_path)
        return BackendInfo(name=self.name, models=models)


def verdict_from_probability(rule_id: str, probability: float, threshold: float) -> RuleVerdict:
    """violates when p(violates) > threshold; a non-finite p is ``uncertain``, never ``complies``."""
    if probability != probability:  # NaN
        return RuleVerdict(
            rule_id=rule_id,
            verdict=Verdict.uncertain,
            explanation="The model's answer scores were not finite numbers.",
            raw="non-finite Yes/No logits",
        )
    verdict = Verdict.violates if probability > threshold else Verdict.complies
    return RuleVerdict(rule_id=rule_id, verdict=verdict, probability=round(probability, 4))


def uncertain(rule_id: str, why: str, raw: str | None) -> RuleVerdict:
    """An honest "could not assess", with the model's raw answer kept for audit."""
    return RuleVerdict(rule_id=rule_id, verdict=Verdict.uncertain, explanation=why, raw=raw)


def rules_to_explain(mode: Explain, policy: Policy, verdicts: list[RuleVerdict]) -> list[Rule]:
    if mode is Explain.none:
        return []
    if mode is Explain.all:
        return list(policy.rules)
    wanted = {v.rule_id for v in verdicts if v.verdict is Verdict.violates}
    return [r for r in policy.rules if r.id in wanted]


def attach_explanations(
    verdicts: list[RuleVerdict],
    rules: list[Rule],
    explanation: ImageExplanation | None,
    raw: str,
    error: str | None,
) -> None:
    """Write each asked rule's explanation and criteria into its verdict; keep the raw answer.

    The verdict itself stays the scored one. A failed explanation leaves the verdict, says so in
    the explanation and keeps the raw answer for audit.
    """
    asked = {r.id for r in rules}
    for verdict in verdicts:
        if verdict.rule_id not in asked:
            continue
        verdict.raw = raw
        if explanation is None:
            verdict.explanation = f"The model's explanation could not be used: {error}."
            continue
        entry = next(r for r in explanation.rules if r.rule_id == verdict.rule_id)
        verdict.explanation = entry.conclusion
        verdict.evidence = [Evidence(criterion=c) for c in entry.criteria_met]
        scored_violation = verdict.verdict is Verdict.violates
        if verdict.verdict is not Verdict.uncertain and entry.violates != scored_violation:
            verdict.explanation += (
                " (Note: this explanation concludes the opposite of the scored verdict"
                f"{'' if verdict.probability is None else f', p={verdict.probability:.2f}'}.)"
            )


def data_urls(image: DecodedImage, options: ImageUrlOptions) -> list[str]:
    """What a backend that sends images as data URLs (openai, vllm) shows the model: the picked
    frames as JPEG data URLs within the options' limits; a :class:`BackendError` (that image's
    own) where one cannot fit."""
    try:
        return [data_url(f, options.max_image_side, options.max_image_bytes)
                for f in pick_frames(image, options.max_frames)]
    except ValueError as exc:
        raise BackendError(str(exc)) from exc


def resolve_model_path(path: str) -> tuple[str, Path | None]:
    """(the model to load, the adapter directory or None) for a model or PEFT adapter directory."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise BackendError(f"no model directory at {path!r}")
    adapter_config = directory / "adapter_config.json"
    if not adapter_config.exists():
        return str(directory), None
    base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise BackendError(f"{adapter_config} names no base_model_name_or_path")
    # A relative base path was relative to wherever training ran; try the adapter's folder too.
    for candidate in (Path(base).expanduser(), directory / base):
        if candidate.is_dir():
            return str(candidate), directory
    return base, directory
